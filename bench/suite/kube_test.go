package suite

import (
	"encoding/json"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// A fake peer's Node carries upstream's keys with upstream's value
// formats, and the same attributes as the peer's etcd lease.
func TestNodeAnnotations(t *testing.T) {
	p, err := FakePeer(251)
	if err != nil {
		t.Fatal(err)
	}
	if p.NodeName() != "peer-00251" {
		t.Errorf("node name %s", p.NodeName())
	}
	ann, err := p.NodeAnnotations()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"flannel.alpha.coreos.com/kube-subnet-manager":           "true",
		"flannel.alpha.coreos.com/backend-type":                  "vxlan",
		"flannel.alpha.coreos.com/backend-data":                  `{"VNI":1,"VtepMAC":"02:fb:00:00:00:fb"}`,
		"flannel.alpha.coreos.com/public-ip":                     "172.30.101.2",
		"node.alpha.kubernetes.io/ttl":                           "0",
		"volumes.kubernetes.io/controller-managed-attach-detach": "true",
	}
	if !maps.Equal(ann, want) {
		t.Errorf("annotations\n got %v\nwant %v", ann, want)
	}
	v, _ := p.Value(VXLAN)
	a, err := subnet.DecodeAttrs([]byte(v))
	if err != nil {
		t.Fatal(err)
	}
	if string(a.BackendData) != ann[kubePrefix+"backend-data"] || a.PublicIP.String() != ann[kubePrefix+"public-ip"] {
		t.Errorf("etcd lease %s, Node annotations %v", v, ann)
	}
	if !netip.MustParsePrefix(Network).Contains(netip.MustParsePrefix(KubeOwnPodCIDR).Addr()) {
		t.Errorf("own podCIDR %s outside %s", KubeOwnPodCIDR, Network)
	}
	if c, err := subnet.ParseConfig([]byte(KubeNetConfig)); err != nil || c.BackendType != VXLAN || c.Network.String() != Network {
		t.Errorf("net-conf %s: %+v %v", KubeNetConfig, c, err)
	}
}

func TestKubeUpdates(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	beats, labels := 0, 0
	seen := map[string]bool{}
	for j := range 20 {
		u, err := NewKubeUpdate(j, "peer-00007", base)
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(u.Body)] {
			t.Errorf("update %d repeats an earlier body: the API server would store nothing", j)
		}
		seen[string(u.Body)] = true
		var v map[string]any
		if err := json.Unmarshal(u.Body, &v); err != nil {
			t.Fatal(err)
		}
		if u.Heartbeat {
			beats++
			if u.Path != "/api/v1/nodes/peer-00007/status" || u.ContentType != "application/strategic-merge-patch+json" || len(v) != 1 || v["status"] == nil {
				t.Errorf("heartbeat %d: %s %s %s", j, u.Path, u.ContentType, u.Body)
			}
		} else {
			labels++
			if u.Path != "/api/v1/nodes/peer-00007" || u.ContentType != "application/merge-patch+json" || !strings.Contains(string(u.Body), `"labels"`) {
				t.Errorf("label change %d: %s %s %s", j, u.Path, u.ContentType, u.Body)
			}
		}
	}
	if beats != 18 || labels != 2 {
		t.Errorf("%d heartbeats, %d label changes, want 18 and 2", beats, labels)
	}
	u, _ := NewKubeUpdate(3, "n", base)
	if want := `"lastHeartbeatTime":"2026-01-02T03:04:08Z"`; !strings.Contains(string(u.Body), want) {
		t.Errorf("heartbeat body %s lacks %s", u.Body, want)
	}
}

func TestParseKubeLog(t *testing.T) {
	log := `==== lab: 2026-12-06T11:41:16.201439509Z start in fl9c9969-h1: flanneld --kube-subnet-mgr
time=2026-12-06T11:41:16.332Z level=INFO msg="Waiting for node controller to sync" server=https://172.30.255.254:6443
time=2026-12-06T11:41:17.500Z level=INFO msg="Node controller sync successful" nodes=5001 peers=5001 took=1.168s
time=2026-12-06T11:41:17.900Z level=WARN msg="ignoring peer" node=bench-end-1 reason="node \"bench-end-1\" has no spec.podCIDR"
time=2026-12-06T11:41:18.012Z level=INFO msg="Data plane programmed" peers=5001
time=2026-12-06T11:41:19.000Z level=INFO msg="Data plane programmed" peers=5002
`
	r, err := parseKubeLog(log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Nodes != 5001 || r.Peers != 5001 || !r.HasProgrammed || r.Programmed.Sub(r.Synced) != 512*time.Millisecond {
		t.Errorf("%+v", r)
	}
	if !loggedIgnoring(log, "bench-end-1") || loggedIgnoring(log, "bench-end") {
		t.Error("end marker")
	}
	if r, err := parseKubeLog(strings.SplitAfterN(log, "\n", 4)[0] + strings.SplitAfterN(log, "\n", 4)[2]); err != nil || r.HasProgrammed {
		t.Errorf("sync only: %+v %v", r, err)
	}
	if _, err := parseKubeLog("time=2026-12-06T11:41:16.332Z level=INFO msg=\"Data plane programmed\" peers=3\n"); err == nil {
		t.Error("a log without the sync line accepted")
	}
	for line, want := range map[string]string{
		`time=T level=INFO msg="a b" node=x y=1`:    "x",
		`time=T level=INFO msg="node=z" node="q r"`: "q r",
		`time=T level=INFO msg=m mynode=a node=b`:   "b",
		`time=T level=INFO msg=m`:                   "",
	} {
		if got := logField(line, "node"); got != want {
			t.Errorf("logField(%q, node) = %q, want %q", line, got, want)
		}
	}
}

func TestParsePassCount(t *testing.T) {
	text := `# HELP flannel_reconcile_passes_total Data-plane reconcile passes.
# TYPE flannel_reconcile_passes_total counter
flannel_reconcile_passes_total{kind="full"} 2
flannel_reconcile_passes_total{kind="incremental"} 7
flannel_reconcile_duration_seconds_sum 0.5
flannel_reconcile_duration_seconds_count 9
`
	if n, err := parsePassCount([]byte(text)); err != nil || n != 9 {
		t.Errorf("%v %v", n, err)
	}
	if n, err := parsePassCount([]byte("flannel_reconcile_duration_seconds_sum 0\nflannel_reconcile_duration_seconds_count 0\n")); err != nil || n != 0 {
		t.Errorf("no pass yet: %v %v", n, err)
	}
	if _, err := parsePassCount([]byte("go_goroutines 12\n")); err == nil {
		t.Error("not flanneld's metrics accepted")
	}
}

func TestKubeTargets(t *testing.T) {
	rs := []KubeResult{
		{K: 5000, Updates: 10000, Programmed: 1200 * time.Millisecond, UpdateCPU: 400 * time.Millisecond},
		{K: 5000, Updates: 10000, Programmed: 1700 * time.Millisecond, UpdateCPU: 1200 * time.Millisecond, Passes: 1},
		{K: 100, Updates: 200, Programmed: time.Minute, Passes: 50},
	}
	got := map[string]Target{}
	for _, tg := range kubeTargets(rs) {
		got[tg.Name] = tg
	}
	if tg := got["kube K=5,000: programmed within 1.5 s of informer sync"]; tg.Status() != "met" || !strings.HasPrefix(tg.Got, "1.20s") {
		t.Errorf("startup %+v", tg)
	}
	if tg := got["kube: 0 reconcile passes for 10,000 irrelevant updates"]; tg.Status() != "MISSED" {
		t.Errorf("a pass in one run of two: %+v", tg)
	}
	if tg := got["kube: daemon CPU < 1 s for 10,000 irrelevant updates"]; tg.Status() != "met" {
		t.Errorf("cpu %+v", tg)
	}
	for _, tg := range kubeTargets(rs[2:]) {
		if tg.Measured {
			t.Errorf("K=100 measured %q", tg.Name)
		}
	}
}
