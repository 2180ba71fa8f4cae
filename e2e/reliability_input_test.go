//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeVXLAN is a well-formed vxlan lease value for a node that does not
// exist.
func fakeVXLAN(mac string) string {
	return `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"` + mac + `"}}`
}

// Leases written by another program that are malformed or dangerous: each
// is logged once and skipped, no daemon crashes, and no host's kernel gets
// a route, neighbour or FDB entry for any of them; pods keep reaching each
// other.
func TestPrivilegedReliabilityMalformedLeases(t *testing.T) {
	c := startCluster(t, 2, vxlanConfig)
	c.pingAll(t)
	l := c.l
	ctx := testCtx(t, 2*time.Minute)
	cli, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ours := c.envs[0].Subnet.Masked()
	theirs := c.envs[1].Subnet.Masked()
	prefix := "/coreos.com/network/subnets/"
	bad := []struct {
		name, key, value, log string
		route                 string // a destination that must not be routed ("" if none)
		mac                   string // a MAC that must not appear in any FDB
	}{
		{"bad JSON", "10.5.200.0-24", `{"PublicIP":"172.30.0.99",`, "Ignoring bad subnet node", "10.5.200.0/24", ""},
		{"bad key", "garbage", fakeVXLAN("02:00:00:00:b0:01"), "Ignoring bad subnet node", "", "02:00:00:00:b0:01"},
		{"key with a path", "10.5.201.0-24/x", fakeVXLAN("02:00:00:00:b0:02"), "Ignoring bad subnet node", "10.5.201.0/24", "02:00:00:00:b0:02"},
		{"bad public IP", "10.5.202.0-24", `{"PublicIP":"999.1.1.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:b0:03"}}`,
			"Ignoring bad subnet node", "10.5.202.0/24", "02:00:00:00:b0:03"},
		{"bad VTEP MAC", "10.5.203.0-24", `{"PublicIP":"172.30.0.99","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz"}}`,
			"10.5.203.0-24", "10.5.203.0/24", ""},
		{"the underlay", "172.30.0.0-16", fakeVXLAN("02:00:00:00:b0:04"), "is outside the network", "172.30.0.0/16 via", "02:00:00:00:b0:04"},
		{"a default route", "0.0.0.0-1", fakeVXLAN("02:00:00:00:b0:05"), "is outside the network", "0.0.0.0/1", "02:00:00:00:b0:05"},
		{"half of h1's subnet", strings.ReplaceAll(netipNext(ours, 25), "/", "-"), fakeVXLAN("02:00:00:00:b0:06"), "overlaps", netipNext(ours, 25), "02:00:00:00:b0:06"},
		{"half of h2's subnet", strings.ReplaceAll(netipNext(theirs, 25), "/", "-"), fakeVXLAN("02:00:00:00:b0:07"), "overlaps", netipNext(theirs, 25), "02:00:00:00:b0:07"},
	}
	marks := make([]int, len(c.procs))
	for i, p := range c.procs {
		marks[i] = len(p.Log())
	}
	for _, b := range bad {
		if _, err := cli.Put(ctx, prefix+b.key, b.value); err != nil {
			t.Fatal(err)
		}
	}
	// A good lease written last: once it is programmed everywhere, every
	// daemon has seen all of the bad ones.
	if _, err := cli.Put(ctx, fakePeerKey, fakePeerValue); err != nil {
		t.Fatal(err)
	}
	waitFDB(t, l, l.Hosts(), true, time.Now(), 10*time.Second)
	// And a few passes more, with the bad ones in every one.
	time.Sleep(2 * time.Second)

	for i, h := range l.Hosts() {
		routes, _ := l.Exec(ctx, h.NS, "ip", "route", "show")
		fdb, _ := l.Exec(ctx, h.NS, "bridge", "fdb", "show", "dev", "flannel.1")
		neigh, _ := l.Exec(ctx, h.NS, "ip", "neigh", "show", "dev", "flannel.1")
		logged := c.procs[i].Log()[marks[i]:]
		for _, b := range bad {
			if b.route != "" && strings.Contains(routes, b.route) {
				t.Errorf("%s: %s: routed: %s", h.Name, b.name, routes)
			}
			if b.mac != "" && (strings.Contains(fdb, b.mac) || strings.Contains(neigh, b.mac)) {
				t.Errorf("%s: %s: MAC %s programmed:\n%s%s", h.Name, b.name, b.mac, fdb, neigh)
			}
			lines := logLines(logged, prefix+b.key)
			if !strings.Contains(b.log, "Ignoring bad") {
				lines = logLines(logged, "lease="+b.key)
				if b.name == "bad VTEP MAC" {
					lines = logLines(logged, b.key)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], b.log) {
				t.Errorf("%s: %s logged %d times, want once with %q:\n%s", h.Name, b.name, len(lines), b.log, logged)
			}
		}
		if err := contains(routes, "172.30.0.0/16 dev eth0 proto kernel", ours.String()); err != nil {
			t.Errorf("%s: %v:\n%s", h.Name, err, routes)
		}
		if c.procs[i].Exited() {
			t.Errorf("%s: flanneld exited:\n%s", h.Name, logged)
		}
		t.Logf("%s logged:\n%s", h.Name, logged)
	}
	c.pingAll(t)
	figure(t, "malformed-leases", "%d bad leases: each logged once per daemon, none programmed, no crash, pods connected", len(bad))
}

// Another program overwrites our own lease with its public IP. The daemon
// must not route its own subnet away: it stops with a clear error (exit 1)
// and leaves its subnet on cni0. Restarted (as systemd would), it leaves
// the claimed subnet to the claimant with a log line, leases a new one,
// and pods created after that reach the other nodes.
func TestPrivilegedReliabilitySubnetClaimed(t *testing.T) {
	c := startCluster(t, 2, vxlanConfig)
	c.pingAll(t)
	l, h1 := c.l, c.l.Hosts()[0]
	ctx := testCtx(t, 90*time.Second)
	cli, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ours := c.envs[0].Subnet.Masked()
	key := "/coreos.com/network/subnets/" + strings.ReplaceAll(ours.String(), "/", "-")
	if _, err := cli.Put(ctx, key, fakeVXLAN("02:00:00:00:c1:01")); err != nil {
		t.Fatal(err)
	}
	claimed := time.Now()
	code, err := c.procs[0].Wait(10 * time.Second)
	if err != nil {
		t.Fatalf("flanneld kept running with its subnet claimed by another node: %v\n%s", err, c.procs[0].Log())
	}
	stopped := time.Since(claimed)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if err := contains(c.procs[0].Log(), `msg="Our subnet was claimed by another node" subnet=`+ours.String()+" publicIP=172.30.0.99",
		`msg="lease `+ours.String()+`: our subnet was taken over by another node"`); err != nil {
		t.Errorf("%v:\n%s", err, c.procs[0].Log())
	}
	route, _ := l.Exec(ctx, h1.NS, "ip", "route", "show", ours.String())
	if strings.TrimSpace(route) != ours.String()+" dev cni0 proto kernel scope link src "+ours.Addr().Next().String() {
		t.Errorf("own subnet routed away: %q", route)
	}

	p, err := l.StartFlanneld(h1)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, l, p, 20*time.Second)
	env := waitEnv(t, l, h1, p, time.Second)
	if env.Subnet.Masked() == ours {
		t.Fatalf("restarted daemon took the claimed subnet %s back", ours)
	}
	if err := contains(p.Log(), "Previously leased subnet is now held by another node, not reusing it"); err != nil {
		t.Error(err)
	}
	// The bridge plugin keeps cni0's old address and refuses the new one
	// ("cni0" already has an IP address different from ...): on a subnet
	// change the operator deletes the bridge, which the old pods hang on.
	if _, err := l.Exec(ctx, h1.NS, "ip", "link", "del", "cni0"); err != nil {
		t.Fatal(err)
	}
	pod, err := l.AddPod(ctx, h1, "p2")
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, l, c.pods[1:], pod, time.Now(), 10*time.Second)
	figure(t, "subnet-claimed", "daemon stopped %s after the claim (exit %d, own subnet left on cni0); restarted, it moved from %s to %s and new pods connect",
		ms(stopped), code, ours, env.Subnet.Masked())
}

// netipNext is the first half of p, one bit longer, as text: a prefix
// overlapping p that a hostile writer could lease.
func netipNext(p interface{ String() string }, bits int) string {
	s := p.String()
	return s[:strings.LastIndexByte(s, '/')] + fmt.Sprintf("/%d", bits)
}
