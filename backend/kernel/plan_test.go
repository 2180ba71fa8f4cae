package kernel

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	macA = MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB = MAC{0x02, 0, 0, 0, 0, 0x0b}
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func vxRoute(sn string, dev int) Route {
	p := pfx(sn)
	return Route{Dst: p, Gw: p.Addr(), LinkIndex: dev, OnLink: true}
}

func ours(r Route) observedRoute {
	k := keyOfRoute(r)
	return observedRoute{Route: r, Protocol: RouteProtocol, Priority: k.Priority, Owned: true}
}

func render(ops []op) string {
	var s []string
	for _, o := range ops {
		s = append(s, o.String())
	}
	return strings.Join(s, "\n")
}

func TestPlan(t *testing.T) {
	dev := Device{Index: 5, Name: "flannel.1", MAC: macA}
	tests := []struct {
		name  string
		want  State
		cache func(c *cache)
		ops   string
	}{
		{
			name: "new peer: neighbour and FDB before the route",
			want: State{
				Routes:  []Route{vxRoute("10.5.2.0/24", 5)},
				Neighs:  []Neigh{{5, addr("10.5.2.0"), macB}},
				FDB:     []FDB{{5, macB, addr("172.31.0.2")}},
				Devices: []Device{dev},
			},
			ops: "replace neigh 10.5.2.0 lladdr 02:00:00:00:00:0b dev #5\n" +
				"replace fdb 02:00:00:00:00:0b dst 172.31.0.2 dev #5\n" +
				"replace route 10.5.2.0/24 via 10.5.2.0 dev #5 onlink",
		},
		{
			name: "everything right: nothing to do",
			want: State{
				Routes:  []Route{vxRoute("10.5.2.0/24", 5)},
				Neighs:  []Neigh{{5, addr("10.5.2.0"), macB}},
				FDB:     []FDB{{5, macB, addr("172.31.0.2")}},
				Devices: []Device{dev},
			},
			cache: func(c *cache) {
				r := vxRoute("10.5.2.0/24", 5)
				c.routes[keyOfRoute(r)] = ours(r)
				c.neighs[neighKey{5, addr("10.5.2.0")}] = observedNeigh{macB, true, true}
				c.fdb[fdbKey{5, macB}] = []observedRemote{{addr("172.31.0.2"), true, true}}
			},
			ops: "",
		},
		{
			name: "peer gone: route first, then neighbour and FDB",
			want: State{Devices: []Device{dev}},
			cache: func(c *cache) {
				r := vxRoute("10.5.2.0/24", 5)
				c.routes[keyOfRoute(r)] = ours(r)
				c.neighs[neighKey{5, addr("10.5.2.0")}] = observedNeigh{macB, true, true}
				c.fdb[fdbKey{5, macB}] = []observedRemote{{addr("172.31.0.2"), true, true}}
			},
			ops: "delete route 10.5.2.0/24 via 10.5.2.0 dev #5 onlink\n" +
				"delete neigh 10.5.2.0 dev #5\n" +
				"delete fdb 02:00:00:00:00:0b dst 172.31.0.2 dev #5",
		},
		{
			name: "new MAC: neighbour replaced, new FDB added, old FDB removed",
			want: State{
				Routes:  []Route{vxRoute("10.5.2.0/24", 5)},
				Neighs:  []Neigh{{5, addr("10.5.2.0"), macA}},
				FDB:     []FDB{{5, macA, addr("172.31.0.2")}},
				Devices: []Device{dev},
			},
			cache: func(c *cache) {
				r := vxRoute("10.5.2.0/24", 5)
				c.routes[keyOfRoute(r)] = ours(r)
				c.neighs[neighKey{5, addr("10.5.2.0")}] = observedNeigh{macB, true, true}
				c.fdb[fdbKey{5, macB}] = []observedRemote{{addr("172.31.0.2"), true, true}}
			},
			ops: "replace neigh 10.5.2.0 lladdr 02:00:00:00:00:0a dev #5\n" +
				"replace fdb 02:00:00:00:00:0a dst 172.31.0.2 dev #5\n" +
				"delete fdb 02:00:00:00:00:0b dst 172.31.0.2 dev #5",
		},
		{
			name: "new public IP: FDB remote replaced in place",
			want: State{FDB: []FDB{{5, macB, addr("172.31.0.9")}}, Devices: []Device{dev}},
			cache: func(c *cache) {
				c.fdb[fdbKey{5, macB}] = []observedRemote{{addr("172.31.0.2"), true, true}}
			},
			ops: "replace fdb 02:00:00:00:00:0b dst 172.31.0.9 dev #5",
		},
		{
			name: "appended extra remote: removed before the replace",
			want: State{FDB: []FDB{{5, macB, addr("172.31.0.9")}}, Devices: []Device{dev}},
			cache: func(c *cache) {
				c.fdb[fdbKey{5, macB}] = []observedRemote{{addr("172.31.0.2"), true, true}, {addr("172.31.0.3"), true, true}}
			},
			ops: "delete fdb 02:00:00:00:00:0b dst 172.31.0.2 dev #5\n" +
				"delete fdb 02:00:00:00:00:0b dst 172.31.0.3 dev #5\n" +
				"replace fdb 02:00:00:00:00:0b dst 172.31.0.9 dev #5",
		},
		{
			name: "wanted remote among extras: only the extras go",
			want: State{FDB: []FDB{{5, macB, addr("172.31.0.2")}}, Devices: []Device{dev}},
			cache: func(c *cache) {
				c.fdb[fdbKey{5, macB}] = []observedRemote{{addr("172.31.0.2"), true, true}, {addr("172.31.0.3"), true, true}}
			},
			ops: "delete fdb 02:00:00:00:00:0b dst 172.31.0.3 dev #5",
		},
		{
			name: "route of another program with our destination: replaced; other programs' routes elsewhere: kept",
			want: State{Routes: []Route{vxRoute("10.5.2.0/24", 5)}, Devices: []Device{dev}},
			cache: func(c *cache) {
				r := vxRoute("10.5.2.0/24", 5)
				c.routes[keyOfRoute(r)] = observedRoute{Route: Route{Dst: r.Dst, LinkIndex: 2}, Protocol: 4}
				o := Route{Dst: pfx("192.0.2.0/24"), Gw: addr("172.31.0.9"), LinkIndex: 2}
				c.routes[keyOfRoute(o)] = observedRoute{Route: o, Protocol: 4}
			},
			ops: "replace route 10.5.2.0/24 via 10.5.2.0 dev #5 onlink",
		},
		{
			name: "upstream route (proto boot) for a wanted peer: re-marked",
			want: State{Routes: []Route{vxRoute("10.5.2.0/24", 5)}, Devices: []Device{dev}},
			cache: func(c *cache) {
				r := vxRoute("10.5.2.0/24", 5)
				o := ours(r)
				o.Protocol = protoBoot
				c.routes[keyOfRoute(r)] = o
			},
			ops: "replace route 10.5.2.0/24 via 10.5.2.0 dev #5 onlink",
		},
		{
			name: "non-permanent neighbour for a wanted key: made permanent; foreign stale one: kept",
			want: State{Neighs: []Neigh{{5, addr("10.5.2.0"), macB}}, Devices: []Device{dev}},
			cache: func(c *cache) {
				c.neighs[neighKey{5, addr("10.5.2.0")}] = observedNeigh{macB, false, false}
				c.neighs[neighKey{5, addr("10.5.3.0")}] = observedNeigh{macA, false, false}
			},
			ops: "replace neigh 10.5.2.0 lladdr 02:00:00:00:00:0b dev #5",
		},
		{
			name: "IPv6 route keys use metric 1024",
			want: State{Routes: []Route{vxRoute("fd10:0:2::/64", 6)}},
			cache: func(c *cache) {
				r := vxRoute("fd10:0:2::/64", 6)
				c.routes[routeKey{r.Dst, 1024}] = observedRoute{Route: r, Protocol: RouteProtocol, Priority: 1024, Owned: true}
			},
			ops: "",
		},
		{
			name: "route with extra attributes is replaced",
			want: State{Routes: []Route{vxRoute("10.5.2.0/24", 5)}},
			cache: func(c *cache) {
				r := vxRoute("10.5.2.0/24", 5)
				o := ours(r)
				o.Extra = true
				c.routes[keyOfRoute(r)] = o
			},
			ops: "replace route 10.5.2.0/24 via 10.5.2.0 dev #5 onlink",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache()
			if tc.cache != nil {
				tc.cache(c)
			}
			ix, _ := buildIndex(tc.want)
			ops := plan(ix, c).all()
			if got := render(ops); got != tc.ops {
				t.Fatalf("ops:\n%s\nwant:\n%s", got, tc.ops)
			}
			// Applying the plan to the cache must leave nothing to do.
			for _, o := range ops {
				c.record(o)
			}
			if again := plan(ix, c).all(); len(again) != 0 {
				t.Fatalf("second plan not empty:\n%s", render(again))
			}
		})
	}
}

func TestBuildIndexConflicts(t *testing.T) {
	st := State{
		Routes: []Route{vxRoute("10.5.2.0/24", 6), vxRoute("10.5.2.0/24", 5), vxRoute("10.5.2.0/24", 6)},
		FDB:    []FDB{{5, macB, addr("172.31.0.3")}, {5, macB, addr("172.31.0.2")}, {5, macB, addr("172.31.0.4")}},
		Neighs: []Neigh{{5, addr("10.5.2.0"), macB}, {5, addr("10.5.2.0"), macA}},
	}
	ix, conflicts := buildIndex(st)
	want := []conflict{
		{"fdb 02:00:00:00:00:0b dev #5", "dst 172.31.0.2", "dst 172.31.0.3, dst 172.31.0.4"},
		{"neigh 10.5.2.0 dev #5", "02:00:00:00:00:0a", "02:00:00:00:00:0b"},
		{"route 10.5.2.0/24", "10.5.2.0/24 via 10.5.2.0 dev #5 onlink", "10.5.2.0/24 via 10.5.2.0 dev #6 onlink"},
	}
	if !slices.Equal(conflicts, want) {
		t.Fatalf("conflicts:\n%v\nwant one per object, the lowest claim kept (identical duplicates are not conflicts):\n%v", conflicts, want)
	}
	if got := ix.routes[keyOfRoute(vxRoute("10.5.2.0/24", 5))]; got.LinkIndex != 5 {
		t.Fatalf("the lowest route must win, got %v", got)
	}
	if ix.fdb[fdbKey{5, macB}] != addr("172.31.0.2") || ix.neighs[neighKey{5, addr("10.5.2.0")}] != macA {
		t.Fatal("the lowest FDB destination / neighbour MAC must win")
	}
}

func TestOwnsRoute(t *testing.T) {
	o := owner{networks: []netip.Prefix{pfx("10.5.0.0/16"), pfx("fd10::/48")}, extIndex: 2}
	devs := map[int]Device{5: {Index: 5, Name: "flannel.1"}}
	route := func(dst, gw string, link, proto int) observedRoute {
		r := observedRoute{Route: Route{Dst: pfx(dst), LinkIndex: link}, Protocol: proto}
		if gw != "" {
			r.Gw = addr(gw)
		}
		return r
	}
	tests := []struct {
		name  string
		r     observedRoute
		adopt bool
		want  bool
	}{
		{"our protocol inside the network", route("10.5.9.0/24", "172.31.0.9", 2, RouteProtocol), false, true},
		// Another flanneld on the node (another Network) marks its routes
		// the same way: not ours.
		{"our protocol outside the network", route("192.0.2.0/24", "172.31.0.9", 2, RouteProtocol), false, false},
		{"our protocol on our device", route("192.0.2.0/24", "192.0.2.0", 5, RouteProtocol), false, true},
		{"upstream vxlan route on our device", route("10.5.2.0/24", "10.5.2.0", 5, protoBoot), false, true},
		{"static route on our device inside the network", route("10.5.2.0/24", "10.5.2.0", 5, 4), false, true},
		{"the whole network on our device (old flannel)", route("10.5.0.0/16", "", 5, protoBoot), false, true},
		{"kernel route on our device", route("fd10:0:0:1::/128", "", 5, protoKernel), false, false},
		{"route on our device outside the network", route("10.96.0.0/12", "", 5, protoBoot), false, false},
		{"upstream host-gw route, first pass", route("10.5.2.0/24", "172.31.0.2", 2, protoBoot), true, true},
		{"upstream host-gw route, later pass", route("10.5.2.0/24", "172.31.0.2", 2, protoBoot), false, false},
		{"static route via ext inside the network", route("10.5.2.0/24", "172.31.0.2", 2, 4), true, false},
		{"boot route via ext for the whole network", route("10.5.0.0/16", "172.31.0.2", 2, protoBoot), true, false},
		{"boot route via ext outside the network", route("192.0.2.0/24", "172.31.0.2", 2, protoBoot), true, false},
		{"boot route without gateway on ext", route("10.5.2.0/24", "", 2, protoBoot), true, false},
		{"boot route via another link", route("10.5.2.0/24", "172.31.0.2", 3, protoBoot), true, false},
		{"IPv6 upstream host-gw route", route("fd10:0:0:2::/64", "fd31::2", 2, protoBoot), true, true},
	}
	for _, tc := range tests {
		if got := o.ownsRoute(tc.r, devs, tc.adopt); got != tc.want {
			t.Errorf("%s: ownsRoute = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseMAC(t *testing.T) {
	m, err := ParseMAC("A2:2a:fd:9f:55:f3")
	if err != nil || m.String() != "a2:2a:fd:9f:55:f3" {
		t.Fatalf("ParseMAC = %v, %v", m, err)
	}
	for _, bad := range []string{"", "a2:2a:fd:9f:55", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "zz:2a:fd:9f:55:f3"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) accepted", bad)
		}
	}
}

func TestSummarize(t *testing.T) {
	if summarize(nil, 3) != nil {
		t.Fatal("no errors must give nil")
	}
	var errs []error
	for i := 0; i < 8; i++ {
		errs = append(errs, fmt.Errorf("e%d", i))
	}
	err := summarize(errs, 20)
	if !strings.HasPrefix(err.Error(), "8 of 20 kernel updates failed") || strings.Contains(err.Error(), "e7") {
		t.Fatalf("summarize = %v", err)
	}
	if !slices.Contains(strings.Split(summarize(errs[:2], 2).Error(), "\n"), "e1") {
		t.Fatal("few errors must be returned in full")
	}
}

// BenchmarkPlanUnchanged measures the CPU cost of an incremental pass over
// 5,000 vxlan peers (15,000 rows) when nothing changed: index + diff.
func BenchmarkPlanUnchanged(b *testing.B) {
	var st State
	c := newCache()
	for i := 0; i < 5000; i++ {
		sn := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/256), byte(i % 256), 0}), 24)
		mac := MAC{2, 0, 0, 1, byte(i >> 8), byte(i)}
		pub := netip.AddrFrom4([4]byte{172, 31, byte(1 + i/250), byte(1 + i%250)})
		r := Route{Dst: sn, Gw: sn.Addr(), LinkIndex: 5, OnLink: true}
		st.Routes = append(st.Routes, r)
		st.Neighs = append(st.Neighs, Neigh{5, sn.Addr(), mac})
		st.FDB = append(st.FDB, FDB{5, mac, pub})
		c.routes[keyOfRoute(r)] = ours(r)
		c.neighs[neighKey{5, sn.Addr()}] = observedNeigh{mac, true, true}
		c.fdb[fdbKey{5, mac}] = []observedRemote{{pub, true, true}}
	}
	st.Devices = []Device{{Index: 5, Name: "flannel.1"}}
	b.ResetTimer()
	for b.Loop() {
		ix, _ := buildIndex(st)
		if ops := plan(ix, c).all(); len(ops) != 0 {
			b.Fatal(len(ops))
		}
	}
}

// peerRows are one fake vxlan lease's rows on device 5.
func peerRows(subnetIdx, macIdx, dstIdx int) State {
	sn := fmt.Sprintf("10.5.%d.0/24", subnetIdx)
	mac := MAC{0x02, 0, 0, 0, 0, byte(macIdx)}
	return State{
		Routes: []Route{vxRoute(sn, 5)},
		Neighs: []Neigh{{5, pfx(sn).Addr(), mac}},
		FDB:    []FDB{{5, mac, addr(fmt.Sprintf("172.31.0.%d", dstIdx))}},
	}
}

func joinStates(ss ...State) State {
	var out State
	for _, s := range ss {
		out.Routes = append(out.Routes, s.Routes...)
		out.Neighs = append(out.Neighs, s.Neighs...)
		out.FDB = append(out.FDB, s.FDB...)
		out.Devices = append(out.Devices, s.Devices...)
	}
	return out
}

// A delta pass must write exactly what a pass over the whole new state
// writes, and leave the index as a rebuild would; where it cannot, it must
// say so instead of guessing.
func TestDeltaMatchesFullPlan(t *testing.T) {
	dev := Device{Index: 5, Name: "flannel.1", MAC: macA}
	type lease struct{ sn, mac, dst int }
	tests := []struct {
		name       string
		before     map[string]lease
		after      map[string]lease
		needsFull  bool
		wantWrites int
	}{
		{name: "peer added", before: map[string]lease{"a": {1, 1, 1}}, after: map[string]lease{"a": {1, 1, 1}, "b": {2, 2, 2}}, wantWrites: 3},
		{name: "peer removed", before: map[string]lease{"a": {1, 1, 1}, "b": {2, 2, 2}}, after: map[string]lease{"a": {1, 1, 1}}, wantWrites: 3},
		{name: "peer's public IP changed", before: map[string]lease{"a": {1, 1, 1}}, after: map[string]lease{"a": {1, 1, 9}}, wantWrites: 1},
		{name: "peer's MAC changed", before: map[string]lease{"a": {1, 1, 1}}, after: map[string]lease{"a": {1, 7, 1}}, wantWrites: 3},
		{
			// The same machine under its old and its new subnet: both leases
			// want its FDB entry; the old one expiring must keep it.
			name:       "shared FDB entry survives one lease going",
			before:     map[string]lease{"old": {1, 1, 1}, "new": {2, 1, 1}},
			after:      map[string]lease{"new": {2, 1, 1}},
			wantWrites: 2,
		},
		{
			name:      "contested FDB entry: a full pass decides",
			before:    map[string]lease{"a": {1, 1, 1}, "b": {2, 1, 2}},
			after:     map[string]lease{"b": {2, 1, 2}},
			needsFull: true,
		},
		{
			name:      "new conflict: a full pass decides",
			before:    map[string]lease{"a": {1, 1, 1}},
			after:     map[string]lease{"a": {1, 1, 1}, "b": {2, 1, 2}},
			needsFull: true,
		},
	}
	stateOf := func(ls map[string]lease) State {
		names := make([]string, 0, len(ls))
		for n := range ls {
			names = append(names, n)
		}
		slices.Sort(names)
		st := State{Devices: []Device{dev}}
		for _, n := range names {
			l := ls[n]
			st = joinStates(st, peerRows(l.sn, l.mac, l.dst))
		}
		return st
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The kernel as the passes before left it.
			ix, _ := buildIndex(stateOf(tc.before))
			c := newCache()
			for _, o := range plan(ix, c).all() {
				c.record(o)
			}
			var gone, came State
			for n, l := range tc.before {
				if nl, ok := tc.after[n]; !ok || nl != l {
					gone = joinStates(gone, peerRows(l.sn, l.mac, l.dst))
				}
			}
			for n, l := range tc.after {
				if ol, ok := tc.before[n]; !ok || ol != l {
					came = joinStates(came, peerRows(l.sn, l.mac, l.dst))
				}
			}
			touched, ok := ix.applyDelta(gone, came)
			if ok == tc.needsFull {
				t.Fatalf("applyDelta ok = %v, want %v", ok, !tc.needsFull)
			}
			if !ok {
				return
			}
			delta := planKeys(ix, c, touched).all()
			rebuilt, _ := buildIndex(stateOf(tc.after))
			full := plan(rebuilt, c).all()
			if render(delta) != render(full) {
				t.Fatalf("delta writes:\n%s\nfull pass writes:\n%s", render(delta), render(full))
			}
			if len(delta) != tc.wantWrites {
				t.Fatalf("%d writes, want %d:\n%s", len(delta), tc.wantWrites, render(delta))
			}
			if !maps.Equal(ix.routes, rebuilt.routes) || !maps.Equal(ix.neighs, rebuilt.neighs) || !maps.Equal(ix.fdb, rebuilt.fdb) ||
				!maps.Equal(ix.fdbClaims.dups, rebuilt.fdbClaims.dups) && len(ix.fdbClaims.dups)+len(rebuilt.fdbClaims.dups) > 0 {
				t.Fatalf("index after the delta differs from a rebuilt one:\nfdb %v dups %v\nrebuilt fdb %v dups %v", ix.fdb, ix.fdbClaims.dups, rebuilt.fdb, rebuilt.fdbClaims.dups)
			}
		})
	}
}

func TestClaimRelease(t *testing.T) {
	m := map[string]int{}
	var c claims[string]
	if _, ok := claim(m, &c, "k", 1, cmp.Compare[int]); !ok {
		t.Fatal("first claim refused")
	}
	claim(m, &c, "k", 1, cmp.Compare[int])
	if !release(m, &c, "k", 1) || m["k"] != 1 {
		t.Fatal("releasing one of two identical claims must keep the key")
	}
	if !release(m, &c, "k", 1) {
		t.Fatal("second release refused")
	}
	if _, ok := m["k"]; ok {
		t.Fatal("key kept after its last claim went")
	}
	if release(m, &c, "k", 1) {
		t.Fatal("release of an unclaimed key must say a full pass is needed")
	}
	claim(m, &c, "x", 1, cmp.Compare[int])
	if release(m, &c, "x", 2) {
		t.Fatal("release with another value than claimed must refuse")
	}
	if prev, ok := claim(m, &c, "x", 3, cmp.Compare[int]); ok || prev != 1 || m["x"] != 1 {
		t.Fatalf("conflicting claim = %d, %v, kept %d; want 1, false, the lower value kept", prev, ok, m["x"])
	}
	if prev, ok := claim(m, &c, "x", 0, cmp.Compare[int]); ok || prev != 1 || m["x"] != 0 {
		t.Fatalf("lower conflicting claim = %d, %v, kept %d; want 1, false, the lower value kept", prev, ok, m["x"])
	}
	if release(m, &c, "x", 1) {
		t.Fatal("a contested key must not be released by a delta")
	}
}

// A big pass keeps the order that matters, neighbour and FDB before the
// route that uses them, and deletions of routes first.
func TestPlanBigPassKindOrder(t *testing.T) {
	var st State
	c := newCache()
	for i := range 600 {
		sn := pfx(fmt.Sprintf("10.%d.%d.0/24", 7+i/256, i%256))
		mac := MAC{0x02, 0, 0, 0, byte(i >> 8), byte(i)}
		st.Routes = append(st.Routes, vxRoute(sn.String(), 5))
		st.Neighs = append(st.Neighs, Neigh{5, sn.Addr(), mac})
		st.FDB = append(st.FDB, FDB{5, mac, addr("172.31.0.1")})
		if i < 250 {
			// Stale routes to delete, so every kind group is present.
			r := vxRoute(fmt.Sprintf("10.6.%d.0/24", i), 5)
			c.routes[keyOfRoute(r)] = ours(r)
		}
	}
	ix, _ := buildIndex(joinStates(st, State{Devices: []Device{{Index: 5, Name: "flannel.1"}}}))
	ops := plan(ix, c).all()
	if len(ops) < sortAllBelow {
		t.Fatalf("only %d ops: the test must exercise the big-pass path", len(ops))
	}
	counts := map[opKind]int{}
	for i, o := range ops {
		counts[o.kind]++
		if i > 0 && ops[i-1].kind > o.kind {
			t.Fatalf("op %d (%s) after op %d (%s): kinds out of order", i, o, i-1, ops[i-1])
		}
	}
	if counts[opRouteDel] != 250 || counts[opRouteSet] != 600 || counts[opNeighSet] != 600 || counts[opFDBSet] != 600 {
		t.Fatalf("op counts %v", counts)
	}
}

// all returns a pass's writes in execution order as one slice.
func (l opList) all() []op {
	out := make([]op, 0, l.len())
	for k := range l {
		out = append(out, l[k]...)
	}
	return out
}

// Three identical claims need three releases: each release drops exactly
// one claim (two claims alone never reach the decrement of a count above
// one, so a release that forgot it went unnoticed).
func TestClaimReleaseThree(t *testing.T) {
	m := map[string]int{}
	var c claims[string]
	for range 3 {
		if _, ok := claim(m, &c, "k", 7, cmp.Compare[int]); !ok {
			t.Fatal("identical claim refused")
		}
	}
	for i := range 3 {
		if !release(m, &c, "k", 7) {
			t.Fatalf("release %d refused", i+1)
		}
		_, kept := m["k"]
		if want := i < 2; kept != want {
			t.Fatalf("after release %d of 3 the key is kept=%v, want %v", i+1, kept, want)
		}
	}
	if release(m, &c, "k", 7) {
		t.Fatal("a fourth release must say a full pass is needed")
	}
}
