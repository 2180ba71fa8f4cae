//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// remoteAddrSeen connects from fromNS to to:port (a listener in toNS) and
// returns the source address the listener saw.
func remoteAddrSeen(t *testing.T, fromNS, toNS string, to netip.Addr) netip.Addr {
	t.Helper()
	var ln net.Listener
	if err := lab.InNS(toNS, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(to.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan netip.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- netip.Addr{}
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
		got <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	}()
	var conn net.Conn
	if err := lab.InNS(fromNS, func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatalf("dial %s from %s: %v", ln.Addr(), fromNS, err)
	}
	conn.Write([]byte("hello"))
	conn.Close()
	select {
	case a := <-got:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("listener saw no connection")
	}
	return netip.Addr{}
}

func testMasquerade(t *testing.T, nft bool) {
	cfg := fmt.Sprintf(`{"Network":"10.5.0.0/16","EnableNFTables":%t,"Backend":{"Type":"vxlan"}}`, nft)
	c := startCluster(t, 2, cfg, "--ip-masq")
	c.pingAll(t)
	ctx := testCtx(t, 60*time.Second)
	ext, err := c.l.AddExternal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h1 := c.l.Hosts()[0]
	// Pod to outside the Network: leaves with the node's address.
	if src := remoteAddrSeen(t, c.pods[0].NS, ext.NS, ext.IP); src != h1.IP {
		t.Errorf("pod -> external arrived from %s, want the node %s", src, h1.IP)
	}
	// Pod to pod across nodes: keeps the pod's address.
	if src := remoteAddrSeen(t, c.pods[0].NS, c.pods[1].NS, c.pods[1].IP); src != c.pods[0].IP {
		t.Errorf("pod -> pod arrived from %s, want %s", src, c.pods[0].IP)
	}
	// Outside into a pod: not masqueraded.
	if out, err := c.l.Exec(ctx, ext.NS, "ip", "route", "add", "10.5.0.0/16", "via", h1.IP.String()); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if src := remoteAddrSeen(t, ext.NS, c.pods[0].NS, c.pods[0].IP); src != ext.IP {
		t.Errorf("external -> pod arrived from %s, want %s", src, ext.IP)
	}
}

func TestPrivilegedMasqueradeIPTables(t *testing.T) {
	testMasquerade(t, false)
}

func TestPrivilegedMasqueradeNFTables(t *testing.T) {
	testMasquerade(t, true)
}

// Switching a node between iptables and nftables mode leaves no trace of
// the other mode, and rules deleted by hand come back within one resync.
func TestPrivilegedSwitchRuleModes(t *testing.T) {
	l, cli := newLab(t, 1, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	h := l.Hosts()[0]
	ctx := testCtx(t, 90*time.Second)
	start := func(nft bool) *lab.Process {
		t.Helper()
		if _, err := cli.Put(ctx, "/coreos.com/network/config", fmt.Sprintf(`{"Network":"10.5.0.0/16","EnableNFTables":%t,"Backend":{"Type":"vxlan"}}`, nft)); err != nil {
			t.Fatal(err)
		}
		p, err := l.StartFlanneld(h, "--ip-masq", "--iptables-resync=1")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.WaitFor(ctx, 20*time.Second, "ready", func() error { return contains(p.Log(), "flannel is ready") }); err != nil {
			t.Fatal(err)
		}
		return p
	}
	iptSave := func() string { out, _ := l.Exec(ctx, h.NS, "iptables-save"); return out }
	nftList := func() string { out, _ := l.Exec(ctx, h.NS, "nft", "list", "ruleset"); return out }

	p := start(false)
	if err := contains(iptSave(), "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG", "-A FLANNEL-FWD -s 10.5.0.0/16"); err != nil {
		t.Fatalf("iptables mode: %v\n%s", err, iptSave())
	}
	// Drift: a masquerade rule deleted by hand is restored by the keeper.
	if out, err := l.Exec(ctx, h.NS, "iptables", "-t", "nat", "-D", "FLANNEL-POSTRTG", "-s", "10.5.0.0/16", "!", "-d", "224.0.0.0/4",
		"-m", "comment", "--comment", "flanneld masq", "-j", "MASQUERADE", "--random-fully"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	start2 := time.Now()
	if err := l.WaitFor(ctx, 5*time.Second, "masquerade rule restored", func() error {
		return contains(iptSave(), "-A FLANNEL-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully")
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("masquerade rule deleted by hand: restored in %v (resync 1 s)", time.Since(start2).Round(time.Millisecond))
	if err := contains(p.Log(), "Some iptables rules are missing; deleting and recreating rules"); err != nil {
		t.Error(err)
	}
	p.Stop(5 * time.Second)

	p = start(true)
	if s := iptSave(); strings.Contains(s, "FLANNEL") || strings.Contains(s, "flanneld") {
		t.Errorf("iptables rules left after switching to nftables:\n%s", s)
	}
	if err := contains(nftList(), "table ip flannel-ipv4", "chain postrtg", "masquerade"); err != nil {
		t.Errorf("nft mode: %v\n%s", err, nftList())
	}
	if strings.Contains(nftList(), "flannel-ipv6") {
		t.Error("IPv6 table created while IPv6 is off")
	}
	p.Stop(5 * time.Second)

	p = start(false)
	if s := nftList(); strings.Contains(s, "flannel") {
		t.Errorf("nft tables left after switching back:\n%s", s)
	}
	if err := contains(iptSave(), "-j FLANNEL-POSTRTG"); err != nil {
		t.Error(err)
	}
}
