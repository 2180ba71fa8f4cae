package suite

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

func TestFakePeersDistinctAndInRange(t *testing.T) {
	peers, err := FakePeers(0, MaxPeers)
	if err != nil {
		t.Fatal(err)
	}
	network := netip.MustParsePrefix(Network)
	underlay := netip.MustParsePrefix("172.30.0.0/16")
	fabric := netip.MustParseAddr("172.30.255.254")
	subnets, ips, macs := map[netip.Prefix]bool{}, map[netip.Addr]bool{}, map[[6]byte]bool{}
	for _, p := range peers {
		if subnets[p.Subnet] || ips[p.PublicIP] || macs[p.MAC] {
			t.Fatalf("peer %d repeats a subnet, IP or MAC: %+v", p.Index, p)
		}
		subnets[p.Subnet], ips[p.PublicIP], macs[p.MAC] = true, true, true
		if !network.Contains(p.Subnet.Addr()) || p.Subnet.Bits() != 24 || p.Subnet.Masked() != p.Subnet {
			t.Fatalf("peer %d subnet %s not a /24 of %s", p.Index, p.Subnet, network)
		}
		// The daemon under test picks among the first free subnets from
		// SubnetMin 10.0.1.0: no fake peer may sit in 10.0.0.0/16.
		if p.Subnet.Addr().As4()[1] == 0 {
			t.Fatalf("peer %d subnet %s is where the daemon picks its own", p.Index, p.Subnet)
		}
		// Lab nodes are 172.30.0.11 and up (at most 1000 of them), the
		// fabric bridge 172.30.255.254.
		a := p.PublicIP.As4()
		if !underlay.Contains(p.PublicIP) || a[2] < 100 || a[3] == 0 || p.PublicIP == fabric {
			t.Fatalf("peer %d public IP %s", p.Index, p.PublicIP)
		}
		if p.MAC[0]&1 != 0 || p.MAC[0]&2 == 0 {
			t.Fatalf("peer %d MAC %s is not unicast, locally administered", p.Index, p.MACString())
		}
	}
	if _, err := FakePeer(MaxPeers); err == nil {
		t.Fatal("peer past MaxPeers accepted")
	}
	if _, err := FakePeer(-1); err == nil {
		t.Fatal("negative peer accepted")
	}
}

func TestPeerLeaseFormat(t *testing.T) {
	p, err := FakePeer(251)
	if err != nil {
		t.Fatal(err)
	}
	if p.Key() != "10.1.251.0-24" {
		t.Errorf("key %s", p.Key())
	}
	for backend, want := range map[string]string{
		VXLAN:  `{"PublicIP":"172.30.101.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:fb:00:00:00:fb"}}`,
		HostGW: `{"PublicIP":"172.30.101.2","PublicIPv6":null,"BackendType":"host-gw"}`,
	} {
		v, err := p.Value(backend)
		if err != nil {
			t.Fatal(err)
		}
		if v != want {
			t.Errorf("%s value\n got %s\nwant %s", backend, v, want)
		}
		// What the daemon reads back.
		a, err := subnet.DecodeAttrs([]byte(v))
		if err != nil || a.PublicIP != p.PublicIP || a.BackendType != backend {
			t.Errorf("%s value decodes to %+v, %v", backend, a, err)
		}
	}
	if _, err := p.Value("udp"); err == nil {
		t.Error("unknown backend accepted")
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(NetConfig(HostGW)), &cfg); err != nil {
		t.Fatal(err)
	}
	if c, err := subnet.ParseConfig([]byte(NetConfig(VXLAN))); err != nil || c.BackendType != VXLAN || c.SubnetLen != 24 {
		t.Errorf("net config %s: %+v %v", NetConfig(VXLAN), c, err)
	}
}

func TestExpecting(t *testing.T) {
	peers, _ := FakePeers(0, 3)
	e := Expecting(VXLAN, peers)
	if len(e.routes) != 3 || len(e.neighs) != 3 || len(e.fdb) != 3 {
		t.Fatalf("vxlan expectations %+v", e)
	}
	if gw := e.routes[peers[1].Subnet]; gw != peers[1].Subnet.Addr() {
		t.Errorf("vxlan route gateway %s", gw)
	}
	if dst := e.fdb[peers[2].MAC]; dst != peers[2].PublicIP {
		t.Errorf("fdb dst %s", dst)
	}
	e = Expecting(HostGW, peers)
	if e.neighs != nil || e.fdb != nil || e.routes[peers[0].Subnet] != peers[0].PublicIP {
		t.Errorf("host-gw expectations %+v", e)
	}
	c := Counts{Routes: 3, Clean: true}
	if !c.Has(HostGW, 3) || c.Has(VXLAN, 3) {
		t.Error("Counts.Has ignores the backend's tables")
	}
	c = Counts{Routes: 3, Neighs: 3, FDB: 3}
	if c.Has(VXLAN, 3) {
		t.Error("an interrupted dump counted as complete")
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := Percentile(ds, c.q); got != c.want {
			t.Errorf("p%v = %s, want %s", c.q*100, got, c.want)
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its argument")
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("no samples")
	}
	if got := Percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("one sample: %s", got)
	}
}

func TestSpreadAndFormat(t *testing.T) {
	var s Spread[time.Duration]
	for _, d := range []time.Duration{3, 1, 2} {
		s.Add(d)
	}
	if s.Best != 1 || s.Worst != 3 || s.N != 3 {
		t.Errorf("%+v", s)
	}
	for d, want := range map[time.Duration]string{
		12 * time.Second: "12.0s", 1500 * time.Millisecond: "1.50s", 35 * time.Millisecond: "35ms",
		3200 * time.Microsecond: "3.2ms", 850 * time.Microsecond: "850µs",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %s, want %s", d, got, want)
		}
	}
	if FormatMiB(3<<19) != "1.5MiB" {
		t.Error(FormatMiB(3 << 19))
	}
}

func TestSummarizeAndTargets(t *testing.T) {
	runs := []ScaleResult{
		{Backend: VXLAN, K: 5000, Env: 900 * time.Millisecond, Programmed: 1400 * time.Millisecond, CPU: 1200 * time.Millisecond,
			RSSPeak: 40 << 20, Burst: 100, BurstAdd: 60 * time.Millisecond, Latencies: []time.Duration{1}, P99: 12 * time.Millisecond},
		{Backend: VXLAN, K: 5000, Env: 400 * time.Millisecond, Programmed: 1600 * time.Millisecond, CPU: 900 * time.Millisecond,
			RSSPeak: 29 << 20, Burst: 100, BurstAdd: 40 * time.Millisecond, Latencies: []time.Duration{1}, P99: 8 * time.Millisecond},
		{Backend: HostGW, K: 20000, Programmed: time.Minute, RSSPeak: 90 << 20, Burst: 100, BurstAdd: time.Second},
	}
	sums := Summarize(runs)
	if len(sums) != 2 || sums[0].Runs != 2 || sums[0].Programmed.Best != 1400*time.Millisecond || sums[0].Programmed.Worst != 1600*time.Millisecond {
		t.Fatalf("summaries %+v", sums)
	}
	if line := sums[0].Line(); !strings.Contains(line, "programmed 1.40s (1.40s–1.60s)") {
		t.Errorf("summary line %s", line)
	}
	idle := IdleResult{Window: 30 * time.Second, Resync: 5 * time.Second, Tables: 2, Forks: ForkCount{Processes: 14}, CPU: 15 * time.Millisecond}
	tp := ThroughputResult{Reference: 10e9, Tunnel: 9.5e9, Overlay: 8e9}
	got := map[string]string{}
	for _, tg := range Targets(sums, []IdleResult{idle}, []ThroughputResult{tp}, nil) {
		got[tg.Name] = tg.Status()
	}
	want := map[string]string{
		"vxlan K=5,000: all programmed within 1.5 s":                                 "met",
		"vxlan K=5,000: daemon CPU < 1 s":                                            "met",
		"host-gw K=5,000: all programmed within 1 s":                                 "not measured",
		"vxlan K=5,000: subnet.env within 0.5 s":                                     "met",
		"host-gw K=5,000: subnet.env within 0.5 s":                                   "not measured",
		"peak RSS < 30 MiB (K <= 5,000)":                                             "met", // K=20,000 is outside the target
		"100 added leases programmed within 50 ms":                                   "met",
		"single lease change to kernel p99 < 10 ms":                                  "met",
		"idle firewall keeper <= 1 process per table per resync period":              "met", // 14 = 2 tables × (6 periods + 1 at the window's edges)
		"idle daemon CPU < 0.1% of a core":                                           "met",
		"overlay TCP throughput equal to kernel vxlan (flannel.1 >= 90% of by hand)": "met",
		"kube K=5,000: programmed within 1.5 s of informer sync":                     "not measured",
		"kube: 0 reconcile passes for 10,000 irrelevant updates":                     "not measured",
		"kube: daemon CPU < 1 s for 10,000 irrelevant updates":                       "not measured",
	}
	for name, st := range want {
		if got[name] != st {
			t.Errorf("%s: %s, want %s", name, got[name], st)
		}
	}
	if len(got) != len(want) {
		t.Errorf("targets %v", got)
	}
	idle.Forks.Processes = 15
	for _, tg := range Targets(nil, []IdleResult{idle}, nil, nil) {
		if strings.HasPrefix(tg.Name, "idle firewall") && tg.Met {
			t.Error("15 processes in 30 s at 5 s over 2 tables passed")
		}
	}
	idle.Forks = ForkCount{Processes: 2, Err: errors.New("events lost")}
	for _, tg := range Targets(nil, []IdleResult{idle}, nil, nil) {
		if strings.HasPrefix(tg.Name, "idle firewall") && tg.Met {
			t.Error("a count with lost events passed")
		}
	}
}

func TestParseIperf(t *testing.T) {
	bps, err := parseIperf([]byte(`{"start":{},"end":{"sum_sent":{"bits_per_second":2e9},"sum_received":{"bits_per_second":1.5e9}}}`))
	if err != nil || bps != 1.5e9 {
		t.Errorf("%v %v", bps, err)
	}
	if _, err := parseIperf([]byte(`{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`)); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("error report: %v", err)
	}
	if _, err := parseIperf([]byte(`iperf3: error`)); err == nil {
		t.Error("non-JSON accepted")
	}
}

func TestParsePasses(t *testing.T) {
	text := `# HELP flannel_reconcile_duration_seconds Duration of data-plane reconcile passes.
# TYPE flannel_reconcile_duration_seconds histogram
flannel_reconcile_duration_seconds_bucket{le="0.0001"} 0
flannel_reconcile_duration_seconds_sum 1.25
flannel_reconcile_duration_seconds_count 250
`
	s, err := parsePasses([]byte(text))
	if err != nil || s.sum != 1.25 || s.count != 250 {
		t.Errorf("%+v %v", s, err)
	}
	if _, err := parsePasses([]byte("go_goroutines 12\n")); err == nil {
		t.Error("missing histogram accepted")
	}
}
