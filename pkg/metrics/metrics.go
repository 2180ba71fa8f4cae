// Package metrics holds flanneld's Prometheus metrics and serves them with
// client_golang: the text format, OpenMetrics and gzip, negotiated from
// the scraper's Accept and Accept-Encoding headers, next to the Go runtime
// (go_*) and process (process_*) metrics of client_golang's standard
// collectors. The metrics are fed through hook functions the other
// packages expose, so those packages stay free of metrics code.
//
// client_golang costs some resident memory (its code is mapped; see
// docs/metrics.md for the measured cost), accepted in issue 17 for a
// maintained exposition with content negotiation.
package metrics

import (
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of flanneld's metrics, in a registry of its own (not
// client_golang's global one). Its methods and gauges are safe for
// concurrent use.
type Metrics struct {
	Leases      prometheus.Gauge
	LeaseExpiry prometheus.Gauge
	SubnetsFree prometheus.Gauge
	Ready       prometheus.Gauge

	etcdErrors      *prometheus.CounterVec
	etcdDuration    *prometheus.HistogramVec
	watchRestarts   *prometheus.CounterVec
	reconcilePasses *prometheus.CounterVec
	reconcileTime   prometheus.Histogram
	kernelObjects   *prometheus.CounterVec
	firewallRepairs *prometheus.CounterVec
	buildInfo       *prometheus.GaugeVec

	reg *prometheus.Registry
}

// New builds the metrics, with Go runtime and process ones.
//
// cmd/flanneld's TestDocsMetrics reads the Name fields below from this
// file's source to check docs/metrics.md, and this package's
// TestDocsListEveryMetric scrapes them: keep flannel's metrics defined here
// and only here.
func New() *Metrics {
	m := &Metrics{
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
		etcdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_etcd_request_errors_total", Help: "etcd requests that failed, by kind.",
		}, []string{"request"}),
		etcdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flannel_etcd_request_duration_seconds", Help: "Latency of etcd requests, by kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"request"}),
		watchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_etcd_watch_restarts_total", Help: "Times the lease watch was re-established, by reason.",
		}, []string{"reason"}),
		reconcilePasses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_reconcile_passes_total", Help: "Data-plane reconcile passes, by kind (full: kernel dump and diff; incremental).",
		}, []string{"kind"}),
		reconcileTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flannel_reconcile_duration_seconds", Help: "Duration of data-plane reconcile passes.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}),
		kernelObjects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_kernel_objects_total", Help: "Kernel objects written, by object (route, neigh, fdb) and action (added, removed, repaired).",
		}, []string{"object", "action"}),
		firewallRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flannel_firewall_repairs_total", Help: "Times a resync found our traffic rules changed and rewrote them, by table.",
		}, []string{"table"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flannel_build_info", Help: "Always 1; the labels say which flanneld runs: its version, the Go version it was built with and the backend of the network config (empty until the config is read).",
		}, []string{"version", "goversion", "backend"}),
		reg: prometheus.NewRegistry(),
	}
	m.reg.MustRegister(m.Leases, m.LeaseExpiry, m.SubnetsFree, m.Ready, m.etcdErrors, m.etcdDuration,
		m.watchRestarts, m.reconcilePasses, m.reconcileTime, m.kernelObjects, m.firewallRepairs, m.buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.SetBuildInfo("", "")
	return m
}

// Handler serves the metrics to GET and HEAD: the text format 0.0.4 by
// default, OpenMetrics to a scraper that asks for it, gzip-compressed when
// the scraper accepts it.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.Method == http.MethodHead {
			// The headers of a GET; net/http drops a HEAD's body anyway,
			// this keeps a recorder (tests) from holding one too.
			w = headWriter{w}
		}
		h.ServeHTTP(w, r)
	})
}

// headWriter discards the body of a HEAD response.
type headWriter struct{ http.ResponseWriter }

func (headWriter) Write(b []byte) (int, error) { return len(b), nil }

// SetBuildInfo publishes flannel_build_info: version is the binary's
// version string, backend the network config's backend type ("" before
// the config is read). There is one series at a time.
func (m *Metrics) SetBuildInfo(version, backend string) {
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(label(version), runtime.Version(), label(backend)).Set(1)
}

// label makes s a valid label value: client_golang panics on invalid
// UTF-8, and a firewall table or request kind is not worth a crash.
func label(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// EtcdRequest is a subnet/etcd Options.OnRequest hook.
func (m *Metrics) EtcdRequest(kind string, d time.Duration, err error) {
	kind = label(kind)
	m.etcdDuration.WithLabelValues(kind).Observe(d.Seconds())
	if err != nil {
		m.etcdErrors.WithLabelValues(kind).Inc()
	}
}

// WatchRestart is a subnet/etcd Options.OnWatchRestart hook.
func (m *Metrics) WatchRestart(relist bool) {
	reason := "reconnect"
	if relist {
		reason = "compaction"
	}
	m.watchRestarts.WithLabelValues(reason).Inc()
}

// Pass is a backend Config.OnPass hook. A pass that did not read the
// kernel (a delta pass included) is an incremental one.
func (m *Metrics) Pass(r backend.PassReport) {
	kind := "incremental"
	if r.Full {
		kind = "full"
	}
	m.reconcilePasses.WithLabelValues(kind).Inc()
	m.reconcileTime.Observe(r.Duration.Seconds())
	for k, n := range r.Writes {
		action := "added"
		switch {
		case r.Repair:
			action = "repaired"
		case k[1] == "del":
			action = "removed"
		}
		m.kernelObjects.WithLabelValues(label(k[0]), action).Add(float64(n))
	}
}

// SetLeaseExpiry publishes our lease's expiry; the zero time (a lease
// that does not expire: an etcd reservation, a Node's podCIDR) is 0.
func (m *Metrics) SetLeaseExpiry(exp time.Time) {
	if exp.IsZero() {
		m.LeaseExpiry.Set(0)
		return
	}
	m.LeaseExpiry.Set(float64(exp.Unix()))
}

// FirewallRepair is a pkg/firewall Options.OnRepair hook.
func (m *Metrics) FirewallRepair(table string) { m.firewallRepairs.WithLabelValues(label(table)).Inc() }
