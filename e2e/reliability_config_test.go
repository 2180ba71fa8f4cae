//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"
)

// The network config in etcd changes under running daemons (vxlan to
// host-gw, then to an invalid config, then back): every daemon logs, once
// per change and within about 5 s, what changed and what an operator must
// do; nothing exits, and pod traffic keeps flowing on the running config.
func TestPrivilegedReliabilityConfigChange(t *testing.T) {
	c := startCluster(t, 2, vxlanConfig)
	c.pingAll(t)
	l := c.l
	ctx := testCtx(t, 2*time.Minute)
	cli, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const pingFor = 25 * time.Second
	wait := pingPair(t, c.pods[0], c.pods[1], pingFor)
	began := time.Now()
	marks := make([]int, len(c.procs))
	for i, p := range c.procs {
		marks[i] = len(p.Log())
	}
	// change puts a config and waits until every daemon logged want.
	change := func(cfg, want string) time.Duration {
		t.Helper()
		if _, err := cli.Put(ctx, "/coreos.com/network/config", cfg); err != nil {
			t.Fatal(err)
		}
		put := time.Now()
		for i, p := range c.procs {
			if err := l.WaitFor(ctx, 10*time.Second, l.Hosts()[i].Name+" logs "+want, func() error {
				return contains(p.Log()[marks[i]:], want)
			}); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(put)
	}
	toHostGW := change(`{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`,
		`msg="The network config in etcd changed; still running on the previous config. Restart flanneld on every node to apply it" changed="Backend.Type: \"vxlan\" -> \"host-gw\""`)
	toInvalid := change(`{"Network":"10.5.0.0/16","SubnetLen":40,"Backend":{"Type":"vxlan"}}`,
		"The network config in etcd changed and is invalid; still running on the previous config")
	back := change(vxlanConfig, "The network config in etcd is back to the running config")
	if d := time.Since(began); d > pingFor-3*time.Second {
		t.Fatalf("the changes took %s, longer than the ping covers", ms(d))
	}
	sent, recv := wait()

	peer := c.envs[1].Subnet.Masked()
	out, _ := l.Exec(ctx, l.Hosts()[0].NS, "ip", "route", "show", peer.String())
	if err := contains(out, "dev flannel.1"); err != nil {
		t.Errorf("route to the peer left the vxlan device: %v: %s", err, out)
	}
	for i, p := range c.procs {
		logged := p.Log()[marks[i]:]
		if p.Exited() {
			t.Errorf("%s: flanneld exited:\n%s", l.Hosts()[i].Name, logged)
		}
		for _, msg := range []string{"The network config in etcd changed;", "changed and is invalid", "back to the running config"} {
			if n := strings.Count(logged, msg); n != 1 {
				t.Errorf("%s logged %q %d times, want once:\n%s", l.Hosts()[i].Name, msg, n, logged)
			}
		}
	}
	t.Logf("h1 logged:\n%s", c.procs[0].Log()[marks[0]:])
	figure(t, "config-change", "vxlan -> host-gw logged by every node after %s, invalid config after %s, back after %s; pod ping %s; still on vxlan",
		ms(toHostGW), ms(toInvalid), ms(back), lossLine(sent, recv))
	if recv != sent {
		t.Errorf("lost %d of %d pod packets", sent-recv, sent)
	}
}
