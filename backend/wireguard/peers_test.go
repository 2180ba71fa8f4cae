package wireguard

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flannelng/flannel/subnet"
)

func testKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func data(k wgtypes.Key, port int) json.RawMessage {
	if port < 0 {
		return json.RawMessage(`{"PublicKey":"` + k.String() + `"}`)
	}
	return json.RawMessage(fmt.Sprintf(`{"PublicKey":%q,"Port":%d}`, k.String(), port))
}

type leaseSpec struct {
	sn, sn6, pub, pub6 string
	typ                string
	d4, d6             json.RawMessage
}

func mkLease(s leaseSpec) subnet.Lease {
	l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: s.typ, BackendData: s.d4, BackendV6Data: s.d6}}
	if s.sn != "" {
		l.Subnet = netip.MustParsePrefix(s.sn)
	}
	if s.sn6 != "" {
		l.IPv6Subnet = netip.MustParsePrefix(s.sn6)
	}
	if s.pub != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(s.pub)
	}
	if s.pub6 != "" {
		l.Attrs.PublicIPv6 = netip.MustParseAddr(s.pub6)
	}
	return l
}

func render(m map[string][]Peer) string {
	var b strings.Builder
	for _, dev := range []string{DeviceName, DeviceNameV6} {
		for _, p := range m[dev] {
			fmt.Fprintf(&b, "%s: %s ka=%v psk=%v\n", dev, p, p.Keepalive, p.PSK != wgtypes.Key{})
		}
	}
	return b.String()
}

func TestPlannerSeparate(t *testing.T) {
	own, kb, kc, kd := testKey(t), testKey(t), testKey(t), testKey(t)
	psk := testKey(t)
	p := planner{
		opts: Options{Mode: ModeSeparate, ListenPort: 51820, ListenPortV6: 51821, Keepalive: 25 * time.Second, PSK: &psk},
		v4:   true, v6: true,
		own4: netip.MustParsePrefix("10.5.1.0/24"), own6: netip.MustParsePrefix("fd10:0:0:1::/64"), ownKey: own,
	}
	want, skipped := p.want([]subnet.Lease{
		mkLease(leaseSpec{"10.5.2.0/24", "fd10:0:0:2::/64", "172.31.0.2", "fd31::2", "wireguard", data(kb, 51820), data(kb, 51821)}),
		// An old lease without Port: our own ports.
		mkLease(leaseSpec{"10.5.3.0/24", "", "172.31.0.3", "", "wireguard", data(kc, -1), nil}),
		mkLease(leaseSpec{"10.5.4.0/24", "", "172.31.0.4", "", "vxlan", nil, nil}),
		mkLease(leaseSpec{"10.5.5.0/24", "", "172.31.0.5", "", "wireguard", json.RawMessage(`{"PublicKey":"garbage","Port":51820}`), nil}),
		mkLease(leaseSpec{"10.5.1.0/24", "", "172.31.0.1", "", "wireguard", data(own, 51820), nil}),
		// A cloned key file: skipped.
		mkLease(leaseSpec{"10.5.6.0/24", "", "172.31.0.6", "", "wireguard", data(own, 51820), nil}),
		// v6 part without a public IPv6: the v4 part still works.
		mkLease(leaseSpec{"10.5.7.0/24", "fd10:0:0:7::/64", "172.31.0.7", "", "wireguard", data(kd, 51820), data(kd, 51821)}),
	})
	got := render(want)
	exp := fmt.Sprintf(`flannel-wg: peer %[1]s endpoint 172.31.0.2:51820 allowed-ips 10.5.2.0/24 ka=25s psk=true
flannel-wg: peer %[2]s endpoint 172.31.0.3:51820 allowed-ips 10.5.3.0/24 ka=25s psk=true
flannel-wg: peer %[3]s endpoint 172.31.0.7:51820 allowed-ips 10.5.7.0/24 ka=25s psk=true
flannel-wg-v6: peer %[1]s endpoint [fd31::2]:51821 allowed-ips fd10:0:0:2::/64 ka=25s psk=true
`, kb, kc, kd)
	// Peers are sorted by key string; compare as sets of lines.
	if !sameLines(got, exp) {
		t.Errorf("wanted peers:\n%s\nwant:\n%s", got, exp)
	}
	wantSkip := map[string]string{
		"10.5.4.0-24":                 "Ignoring non-wireguard subnet: type=vxlan",
		"10.5.5.0-24":                 "ignoring IPv4 part of wireguard lease 10.5.5.0-24: malformed PublicKey \"garbage\": wgtypes: failed to parse base64-encoded key: illegal base64 data at input byte 4",
		"10.5.6.0-24":                 "ignoring IPv4 part of wireguard lease 10.5.6.0-24: its PublicKey " + own.String() + " is our own (a copied key file?)",
		"10.5.7.0-24&fd10:0:0:7::-64": "ignoring IPv6 part of wireguard lease 10.5.7.0-24&fd10:0:0:7::-64: no public IPv6",
	}
	if fmt.Sprint(skipped) != fmt.Sprint(wantSkip) {
		t.Errorf("skipped:\n%v\nwant\n%v", skipped, wantSkip)
	}
}

func sameLines(a, b string) bool {
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if len(la) != len(lb) {
		return false
	}
	m := map[string]int{}
	for _, l := range la {
		m[l]++
	}
	for _, l := range lb {
		m[l]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestPlannerSingleTunnel(t *testing.T) {
	kb, kc, kd := testKey(t), testKey(t), testKey(t)
	base := planner{
		opts: Options{ListenPort: 51820, ListenPortV6: 51821},
		v4:   true, v6: true,
		own4: netip.MustParsePrefix("10.5.1.0/24"), own6: netip.MustParsePrefix("fd10:0:0:1::/64"),
		ext4: netip.MustParseAddr("172.31.0.1"), ext6: netip.MustParseAddr("2001:db8::1"),
	}
	leases := []subnet.Lease{
		// Private v4, global v6 on both sides: auto picks v6, and dials
		// the port the single device really binds (BackendData's).
		mkLease(leaseSpec{"10.5.2.0/24", "fd10:0:0:2::/64", "172.31.0.2", "2001:db8::2", "wireguard", data(kb, 51820), data(kb, 51821)}),
		// ULA v6: auto stays on v4.
		mkLease(leaseSpec{"10.5.3.0/24", "fd10:0:0:3::/64", "172.31.0.3", "fd31::3", "wireguard", data(kc, 51820), data(kc, 51821)}),
		// No v6 at all.
		mkLease(leaseSpec{"10.5.4.0/24", "", "172.31.0.4", "", "wireguard", data(kd, 51820), nil}),
	}
	for _, tc := range []struct {
		mode string
		want string
	}{
		{ModeAuto, fmt.Sprintf(`flannel-wg: peer %s endpoint [2001:db8::2]:51820 allowed-ips 10.5.2.0/24,fd10:0:0:2::/64 ka=0s psk=false
flannel-wg: peer %s endpoint 172.31.0.3:51820 allowed-ips 10.5.3.0/24,fd10:0:0:3::/64 ka=0s psk=false
flannel-wg: peer %s endpoint 172.31.0.4:51820 allowed-ips 10.5.4.0/24 ka=0s psk=false`, kb, kc, kd)},
		{ModeIPv4, fmt.Sprintf(`flannel-wg: peer %s endpoint 172.31.0.2:51820 allowed-ips 10.5.2.0/24,fd10:0:0:2::/64 ka=0s psk=false
flannel-wg: peer %s endpoint 172.31.0.3:51820 allowed-ips 10.5.3.0/24,fd10:0:0:3::/64 ka=0s psk=false
flannel-wg: peer %s endpoint 172.31.0.4:51820 allowed-ips 10.5.4.0/24 ka=0s psk=false`, kb, kc, kd)},
		{ModeIPv6, fmt.Sprintf(`flannel-wg: peer %s endpoint [2001:db8::2]:51820 allowed-ips 10.5.2.0/24,fd10:0:0:2::/64 ka=0s psk=false
flannel-wg: peer %s endpoint [fd31::3]:51820 allowed-ips 10.5.3.0/24,fd10:0:0:3::/64 ka=0s psk=false`, kb, kc)},
	} {
		p := base
		p.opts.Mode = tc.mode
		want, skipped := p.want(leases)
		if got := render(want); !sameLines(got, tc.want) {
			t.Errorf("mode %s:\n%s\nwant\n%s", tc.mode, got, tc.want)
		}
		if tc.mode == ModeIPv6 && !strings.Contains(skipped["10.5.4.0-24"], "mode ipv6 needs a public IPv6") {
			t.Errorf("mode ipv6 skipped %v", skipped)
		}
	}
}

// Two leases of one node (a subnet change, the old lease living out its
// TTL) make one peer with both subnets.
func TestPlannerMergesLeasesOfOneKey(t *testing.T) {
	k := testKey(t)
	p := planner{opts: Options{Mode: ModeSeparate, ListenPort: 51820}, v4: true, own4: netip.MustParsePrefix("10.5.1.0/24")}
	want, _ := p.want([]subnet.Lease{
		mkLease(leaseSpec{"10.5.9.0/24", "", "172.31.0.2", "", "wireguard", data(k, 51820), nil}),
		mkLease(leaseSpec{"10.5.2.0/24", "", "172.31.0.2", "", "wireguard", data(k, 51820), nil}),
	})
	if got := render(want); strings.TrimSpace(got) != fmt.Sprintf("flannel-wg: peer %s endpoint 172.31.0.2:51820 allowed-ips 10.5.2.0/24,10.5.9.0/24 ka=0s psk=false", k) {
		t.Errorf("merged: %s", got)
	}
}

func peer(k wgtypes.Key, ep string, ips ...string) Peer {
	p := Peer{Key: k}
	if ep != "" {
		p.Endpoint = netip.MustParseAddrPort(ep)
	}
	for _, s := range ips {
		p.AllowedIPs = append(p.AllowedIPs, netip.MustParsePrefix(s))
	}
	return p
}

func renderChanges(ch []wgtypes.PeerConfig, names map[wgtypes.Key]string) string {
	var out []string
	for _, c := range ch {
		s := names[c.PublicKey]
		if c.Remove {
			out = append(out, s+" remove")
			continue
		}
		if c.Endpoint != nil {
			s += " endpoint=" + c.Endpoint.String()
		}
		if c.ReplaceAllowedIPs {
			var ips []string
			for _, n := range c.AllowedIPs {
				ips = append(ips, n.String())
			}
			s += " allowed=" + strings.Join(ips, ",")
		}
		if c.PersistentKeepaliveInterval != nil {
			s += " ka=" + c.PersistentKeepaliveInterval.String()
		}
		if c.PresharedKey != nil {
			s += fmt.Sprintf(" psk=%v", *c.PresharedKey != wgtypes.Key{})
		}
		out = append(out, s)
	}
	return strings.Join(out, "|")
}

func TestDiffPeers(t *testing.T) {
	a, b, old, c := testKey(t), testKey(t), testKey(t), testKey(t)
	names := map[wgtypes.Key]string{a: "a", b: "b", old: "old", c: "c"}
	want := []Peer{
		peer(a, "172.31.0.2:51820", "10.5.2.0/24"),
		peer(b, "172.31.0.3:51820", "10.5.3.0/24"),
		peer(c, "172.31.0.4:51820", "10.5.4.0/24"),
	}
	for _, tc := range []struct {
		name   string
		have   []Peer
		lastEP map[wgtypes.Key]netip.AddrPort
		want   string
	}{
		{"empty device", nil, nil,
			"a endpoint=172.31.0.2:51820 allowed=10.5.2.0/24 ka=0s psk=false|b endpoint=172.31.0.3:51820 allowed=10.5.3.0/24 ka=0s psk=false|c endpoint=172.31.0.4:51820 allowed=10.5.4.0/24 ka=0s psk=false"},
		{"in order", want, nil, ""},
		// b rebooted with a new key: its old entry goes first (upstream
		// leaves it with no allowed IPs).
		{"key changed", []Peer{want[0], peer(old, "172.31.0.3:51820"), want[2]}, nil,
			"old remove|b endpoint=172.31.0.3:51820 allowed=10.5.3.0/24 ka=0s psk=false"},
		{"peer removed by hand", []Peer{want[0], want[2]}, nil,
			"b endpoint=172.31.0.3:51820 allowed=10.5.3.0/24 ka=0s psk=false"},
		{"allowed ips changed", []Peer{want[0], peer(b, "172.31.0.3:51820", "10.5.3.0/24", "10.5.99.0/24"), want[2]}, nil,
			"b allowed=10.5.3.0/24"},
		{"keepalive and psk changed", []Peer{want[0], {Key: b, Endpoint: want[1].Endpoint, AllowedIPs: want[1].AllowedIPs, Keepalive: time.Second, PSK: a}, want[2]}, nil,
			"b ka=0s psk=false"},
		// Roaming: the device learnt another endpoint for a; the lease's
		// is what we last wrote, so it is left alone.
		{"roamed", []Peer{peer(a, "198.51.100.7:40000", "10.5.2.0/24"), want[1], want[2]},
			map[wgtypes.Key]netip.AddrPort{a: want[0].Endpoint}, ""},
		// The lease's endpoint changed: written.
		{"lease endpoint changed", []Peer{peer(a, "198.51.100.7:40000", "10.5.2.0/24"), want[1], want[2]},
			map[wgtypes.Key]netip.AddrPort{a: netip.MustParseAddrPort("172.31.0.99:51820")}, "a endpoint=172.31.0.2:51820"},
		{"no endpoint on the device", []Peer{peer(a, "", "10.5.2.0/24"), want[1], want[2]},
			map[wgtypes.Key]netip.AddrPort{a: want[0].Endpoint}, "a endpoint=172.31.0.2:51820"},
	} {
		got := renderChanges(diffPeers(want, tc.have, tc.lastEP), names)
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// Applying the diff to the device gives the wanted peers: run the changes
// through the UAPI codec against a model device.
func TestDiffThroughUAPI(t *testing.T) {
	a, b, old := testKey(t), testKey(t), testKey(t)
	want := []Peer{peer(a, "172.31.0.2:51820", "10.5.2.0/24"), peer(b, "[fd31::3]:51821", "fd10:0:0:3::/64")}
	have := []Peer{peer(old, "172.31.0.3:51820", "10.5.3.0/24")}
	set := uapiSet(diffPeers(want, have, nil))
	for _, line := range []string{
		"public_key=" + hexKey(old) + "\nremove=true\n",
		"public_key=" + hexKey(b) + "\npreshared_key=0000000000000000000000000000000000000000000000000000000000000000\nendpoint=[fd31::3]:51821\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=fd10:0:0:3::/64\n",
	} {
		if !strings.Contains(set, line) {
			t.Errorf("uapi set text lacks %q:\n%s", line, set)
		}
	}
	get := "private_key=" + hexKey(a) + "\nlisten_port=51820\n" +
		"public_key=" + hexKey(b) + "\npreshared_key=0000000000000000000000000000000000000000000000000000000000000000\nprotocol_version=1\nendpoint=[fd31::3]:51821\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nallowed_ip=fd10:0:0:3::/64\n" +
		"public_key=" + hexKey(a) + "\npreshared_key=0000000000000000000000000000000000000000000000000000000000000000\nendpoint=172.31.0.2:51820\npersistent_keepalive_interval=0\nallowed_ip=10.5.2.0/24\nerrno=0\n"
	d, err := parseUAPIGet(get)
	if err != nil {
		t.Fatal(err)
	}
	if d.ListenPort != 51820 || !d.HasKey || len(d.Peers) != 2 {
		t.Fatalf("parsed %+v", d)
	}
	if ch := diffPeers(want, d.Peers, nil); len(ch) != 0 {
		t.Errorf("parsed device differs from wanted: %v", renderChanges(ch, nil))
	}
	if _, err := parseUAPIGet("errno=-22\n"); err == nil {
		t.Error("errno accepted")
	}
}

func hexKey(k wgtypes.Key) string { return fmt.Sprintf("%x", k[:]) }
