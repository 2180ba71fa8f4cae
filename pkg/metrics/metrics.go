// Package metrics holds flanneld's Prometheus metrics. The collectors live
// in their own registry (not the process-global default one) and are fed
// through hook functions the other packages expose, so those packages stay
// free of Prometheus.
package metrics

import (
	"net/http"
	"time"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of flanneld's metrics.
type Metrics struct {
	reg *prometheus.Registry

	Leases          prometheus.Gauge
	LeaseExpiry     prometheus.Gauge
	SubnetsFree     prometheus.Gauge
	Ready           prometheus.Gauge
	EtcdErrors      *prometheus.CounterVec
	EtcdDuration    *prometheus.HistogramVec
	WatchRestarts   *prometheus.CounterVec
	ReconcilePasses *prometheus.CounterVec
	ReconcileTime   prometheus.Histogram
	KernelObjects   *prometheus.CounterVec
	FirewallRepairs *prometheus.CounterVec
}

// New builds the metrics, with Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		Leases: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flannel_leases", Help: "Subnet leases known in etcd, our own included.",
		}),
		LeaseExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flannel_lease_expiry_timestamp_seconds", Help: "Unix time our lease expires unless renewed (0 for a reservation).",
		}),
		SubnetsFree: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flannel_subnets_free", Help: "IPv4 subnets between SubnetMin and SubnetMax that no lease holds.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flannel_ready", Help: "1 once the lease is held, the data plane programmed and subnet.env written.",
		}),
		EtcdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_etcd_request_errors_total", Help: "etcd requests that failed, by kind.",
		}, []string{"request"}),
		EtcdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flannel_etcd_request_duration_seconds", Help: "Latency of etcd requests, by kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"request"}),
		WatchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_etcd_watch_restarts_total", Help: "Times the lease watch was re-established, by reason.",
		}, []string{"reason"}),
		ReconcilePasses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_reconcile_passes_total", Help: "Data-plane reconcile passes, by kind (full: kernel dump and diff; incremental).",
		}, []string{"kind"}),
		ReconcileTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flannel_reconcile_duration_seconds", Help: "Duration of data-plane reconcile passes.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}),
		KernelObjects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_kernel_objects_total", Help: "Kernel objects written, by object (route, neigh, fdb) and action (added, removed, repaired).",
		}, []string{"object", "action"}),
		FirewallRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_firewall_repairs_total", Help: "Times a resync found our traffic rules changed and rewrote them, by table.",
		}, []string{"table"}),
	}
	m.reg.MustRegister(m.Leases, m.LeaseExpiry, m.SubnetsFree, m.Ready, m.EtcdErrors, m.EtcdDuration, m.WatchRestarts,
		m.ReconcilePasses, m.ReconcileTime, m.KernelObjects, m.FirewallRepairs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// EtcdRequest is a subnet/etcd Options.OnRequest hook.
func (m *Metrics) EtcdRequest(kind string, d time.Duration, err error) {
	m.EtcdDuration.WithLabelValues(kind).Observe(d.Seconds())
	if err != nil {
		m.EtcdErrors.WithLabelValues(kind).Inc()
	}
}

// WatchRestart is a subnet/etcd Options.OnWatchRestart hook.
func (m *Metrics) WatchRestart(relist bool) {
	reason := "reconnect"
	if relist {
		reason = "compaction"
	}
	m.WatchRestarts.WithLabelValues(reason).Inc()
}

// Pass is a backend Config.OnPass hook.
func (m *Metrics) Pass(r kernel.PassReport) {
	kind := "incremental"
	if r.Full {
		kind = "full"
	}
	m.ReconcilePasses.WithLabelValues(kind).Inc()
	m.ReconcileTime.Observe(r.Duration.Seconds())
	for k, n := range r.Writes {
		action := "added"
		switch {
		case r.Repair:
			action = "repaired"
		case k[1] == "del":
			action = "removed"
		}
		m.KernelObjects.WithLabelValues(k[0], action).Add(float64(n))
	}
}

// FirewallRepair is a pkg/firewall Options.OnRepair hook.
func (m *Metrics) FirewallRepair(table string) { m.FirewallRepairs.WithLabelValues(table).Inc() }
