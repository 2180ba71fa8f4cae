package suite

import (
	"strings"
	"testing"
	"time"
)

func TestParseGRPCReceived(t *testing.T) {
	metrics := `# HELP grpc_server_msg_received_total Total number of RPC stream messages received on the server.
# TYPE grpc_server_msg_received_total counter
grpc_server_msg_received_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1234
grpc_server_msg_received_total{grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 5
grpc_server_msg_received_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 3e+06
grpc_server_msg_received_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 0
grpc_server_msg_sent_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 99
grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1234
`
	got, err := ParseGRPCReceived([]byte(metrics))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["Range"] != 1234 || got["Txn"] != 5 || got["Watch"] != 3000000 {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{
		`grpc_server_msg_received_total{grpc_method="Range"} x`,
		`grpc_server_msg_received_total{grpc_service="etcdserverpb.KV"} 1`,
		`grpc_server_msg_received_total{grpc_method="Range"`,
	} {
		if _, err := ParseGRPCReceived([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRequestCounts(t *testing.T) {
	before := RequestCounts{"Range": 10, "Watch": 3}
	after := RequestCounts{"Range": 15, "Watch": 3, "LeaseKeepAlive": 1200}
	d := after.Sub(before)
	if len(d) != 2 || d["Range"] != 5 || d["LeaseKeepAlive"] != 1200 {
		t.Errorf("Sub: %v", d)
	}
	if got := d.String(); got != "1,205 (LeaseKeepAlive 1,200, Range 5)" {
		t.Errorf("String: %q", got)
	}
	if got := d.Without(keepaliveMethod).Total(); got != 5 {
		t.Errorf("without keepalives: %d", got)
	}
	if got := (RequestCounts{}).String(); got != "0" {
		t.Errorf("empty: %q", got)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// The idle target counts what etcd received beyond the keepalive stream,
// per node per minute; polling nodes are a comparison, not the target.
func TestFleetTargets(t *testing.T) {
	if ts := FleetTargets(FleetResults{}); len(ts) != 3 || ts[0].Measured || ts[1].Measured || ts[2].Measured {
		t.Fatalf("nothing measured: %+v", ts)
	}
	r := FleetResults{
		Storms:  []StormResult{{N: 100, Held: time.Second}, {N: 1000, Joined: 1000, Held: 4 * time.Second}},
		Daemons: []DaemonsResult{{N: 100, First: 11 * time.Second, Restart: 10 * time.Second}},
		Idle: []FleetIdleResult{
			{N: 1000, Window: 2 * time.Minute, Server: RequestCounts{"LeaseKeepAlive": 100000, "Range": 100}},
			{N: 5000, Window: 2 * time.Minute, Server: RequestCounts{"Range": 5000}},
			{N: 5000, Window: 2 * time.Minute, Poll: true, Server: RequestCounts{"Range": 120000}},
		},
	}
	ts := FleetTargets(r)
	for i, want := range []string{"met", "met", "met"} {
		if ts[i].Status() != want {
			t.Errorf("%s: %s (%s), want %s", ts[i].Name, ts[i].Status(), ts[i].Got, want)
		}
	}
	if ts[2].Got != "0.50 (worst: N=5000; 0.00 of it the periodic re-list)" {
		t.Errorf("idle figure %q", ts[2].Got)
	}
	r.Daemons[0].First = 12 * time.Second
	r.Storms[1] = StormResult{N: 1000, Joined: 998}
	r.Idle[1].Server["Range"] = 12000
	for i, tg := range FleetTargets(r) {
		if tg.Status() != "MISSED" {
			t.Errorf("target %d %s: %s (%s), want MISSED", i, tg.Name, tg.Status(), tg.Got)
		}
	}
}

// With an acquire-only storm of 1,000, the joiners' target is the
// allocation protocol's figure, not the storm that also ran every watcher.
func TestFleetTargetsPreferAcquireOnly(t *testing.T) {
	r := FleetResults{Storms: []StormResult{
		{N: 1000, AcquireOnly: true, Joined: 1000, Held: 3 * time.Second},
		{N: 1000, Joined: 1000, Held: 40 * time.Second},
	}}
	tg := FleetTargets(r)[1]
	if tg.Status() != "met" || tg.Got != "3.00s, 0 overlaps (acquire only)" {
		t.Errorf("%s: %s", tg.Status(), tg.Got)
	}
}

// The re-list is priced into the long-run figure and etcd's CPU.
func TestFleetIdleRelist(t *testing.T) {
	r := FleetIdleResult{N: 5000, Window: 2 * time.Minute, Server: RequestCounts{"Range": 1000},
		RelistEvery: 10 * time.Minute, ListCPU: 12 * time.Millisecond}
	if got := r.SteadyPerNodeMinute(); got < 0.199 || got > 0.201 {
		t.Errorf("steady %.3f, want 0.1 + 0.1", got)
	}
	// 5,000 listings of 12 ms in 600 s: 60 s of CPU, a tenth of a core.
	if got := r.RelistCPUShare(); got < 0.0999 || got > 0.1001 {
		t.Errorf("re-list CPU share %.4f, want 0.1", got)
	}
	if tg := FleetTargets(FleetResults{Idle: []FleetIdleResult{r}})[2]; tg.Status() != "met" || tg.Got != "0.20 (worst: N=5000; 0.10 of it the periodic re-list)" {
		t.Errorf("%s %s", tg.Status(), tg.Got)
	}
}

func TestFleetLines(t *testing.T) {
	s := StormResult{N: 1000, Joined: 990, LostRaces: 12345, Requests: RequestCounts{"create": 3}}.Line()
	if !strings.Contains(s, "only 990 of 1000 hold subnets") || !strings.Contains(s, "12,345 lost races") {
		t.Errorf("storm line: %s", s)
	}
	i := FleetIdleResult{N: 1000, Window: time.Minute, Server: RequestCounts{"Range": 12000}, Poll: true}.Line()
	if !strings.Contains(i, "12.00 requests per node per minute") || !strings.Contains(i, "read every 5 s") {
		t.Errorf("idle line: %s", i)
	}
	c := ChurnResult{N: 1000, Restarted: 100, NewMAC: true, Unconverged: 3}.Line()
	if !strings.Contains(c, "3 other nodes had not converged") {
		t.Errorf("churn line: %s", c)
	}
	d := DaemonsResult{N: 100, First: 11 * time.Second, Restart: 10 * time.Second}.Line()
	if !strings.Contains(d, "ratio 1.10") {
		t.Errorf("daemons line: %s", d)
	}
}

func TestDaemonPhases(t *testing.T) {
	start := time.Date(2026, 12, 6, 14, 0, 0, 0, time.UTC)
	a := `time=2026-12-06T14:00:01.000Z level=INFO msg="Starting flanneld" version=dev
time=2026-12-06T14:00:01.500Z level=INFO msg="Found network config - Backend type: vxlan"
time=2026-12-06T14:00:02.000Z level=INFO msg="Allocated lease (ip: 10.0.1.0/24 ipv6: ::/0) to current node (172.30.0.11) "
time=2026-12-06T14:00:02.100Z level=INFO msg="Wrote subnet file to /x/subnet.env"
time=2026-12-06T14:00:02.200Z level=INFO msg="flannel is ready"
`
	b := `time=2026-12-06T14:00:03.000Z level=INFO msg="Starting flanneld" version=dev
time=2026-12-06T14:00:04.000Z level=INFO msg="Found network config - Backend type: vxlan"
time=2026-12-06T14:00:05.000Z level=INFO msg="Found lease (ip: 10.0.2.0/24 ipv6: ::/0) for current IP (172.30.0.12), reusing"
time=2026-12-06T14:00:06.000Z level=INFO msg="Wrote subnet file to /x/subnet.env"
`
	ps := DaemonPhases([]string{a, b}, start)
	want := []Phase{
		{"process up", time.Second, 3 * time.Second, 2},
		{"config read", 1500 * time.Millisecond, 4 * time.Second, 2},
		{"lease held", 2 * time.Second, 5 * time.Second, 2},
		{"iptables chosen", 0, 0, 0},
		{"rules cleaned", 0, 0, 0},
		{"subnet.env", 2100 * time.Millisecond, 6 * time.Second, 2},
		{"ready", 2200 * time.Millisecond, 2200 * time.Millisecond, 1},
	}
	if len(ps) != len(want) {
		t.Fatalf("%+v", ps)
	}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("phase %d: %+v, want %+v", i, ps[i], want[i])
		}
	}
	if s := phasesString(ps[:1]); s != "process up 1.00s/3.00s" {
		t.Errorf("phasesString: %q", s)
	}
	if own := OwnStartup([]string{a, b, "no lines"}); own != (Phase{"own start-up", 1100 * time.Millisecond, 3 * time.Second, 2}) {
		t.Errorf("OwnStartup: %+v", own)
	}
}
