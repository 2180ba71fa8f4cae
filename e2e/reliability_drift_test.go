//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// driftCase is one hand-made change to a node and what its repair looks
// like: check's output (if check is set) passes ok.
type driftCase struct {
	name  string
	do    [][]string
	check []string
	ok    func(out string) error
}

// Kernel state deleted or changed by hand on a node is put back: routes,
// neighbour and FDB entries of a peer, the vxlan device itself, and the
// masquerade and forward rules (iptables, then nftables). Each repair is
// timed; pods reach each other after every one.
func TestPrivilegedReliabilityDrift(t *testing.T) {
	c := startCluster(t, 3, vxlanConfig, "--ip-masq", "--iptables-resync=1")
	c.pingAll(t)
	l, h1 := c.l, c.l.Hosts()[0]
	ctx := testCtx(t, 3*time.Minute)
	peer := c.envs[1].Subnet.Masked()
	vtep := peer.Addr().String()
	other := c.envs[2].Subnet.Masked().Addr().String()
	mac := leaseMAC(t, l, peer)
	ownMAC := leaseMAC(t, l, c.envs[0].Subnet)
	peerIP := l.Hosts()[1].IP.String()

	run := func(cmd ...string) string {
		t.Helper()
		out, err := l.Exec(ctx, h1.NS, cmd...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var figures []string
	repair := func(cases []driftCase) {
		t.Helper()
		for _, tc := range cases {
			for _, cmd := range tc.do {
				run(cmd...)
			}
			start := time.Now()
			err := l.WaitFor(ctx, 15*time.Second, tc.name+" repaired", func() error {
				out := ""
				if tc.check != nil {
					var err error
					if out, err = l.Exec(ctx, h1.NS, tc.check...); err != nil {
						return err
					}
				}
				return tc.ok(out)
			})
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			t.Logf("%s by hand: repaired in %s", tc.name, ms(took))
			figures = append(figures, tc.name+" "+ms(took))
			c.pingAll(t)
		}
	}

	routeOK := func(out string) error {
		return contains(out, peer.String()+" via "+vtep+" dev flannel.1 proto 45 onlink")
	}
	neighOK := func(out string) error { return contains(out, vtep+" lladdr "+mac+" PERMANENT") }
	fdbOK := func(out string) error {
		if strings.Contains(out, "dst 172.30.0.99") {
			return fmt.Errorf("wrong destination still there: %s", out)
		}
		return contains(out, mac+" dst "+peerIP+" self permanent")
	}
	routeShow := []string{"ip", "route", "show", peer.String()}
	neighShow := []string{"ip", "neigh", "show", "dev", "flannel.1", vtep}
	fdbShow := []string{"bridge", "fdb", "show", "dev", "flannel.1"}
	linkShow := []string{"ip", "-o", "link", "show", "flannel.1"}
	repair([]driftCase{
		{"route deleted", [][]string{{"ip", "route", "del", peer.String()}}, routeShow, routeOK},
		{"route via another gateway", [][]string{{"ip", "route", "replace", peer.String(), "via", other, "dev", "flannel.1", "onlink"}}, routeShow, routeOK},
		{"route via the underlay", [][]string{{"ip", "route", "replace", peer.String(), "via", peerIP, "dev", "eth0"}}, routeShow, routeOK},
		{"neighbour deleted", [][]string{{"ip", "neigh", "del", vtep, "dev", "flannel.1"}}, neighShow, neighOK},
		{"neighbour MAC changed", [][]string{{"ip", "neigh", "replace", vtep, "lladdr", "02:00:00:00:0d:01", "dev", "flannel.1", "nud", "permanent"}}, neighShow, neighOK},
		{"FDB deleted", [][]string{{"bridge", "fdb", "del", mac, "dev", "flannel.1", "dst", peerIP, "self"}}, fdbShow, fdbOK},
		{"FDB destination changed", [][]string{{"bridge", "fdb", "replace", mac, "dev", "flannel.1", "dst", "172.30.0.99", "self", "permanent"}}, fdbShow, fdbOK},
		{"device MAC changed", [][]string{{"ip", "link", "set", "flannel.1", "address", "02:00:00:00:0d:02"}}, linkShow,
			func(out string) error { return contains(out, "link/ether "+ownMAC) }},
		{"device MTU changed", [][]string{{"ip", "link", "set", "flannel.1", "mtu", "1300"}}, linkShow,
			func(out string) error { return contains(out, "mtu 1450") }},
		{"device down", [][]string{{"ip", "link", "set", "flannel.1", "down"}}, linkShow,
			func(out string) error { return contains(out, ",UP,") }},
		{"device deleted", [][]string{{"ip", "link", "del", "flannel.1"}}, linkShow,
			func(out string) error { return contains(out, "link/ether "+ownMAC, ",UP,") }},
	})

	// The rules as the daemon installed them; every firewall case must end
	// with exactly these again.
	rules := func() string {
		return run("iptables", "-t", "nat", "-S", "POSTROUTING") + run("iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG") +
			run("iptables", "-S", "FORWARD") + run("iptables", "-S", "FLANNEL-FWD")
	}
	wantRules := rules()
	sameRules := func(string) error {
		if got := rules(); got != wantRules {
			return fmt.Errorf("rules:\n%s\nwant:\n%s", got, wantRules)
		}
		return nil
	}
	masq := strings.Split(strings.TrimSpace(run("iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG")), "\n")[1:] // without -N
	if len(masq) < 2 {
		t.Fatalf("want several masquerade rules to reorder:\n%s", wantRules)
	}
	// iptables -S quotes the comment; the shell splits the line back.
	last := strings.TrimPrefix(masq[len(masq)-1], "-A FLANNEL-POSTRTG ")
	repair([]driftCase{
		{"masquerade rule deleted", [][]string{{"iptables", "-t", "nat", "-D", "FLANNEL-POSTRTG", "1"}}, nil, sameRules},
		{"masquerade rules reordered", [][]string{
			{"iptables", "-t", "nat", "-D", "FLANNEL-POSTRTG", fmt.Sprint(len(masq))},
			{"sh", "-c", "iptables -t nat -I FLANNEL-POSTRTG 1 " + last},
		}, nil, sameRules},
		{"masquerade jump deleted", [][]string{{"iptables", "-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", "flanneld masq", "-j", "FLANNEL-POSTRTG"}}, nil, sameRules},
		{"forward rule changed", [][]string{{"iptables", "-R", "FLANNEL-FWD", "1", "-s", "10.5.0.0/16", "-j", "DROP"}}, nil, sameRules},
	})

	// The same node in nftables mode: its own table is kept exactly.
	cli, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/coreos.com/network/config", `{"Network":"10.5.0.0/16","EnableNFTables":true,"Backend":{"Type":"vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.procs[0].Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p, err := l.StartFlanneld(h1, "--ip-masq", "--iptables-resync=1")
	if err != nil {
		t.Fatal(err)
	}
	c.procs[0] = p
	waitReady(t, l, p, 20*time.Second)
	table := []string{"nft", "list", "table", "ip", "flannel-ipv4"}
	wantTable := run(table...)
	sameTable := func(got string) error {
		if got != wantTable {
			return fmt.Errorf("table:\n%s\nwant:\n%s", got, wantTable)
		}
		return nil
	}
	repair([]driftCase{
		{"nft masquerade chain flushed", [][]string{{"nft", "flush", "chain", "ip", "flannel-ipv4", "postrtg"}}, table, sameTable},
		{"nft rule added", [][]string{{"nft", "insert", "rule", "ip", "flannel-ipv4", "forward", "drop"}}, table, sameTable},
		{"nft table deleted", [][]string{{"nft", "delete", "table", "ip", "flannel-ipv4"}}, table, sameTable},
	})
	if p.Exited() {
		t.Errorf("flanneld exited:\n%s", p.Log())
	}
	figure(t, "drift", "repaired (firewall resync 1 s): %s", strings.Join(figures, ", "))
}
