//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

func startCluster6(t *testing.T, hosts int, netConfig string, args ...string) *cluster {
	t.Helper()
	return startClusterOpts(t, lab.Options{Hosts: hosts, IPv6: true}, netConfig, args...)
}

func (c *cluster) pingAll6(t *testing.T) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	for _, a := range c.pods {
		for _, b := range c.pods {
			if a == b {
				continue
			}
			if err := c.l.WaitFor(ctx, 10*time.Second, fmt.Sprintf("ping6 %s -> %s", a.NS, b.IPv6), func() error {
				return c.l.Ping(ctx, a.NS, b.IPv6, 1)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func testDualStack(t *testing.T, backendType string) {
	c := startCluster6(t, 3, fmt.Sprintf(`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00:10::/56","Backend":{"Type":%q}}`, backendType), "--ip-masq", "--iface=eth0")
	for i, e := range c.envs {
		if !e.IPv6Subnet.IsValid() || e.IPv6Subnet.Bits() != 64 || !c.pods[i].IPv6.IsValid() {
			t.Fatalf("host %d: env %+v pod %+v", i, e, c.pods[i])
		}
	}
	if backendType == "vxlan" && c.envs[0].MTU != 1430 {
		t.Errorf("FLANNEL_MTU %d, want 1430 (the IPv6 tunnel's MTU, the smaller)", c.envs[0].MTU)
	}
	c.pingAll(t)
	c.pingAll6(t)
	ctx := testCtx(t, 60*time.Second)
	if err := c.l.TCPTransfer(ctx, c.pods[0].NS, c.pods[1].NS, c.pods[1].IPv6, 4<<20); err != nil {
		t.Fatal(err)
	}
	// Masquerade for both families toward a namespace outside the Network.
	ext, err := c.l.AddExternal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h1 := c.l.Hosts()[0]
	if src := remoteAddrSeen(t, c.pods[0].NS, ext.NS, ext.IP); src != h1.IP {
		t.Errorf("v4 pod -> external from %s, want %s", src, h1.IP)
	}
	if src := remoteAddrSeen(t, c.pods[0].NS, ext.NS, ext.IPv6); src != h1.IPv6 {
		t.Errorf("v6 pod -> external from %s, want %s", src, h1.IPv6)
	}
	if src := remoteAddrSeen(t, c.pods[0].NS, c.pods[2].NS, c.pods[2].IPv6); src != c.pods[0].IPv6 {
		t.Errorf("v6 pod -> pod from %s, want %s", src, c.pods[0].IPv6)
	}
}

func TestPrivilegedDualStackVXLAN(t *testing.T)  { testDualStack(t, "vxlan") }
func TestPrivilegedDualStackHostGW(t *testing.T) { testDualStack(t, "host-gw") }

func TestPrivilegedIPv6Only(t *testing.T) {
	// The interface is chosen by a regex on its IPv6 address.
	c := startCluster6(t, 2, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/56","Backend":{"Type":"vxlan"}}`, "--iface-regex=^fd00:30::")
	if c.envs[0].Subnet.IsValid() || c.envs[0].Network.IsValid() {
		t.Errorf("IPv4 keys in an IPv6-only subnet.env: %+v", c.envs[0])
	}
	c.pingAll6(t)
	cli, _ := c.l.Etcd(context.Background())
	ls := leases(t, cli, "/coreos.com/network")
	for k := range ls {
		if !strings.Contains(k, "/subnets/0.0.0.0-0&fd00:10:") {
			t.Errorf("key %s", k)
		}
	}
}

// Existing IPv4-only leases, then the network is switched to dual stack:
// no crash, each node keeps its IPv4 subnet and picks up an IPv6 subnet on
// restart.
func TestPrivilegedSwitchToDualStack(t *testing.T) {
	c := startCluster6(t, 2, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	c.pingAll(t)
	cli, _ := c.l.Etcd(context.Background())
	ctx := testCtx(t, 60*time.Second)
	if _, err := cli.Put(ctx, "/coreos.com/network/config", `{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00:10::/56","Backend":{"Type":"vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	for i, h := range c.l.Hosts() {
		// The running daemon notices and says what to do.
		if err := c.l.WaitFor(ctx, 10*time.Second, "config change logged", func() error {
			return contains(c.procs[i].Log(), "The network config in etcd changed")
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.procs[i].Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		p, err := c.l.StartFlanneld(h)
		if err != nil {
			t.Fatal(err)
		}
		c.procs[i] = p
		var e subnet.Env
		if err := c.l.WaitFor(ctx, 30*time.Second, "dual-stack subnet.env on "+h.Name, func() error {
			if p.Exited() {
				return fmt.Errorf("exited:\n%s", p.Log())
			}
			var err error
			e, err = subnet.ReadEnvFile(h.SubnetFile())
			if err != nil {
				return err
			}
			if !e.IPv6Subnet.IsValid() {
				return fmt.Errorf("no IPv6 subnet yet")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if e.Subnet != c.envs[i].Subnet {
			t.Errorf("%s: IPv4 subnet moved from %s to %s", h.Name, c.envs[i].Subnet, e.Subnet)
		}
	}
	// Old pods keep their IPv4 traffic.
	c.pingAll(t)
	if n := len(leases(t, cli, "/coreos.com/network")); n != 2 {
		t.Errorf("%d leases after the switch", n)
	}
}
