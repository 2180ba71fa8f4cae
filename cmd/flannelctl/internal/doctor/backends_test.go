package doctor

import (
	"strings"
	"testing"
)

// retype turns healthy's vxlan node into one of backend typ: its three
// leases typed so, no BackendData, and the vxlan device and entries gone.
func retype(t *testing.T, typ, backendJSON string) Input {
	in := healthy(t)
	in.Config = mustConfig(t, `{"Network":"10.5.0.0/16","Backend":`+backendJSON+`}`)
	for i := range in.Leases[:3] {
		in.Leases[i].Attrs.BackendType, in.Leases[i].Attrs.BackendData = typ, nil
	}
	f := &in.Facts
	f.Links = append(f.Links[:2], f.Links[3]) // lo, eth0, cni0
	f.Addrs = append(f.Addrs[:2], f.Addrs[3])
	f.Neighs, f.FDB = nil, nil
	f.Routes = f.Routes[:3]
	return in
}

func ipipNode(t *testing.T) Input {
	in := retype(t, "ipip", `{"Type":"ipip"}`)
	in.Env.MTU = 1480
	f := &in.Facts
	f.Links = append(f.Links, Link{Index: 7, Name: "flannel.ipip", Type: "ipip", Up: true, MTU: 1480,
		Tunnel: &Tunnel{Local: a("192.168.50.1")}})
	f.Addrs = append(f.Addrs, Addr{LinkIndex: 7, Prefix: p("10.5.1.0/32")})
	f.Routes = append(f.Routes,
		Route{Dst: p("10.5.2.0/24"), Gw: a("192.168.50.2"), LinkIndex: 7, OnLink: true, Protocol: protoOurs, Unicast: true},
		Route{Dst: p("10.5.3.0/24"), Gw: a("192.168.50.3"), LinkIndex: 7, OnLink: true, Protocol: protoBoot, Unicast: true})
	return in
}

func wantFailures(t *testing.T, rs []Result, want ...string) {
	t.Helper()
	f := failures(rs)
	if len(f) != len(want) {
		t.Fatalf("%d failures, want %d:\n%s", len(f), len(want), render(rs))
	}
	for i, w := range want {
		if !strings.Contains(f[i].Text, w) {
			t.Errorf("failure %d %q, want %q", i, f[i].Text, w)
		}
	}
}

func TestIPIP(t *testing.T) {
	rs := Run(ipipNode(t))
	if f := failures(rs); len(f) > 0 ||
		!hasResult(rs, OK, "route 10.5.3.0/24 via 192.168.50.3 dev flannel.ipip onlink (peer 192.168.50.3)") ||
		!hasResult(rs, OK, "flannel.ipip: ipip local 192.168.50.1 remote any") ||
		!hasResult(rs, OK, "flannel.ipip MTU 1480 fits eth0 MTU 1500") {
		t.Fatalf("healthy ipip node:\n%s", render(rs))
	}

	in := ipipNode(t)
	f := &in.Facts
	f.Links[3].MTU = 1500
	f.Links[3].Tunnel.Remote = a("192.168.50.2")
	f.Routes = append(f.Routes[:4], Route{Dst: p("10.5.66.0/24"), Gw: a("192.168.50.66"), LinkIndex: 7, OnLink: true, Protocol: protoOurs, Unicast: true})
	in.Leases = append(in.Leases, vxLease("10.5.4.0/24", "192.168.50.4", macA))
	wantFailures(t, Run(in),
		"lease 10.5.4.0/24 (public IP 192.168.50.4) uses backend vxlan, this node ipip",
		"flannel.ipip: local 192.168.50.1 remote 192.168.50.2",
		"flannel.ipip MTU is 1500, want 1480 (eth0 MTU 1500 - 20 for ipip)",
		"subnet.env has FLANNEL_MTU=1480 but flannel.ipip has MTU 1500",
		"route to peer 192.168.50.3 is missing: want 10.5.3.0/24 via 192.168.50.3 dev flannel.ipip onlink",
		"stale route 10.5.66.0/24 via 192.168.50.66 dev flannel.ipip onlink")

	in = ipipNode(t)
	in.Facts.Links = in.Facts.Links[:3]
	wantFailures(t, Run(in), "ipip device flannel.ipip is missing")

	// DirectRouting: the peer's route through eth0 is the right one.
	in = ipipNode(t)
	in.Config = mustConfig(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"ipip","DirectRouting":true}}`)
	in.Facts.Routes[3].LinkIndex = 2
	rs = Run(in)
	if f := failures(rs); len(f) > 0 || !hasResult(rs, OK, "route 10.5.2.0/24 via 192.168.50.2 dev eth0 onlink (peer 192.168.50.2, direct routing)") {
		t.Errorf("DirectRouting:\n%s", render(rs))
	}
}

func TestExtension(t *testing.T) {
	in := retype(t, "extension", `{"Type":"extension","SubnetAddCommand":"/bin/add $SUBNET"}`)
	in.Env.MTU = 1500
	rs := Run(in)
	if f := failures(rs); len(f) > 0 || !hasResult(rs, OK, "FLANNEL_MTU=1500 matches eth0 has MTU 1500") ||
		!hasResult(rs, Skip, "backend extension: the data plane is whatever its commands build; flannelctl does not check it") {
		t.Fatalf("healthy extension node:\n%s", render(rs))
	}
	in.Leases = append(in.Leases, vxLease("10.5.4.0/24", "192.168.50.4", macA))
	in.Env.MTU = 1450
	wantFailures(t, Run(in), "uses backend vxlan, this node extension", "subnet.env has FLANNEL_MTU=1450 but eth0 has MTU 1500")
}

func TestWireGuard(t *testing.T) {
	node := func(backend string) Input {
		in := retype(t, "wireguard", backend)
		in.Env.MTU = 1420
		in.Facts.Links = append(in.Facts.Links, Link{Index: 8, Name: "flannel-wg", Type: "tun", Up: true, MTU: 1420})
		in.Facts.Addrs = append(in.Facts.Addrs, Addr{LinkIndex: 8, Prefix: p("10.5.1.0/32")})
		return in
	}
	rs := Run(node(`{"Type":"wireguard"}`))
	if f := failures(rs); len(f) > 0 || !hasResult(rs, OK, "flannel-wg is a userspace WireGuard (TUN) device") ||
		!hasResult(rs, OK, "FLANNEL_MTU=1420 matches flannel-wg has MTU 1420") {
		t.Fatalf("healthy wireguard node:\n%s", render(rs))
	}
	for _, r := range rs {
		if strings.Contains(r.Text, "does not check its data plane") {
			t.Errorf("wireguard treated as unknown: %s", r.Text)
		}
	}
	in := node(`{"Type":"wireguard"}`)
	in.Facts.Links = in.Facts.Links[:3]
	wantFailures(t, Run(in), "wireguard device flannel-wg is missing")
	in = node(`{"Type":"wireguard","Mode":"bogus"}`)
	wantFailures(t, Run(in), "network config: ")
}
