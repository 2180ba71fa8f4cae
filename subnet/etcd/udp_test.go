package etcd

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// A udp lease is written as upstream's udp backend writes it, with no
// BackendType, whatever the caller passes; a value of ours from before
// (with "BackendType":"udp") is rewritten on the next start.
func TestUDPLeaseValueHasNoBackendType(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"udp"}}`)
	ctx := ctxT(t, 30*time.Second)
	m, _ := newManager(t, cli, Options{})
	udp := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.168.0.1"), BackendType: "udp"}
	l, err := m.Acquire(ctx, cfg, udp, subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	value := func() string {
		resp, err := cli.Get(ctx, m.KeyFor(l))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s: %v", m.KeyFor(l), err)
		}
		return string(resp.Kvs[0].Value)
	}
	const want = `{"PublicIP":"192.168.0.1","PublicIPv6":null}`
	if v := value(); v != want {
		t.Errorf("new lease: value %s, want %s", v, want)
	}

	if _, err := cli.Put(ctx, m.KeyFor(l), `{"PublicIP":"192.168.0.1","PublicIPv6":null,"BackendType":"udp"}`); err != nil {
		t.Fatal(err)
	}
	m2, _ := newManager(t, cli, Options{})
	if again, err := m2.Acquire(ctx, cfg, subnet.LeaseAttrs{PublicIP: udp.PublicIP}, subnet.Env{}, nil); err != nil || again.Subnet != l.Subnet {
		t.Fatalf("restart: %v %v", again, err)
	}
	if v := value(); v != want {
		t.Errorf("after a restart: value %s, want %s", v, want)
	}
}
