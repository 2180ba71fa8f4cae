package subnet

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

func testLease(v4, v6 string) Lease {
	var l Lease
	if v4 != "" {
		l.Subnet = netip.MustParsePrefix(v4)
	}
	if v6 != "" {
		l.IPv6Subnet = netip.MustParsePrefix(v6)
	}
	l.Attrs.PublicIP = netip.MustParseAddr("172.30.0.99")
	return l
}

func TestPeerFilter(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00:5::/56","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	own := testLease("10.5.7.0/24", "fd00:5:0:7::/64")
	tests := []struct {
		lease Lease
		why   string // "" means usable
	}{
		{testLease("10.5.8.0/24", "fd00:5:0:8::/64"), ""},
		{testLease("10.5.9.0/24", ""), ""},                 // IPv4 half only
		{testLease("", "fd00:5:0:a::/64"), ""},             // IPv6 half only
		{testLease("10.5.12.0/22", "fd00:5:0:c::/62"), ""}, // another length, overlapping nobody
		{testLease("172.30.0.0/16", ""), "its IPv4 subnet 172.30.0.0/16 is outside the network 10.5.0.0/16"},
		{testLease("10.0.0.0/8", ""), "its IPv4 subnet 10.0.0.0/8 is outside the network 10.5.0.0/16"},
		{testLease("0.0.0.0/1", ""), "its IPv4 subnet 0.0.0.0/1 is outside the network 10.5.0.0/16"},
		{testLease("10.5.7.0/25", ""), "its IPv4 subnet 10.5.7.0/25 overlaps our own subnet 10.5.7.0/24"},
		{testLease("10.5.0.0/20", ""), "its IPv4 subnet 10.5.0.0/20 overlaps our own subnet 10.5.7.0/24"},
		{testLease("10.5.8.128/25", ""), "its IPv4 subnet 10.5.8.128/25 overlaps the lease of 10.5.8.0/24, which has the configured length /24"},
		{testLease("10.5.9.0/24", "fd00:6::/64"), "its IPv6 subnet fd00:6::/64 is outside the network fd00:5::/56"},
		{testLease("10.5.20.0/24", "fd00:5:0:7:8000::/65"), "its IPv6 subnet fd00:5:0:7:8000::/65 overlaps our own subnet fd00:5:0:7::/64"},
		{testLease("10.5.21.0/24", "fd00:5:0:8::/63"), "its IPv6 subnet fd00:5:0:8::/63 overlaps the lease of fd00:5:0:8::/64, which has the configured length /64"},
	}
	const usable = 4
	var all []Lease
	for _, tc := range tests {
		all = append(all, tc.lease)
	}
	var buf bytes.Buffer
	f := NewPeerFilter(cfg, own, slog.New(slog.NewTextHandler(&buf, nil)))
	for range 3 {
		got := f.Filter(append([]Lease(nil), all...))
		if len(got) != usable {
			t.Fatalf("filter kept %d: %v", len(got), got)
		}
		for i := range usable {
			if got[i].Key() != all[i].Key() {
				t.Errorf("kept %s at %d, want %s", got[i].Key(), i, all[i].Key())
			}
		}
	}
	for _, tc := range tests[usable:] {
		if n := strings.Count(buf.String(), "Ignoring lease: "+tc.why); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", tc.why, n, buf.String())
		}
	}
	// A lease that went away and comes back is logged again.
	f.Filter(all[:1])
	buf.Reset()
	f.Filter(append([]Lease(nil), all...))
	if n := strings.Count(buf.String(), "Ignoring lease"); n != len(tests)-usable {
		t.Errorf("after a gap: %d log lines, want %d", n, len(tests)-usable)
	}

	// With IPv6 off, the IPv6 half is not looked at (the backends ignore it).
	cfg4, _ := ParseConfig([]byte(`{"Network":"10.5.0.0/16"}`))
	if got := NewPeerFilter(cfg4, own, slog.New(slog.DiscardHandler)).Filter([]Lease{testLease("10.5.8.0/24", "fd00:6::/64")}); len(got) != 1 {
		t.Errorf("IPv4-only network dropped a lease for its IPv6 half")
	}
}

// delta must decide as filter would, and decline whenever filter's answer
// for one lease depends on the others.
func TestPeerFilterDelta(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	own := testLease("10.5.7.0/24", "")
	var buf bytes.Buffer
	f := NewPeerFilter(cfg, own, slog.New(slog.NewTextHandler(&buf, nil)))
	a, b := testLease("10.5.8.0/24", ""), testLease("10.5.9.0/24", "")
	outside := testLease("172.30.0.0/16", "")
	f.Filter([]Lease{a})

	gone, came, ok := f.Delta(nil, []Lease{b, outside})
	if !ok || len(gone) != 0 || len(came) != 1 || came[0].Key() != b.Key() {
		t.Fatalf("delta(+b, +outside) = %v, %v, %v; want b only", gone, came, ok)
	}
	f.Delta(nil, []Lease{outside}) // the same reason again: not logged again
	if n := strings.Count(buf.String(), "Ignoring lease"); n != 1 {
		t.Fatalf("outside lease logged %d times, want once:\n%s", n, buf.String())
	}
	// Going away, a lease is gone only if it was programmed.
	gone, _, ok = f.Delta([]Lease{b, outside}, nil)
	if !ok || len(gone) != 1 || gone[0].Key() != b.Key() {
		t.Fatalf("delta(-b, -outside) gone = %v, %v; want b only", gone, ok)
	}
	// A lease of another length: whether it is usable depends on the
	// others; so does every decision while one is known.
	odd := testLease("10.5.12.0/22", "")
	if _, _, ok := f.Delta(nil, []Lease{odd}); ok {
		t.Fatal("delta accepted a lease of another length")
	}
	f.Filter([]Lease{a, odd})
	if _, _, ok := f.Delta(nil, []Lease{b}); ok {
		t.Fatal("delta accepted a change while a lease of another length is known")
	}
	f.Filter([]Lease{a, b})
	if _, _, ok := f.Delta([]Lease{b}, nil); !ok {
		t.Fatal("delta declined once the odd lease was gone")
	}
}
