package etcd

import (
	"regexp"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// The allocation and reuse lines are upstream's, byte for byte: an IPv4-only
// lease prints its absent IPv6 half as ::/0 (spec: flannel-daemon.md, the
// start-up log), not Go's "invalid Prefix".
func TestAcquireLogLines(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 30*time.Second)
	attrs := vxAttrs("192.168.0.1", "0e:00:00:00:00:01")
	m, log := newManager(t, cli, Options{})
	if _, err := m.Acquire(ctx, cfg, attrs, subnet.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	m2, log2 := newManager(t, cli, Options{})
	if _, err := m2.Acquire(ctx, cfg, attrs, subnet.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Allocated lease \(ip: 10\.5\.\d+\.0/24 ipv6: ::/0\) to current node \(192\.168\.0\.1\) `).MatchString(log.String()) {
		t.Errorf("allocation line:\n%s", log.String())
	}
	if !regexp.MustCompile(`Found lease \(ip: 10\.5\.\d+\.0/24 ipv6: ::/0\) for current IP \(192\.168\.0\.1\), reusing`).MatchString(log2.String()) {
		t.Errorf("reuse line:\n%s", log2.String())
	}
}
