// Package metrics holds flanneld's Prometheus metrics and serves them in the
// text exposition format, written here rather than with client_golang (see
// expo.go for why). The metrics are fed through hook functions the other
// packages expose, so those packages stay free of metrics code.
package metrics

import (
	"net/http"
	"time"

	"github.com/flannelng/flannel/backend"
)

// Metrics is the set of flanneld's metrics. Its methods and gauges are safe
// for concurrent use.
type Metrics struct {
	Leases      *Gauge
	LeaseExpiry *Gauge
	SubnetsFree *Gauge
	Ready       *Gauge

	etcdErrors      *vec
	etcdDuration    *vec
	watchRestarts   *vec
	reconcilePasses *vec
	reconcileTime   *vec
	kernelObjects   *vec
	firewallRepairs *vec

	collectors []collector
}

// New builds the metrics, with Go runtime and process ones.
//
// cmd/flanneld's TestDocsMetrics reads the Name fields below from this
// file's source to check docs/metrics.md: keep flannel's metrics defined
// here and only here.
func New() *Metrics {
	m := &Metrics{
		Leases: newGauge(opts{
			Name: "flannel_leases", Help: "Subnet leases known in etcd, our own included.",
		}),
		LeaseExpiry: newGauge(opts{
			Name: "flannel_lease_expiry_timestamp_seconds", Help: "Unix time our lease expires unless renewed (0 for a reservation).",
		}),
		SubnetsFree: newGauge(opts{
			Name: "flannel_subnets_free", Help: "IPv4 subnets between SubnetMin and SubnetMax that no lease holds.",
		}),
		Ready: newGauge(opts{
			Name: "flannel_ready", Help: "1 once the lease is held, the data plane programmed and subnet.env written.",
		}),
		etcdErrors: newCounterVec(opts{
			Name: "flannel_etcd_request_errors_total", Help: "etcd requests that failed, by kind.",
		}, "request"),
		etcdDuration: newHistogramVec(opts{
			Name: "flannel_etcd_request_duration_seconds", Help: "Latency of etcd requests, by kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, "request"),
		watchRestarts: newCounterVec(opts{
			Name: "flannel_etcd_watch_restarts_total", Help: "Times the lease watch was re-established, by reason.",
		}, "reason"),
		reconcilePasses: newCounterVec(opts{
			Name: "flannel_reconcile_passes_total", Help: "Data-plane reconcile passes, by kind (full: kernel dump and diff; incremental).",
		}, "kind"),
		reconcileTime: newHistogramVec(opts{
			Name: "flannel_reconcile_duration_seconds", Help: "Duration of data-plane reconcile passes.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}),
		kernelObjects: newCounterVec(opts{
			Name: "flannel_kernel_objects_total", Help: "Kernel objects written, by object (route, neigh, fdb) and action (added, removed, repaired).",
		}, "object", "action"),
		firewallRepairs: newCounterVec(opts{
			Name: "flannel_firewall_repairs_total", Help: "Times a resync found our traffic rules changed and rewrote them, by table.",
		}, "table"),
	}
	m.collectors = []collector{m.Leases, m.LeaseExpiry, m.SubnetsFree, m.Ready, m.etcdErrors, m.etcdDuration,
		m.watchRestarts, m.reconcilePasses, m.reconcileTime, m.kernelObjects, m.firewallRepairs,
		goCollector{}, processCollector{}}
	return m
}

// Handler serves the metrics in the Prometheus text format 0.0.4, to GET
// and HEAD.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", contentType)
		if r.Method == http.MethodHead {
			// No body, so no need to read the runtime (which stops the world).
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Write(m.appendText(make([]byte, 0, 16<<10)))
	})
}

// appendText appends one scrape in the text format.
func (m *Metrics) appendText(b []byte) []byte {
	fams := make([]family, 0, 64)
	for _, c := range m.collectors {
		fams = c.collect(fams)
	}
	return appendText(b, fams)
}

// EtcdRequest is a subnet/etcd Options.OnRequest hook.
func (m *Metrics) EtcdRequest(kind string, d time.Duration, err error) {
	m.etcdDuration.observe(d.Seconds(), kind)
	if err != nil {
		m.etcdErrors.add(1, kind)
	}
}

// WatchRestart is a subnet/etcd Options.OnWatchRestart hook.
func (m *Metrics) WatchRestart(relist bool) {
	reason := "reconnect"
	if relist {
		reason = "compaction"
	}
	m.watchRestarts.add(1, reason)
}

// Pass is a backend Config.OnPass hook. A pass that did not read the
// kernel (a delta pass included) is an incremental one.
func (m *Metrics) Pass(r backend.PassReport) {
	kind := "incremental"
	if r.Full {
		kind = "full"
	}
	m.reconcilePasses.add(1, kind)
	m.reconcileTime.observe(r.Duration.Seconds())
	for k, n := range r.Writes {
		action := "added"
		switch {
		case r.Repair:
			action = "repaired"
		case k[1] == "del":
			action = "removed"
		}
		m.kernelObjects.add(float64(n), k[0], action)
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
func (m *Metrics) FirewallRepair(table string) { m.firewallRepairs.add(1, table) }
