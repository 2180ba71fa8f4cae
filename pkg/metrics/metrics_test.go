package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend/kernel"
)

func TestMetricsExposition(t *testing.T) {
	m := New()
	m.EtcdRequest("get", 3*time.Millisecond, nil)
	m.EtcdRequest("get", time.Second, errors.New("unavailable"))
	m.WatchRestart(true)
	m.Pass(kernel.PassReport{Full: true, Writes: map[[2]string]int{{"route", "set"}: 3, {"fdb", "del"}: 1}})
	m.Pass(kernel.PassReport{Repair: true, Full: true, Writes: map[[2]string]int{{"route", "set"}: 1}})
	m.FirewallRepair("IPv4 nat")
	m.Ready.Set(1)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`flannel_etcd_request_errors_total{request="get"} 1`,
		`flannel_etcd_request_duration_seconds_count{request="get"} 2`,
		`flannel_etcd_watch_restarts_total{reason="compaction"} 1`,
		`flannel_reconcile_passes_total{kind="full"} 2`,
		`flannel_kernel_objects_total{action="added",object="route"} 3`,
		`flannel_kernel_objects_total{action="removed",object="fdb"} 1`,
		`flannel_kernel_objects_total{action="repaired",object="route"} 1`,
		`flannel_firewall_repairs_total{table="IPv4 nat"} 1`,
		`flannel_ready 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("missing %q", want)
		}
	}
}
