package etcd

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

func TestGuardPrefixes(t *testing.T) {
	shorter := func(addr string, from int) []string {
		var out []string
		for l := from; l >= 1; l-- {
			p := netip.PrefixFrom(netip.MustParseAddr(addr), l).Masked()
			out = append(out, fmt.Sprintf("%s-%d", p.Addr(), l))
		}
		return out
	}
	for _, c := range []struct {
		v4, v6 string
		block  []string
	}{
		{"10.5.52.0/24", "", []string{"10.5.52."}},
		{"10.5.52.0/23", "", []string{"10.5.52.", "10.5.53."}},
		{"10.5.96.0/21", "", []string{"10.5.96.", "10.5.97.", "10.5.98.", "10.5.99.", "10.5.100.", "10.5.101.", "10.5.102.", "10.5.103."}},
		{"10.5.0.0/19", "", []string{"10.5."}}, // 32 values: the whole octet's block
		{"10.5.52.0/25", "", []string{"10.5.52."}},
		{"10.5.52.240/28", "", []string{"10.5.52.240-", "10.5.52.241-", "10.5.52.242-", "10.5.52.243-", "10.5.52.244-", "10.5.52.245-", "10.5.52.246-", "10.5.52.247-",
			"10.5.52.248-", "10.5.52.249-", "10.5.52.250-", "10.5.52.251-", "10.5.52.252-", "10.5.52.253-", "10.5.52.254-", "10.5.52.255-"}},
		{"10.5.52.7/32", "", []string{"10.5.52.7-"}},
		{"10.0.0.0/8", "", []string{"10."}},
		{"8.0.0.0/6", "", []string{"8.", "9.", "10.", "11."}},
		{"32.0.0.0/3", "", []string{""}}, // 32 values: every key
	} {
		v4 := netip.MustParsePrefix(c.v4)
		want := append(c.block, shorter(v4.Addr().String(), v4.Bits()-1)...)
		if got := guardPrefixes(v4, netip.Prefix{}); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", v4, got, want)
		}
	}
	for _, c := range [][2]string{{"10.5.52.0/24", "fd00:10::/64"}, {"", "fd00:10::/64"}} {
		var v4 netip.Prefix
		if c[0] != "" {
			v4 = netip.MustParsePrefix(c[0])
		}
		if got := guardPrefixes(v4, netip.MustParsePrefix(c[1])); !slices.Equal(got, []string{""}) {
			t.Errorf("%v&%s: %q, want the whole prefix", v4, c[1], got)
		}
	}
}

// The create transaction fails when a key that could overlap the
// candidate was written after the listing, and only then: a join no
// longer conflicts with every other join.
func TestCreateGuardsOnlyOverlappingKeys(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	ctx := ctxT(t, 30*time.Second)
	for i, c := range []struct {
		v4, v6   string
		written  string
		conflict bool
	}{
		{"10.5.52.0/24", "", "10.5.53.0-24", false},
		{"10.5.52.0/24", "", "10.5.5.0-24", false},
		{"10.5.52.0/24", "", "10.5.152.0-24", false},
		{"10.5.52.0/24", "", "0.0.0.0-0&fd00:10::-64", false},
		{"10.5.52.0/24", "", "10.5.52.128-25", true},
		{"10.5.52.0/24", "", "10.5.52.0-24&fd00:10::-64", true},
		{"10.5.52.0/24", "", "10.5.52.0-22", true},
		{"10.5.52.0/24", "", "10.5.0.0-16", true},
		{"10.5.52.0/24", "", "10.5.0.0-16&fd00:10::-64", true},
		{"10.5.52.0/24", "", "10.0.0.0-8", true},
		{"10.5.52.0/23", "", "10.5.53.0-24", true},
		{"10.5.52.0/23", "", "10.5.54.0-24", false},
		{"10.5.96.0/21", "", "10.5.100.0-24", true},
		{"10.5.96.0/21", "", "10.5.99.128-25", true},
		{"10.5.96.0/21", "", "10.5.104.0-24", false},
		{"10.5.96.0/21", "", "10.5.9.0-24", false},
		{"10.5.96.0/21", "", "10.5.10.0-24", false},
		// IPv6 halves that overlap while the IPv4 halves do not.
		{"10.5.52.0/24", "fd00:10::/64", "10.5.53.0-24&fd00:10::-63", true},
		{"", "fd00:10::/64", "10.5.53.0-24&fd00:10::-64", true},
	} {
		m, _ := newManager(t, cli, Options{Prefix: fmt.Sprintf("/case%d", i)})
		listing, err := m.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, m.SubnetsPrefix()+c.written, `{"PublicIP":"192.168.0.2","PublicIPv6":null}`); err != nil {
			t.Fatal(err)
		}
		var v4, v6 netip.Prefix
		if c.v4 != "" {
			v4 = netip.MustParsePrefix(c.v4)
		}
		if c.v6 != "" {
			v6 = netip.MustParsePrefix(c.v6)
		}
		g := &leaseGrant{}
		_, err = m.create(ctx, creation{v4: v4, v6: v6, attrs: vxAttrs("192.168.0.1", "02:00:00:00:00:01"), rev: listing.Revision}, g)
		g.release(ctx, m)
		if conflict := errors.Is(err, errTryAgain); conflict != c.conflict || err != nil && !conflict {
			t.Errorf("%s&%s after %s was written: %v, want conflict %v", c.v4, c.v6, c.written, err, c.conflict)
		}
	}
}

func TestNthSubnet(t *testing.T) {
	for _, c := range []struct {
		first string
		size  int
		i     uint64
		want  string
	}{
		{"10.5.1.0", 24, 0, "10.5.1.0/24"},
		{"10.5.1.0", 24, 254, "10.5.255.0/24"},
		{"10.5.0.128", 25, 3, "10.5.2.0/25"},
		{"10.0.0.0", 32, 5, "10.0.0.5/32"},
		{"fd00:10:0:1::", 64, 254, "fd00:10:0:ff::/64"},
		{"fd00::", 48, 1, "fd00:0:1::/48"},
		{"fd00::", 127, 1<<63 + 1, "fd00:0:0:1::2/127"},
	} {
		if got := nthSubnet(netip.MustParseAddr(c.first), c.size, c.i).String(); got != c.want {
			t.Errorf("subnet %d of /%d from %s: %s, want %s", c.i, c.size, c.first, got, c.want)
		}
	}
}

// Picks spread over the whole range, not over the first 100 free
// subnets: joiners starting together rarely pick the same one.
func TestPickSpreads(t *testing.T) {
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.0.0.0/8"}`))
	if err != nil {
		t.Fatal(err)
	}
	m := New(nil, Options{})
	var taken []netip.Prefix
	for i := 1; i <= 100; i++ {
		taken = append(taken, netip.MustParsePrefix(fmt.Sprintf("10.0.%d.0/24", i)))
	}
	seen := map[netip.Prefix]bool{}
	high := 0
	for range 1000 {
		p, err := m.pick(cfg, false, taken, len(taken))
		if err != nil || subnet.Overlaps(p, taken) || !cfg.CompatibleV4(p) {
			t.Fatalf("picked %s, %v", p, err)
		}
		seen[p] = true
		if p.Addr().As4()[1] >= 128 {
			high++
		}
	}
	if len(seen) < 950 || high < 400 {
		t.Errorf("1,000 picks: %d distinct, %d in the upper half of the range", len(seen), high)
	}
	// A range with one free subnet left still finds it.
	small, _ := subnet.ParseConfig([]byte(`{"Network":"10.5.0.0/22","SubnetLen":24}`))
	p, err := m.pick(small, false, []netip.Prefix{netip.MustParsePrefix("10.5.1.0/24"), netip.MustParsePrefix("10.5.3.0/24")}, 2)
	if err != nil || p.String() != "10.5.2.0/24" {
		t.Errorf("nearly full: %s %v", p, err)
	}
}
