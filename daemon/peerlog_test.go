package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/flannelng/flannel/pkg/metrics"
	"github.com/flannelng/flannel/subnet"
)

func peer(sub, pub, mac string) subnet.Lease {
	l := subnet.Lease{Subnet: netip.MustParsePrefix(sub), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr(pub), BackendType: "vxlan"}}
	if mac != "" {
		l.Attrs.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"` + mac + `"}`)
	}
	return l
}

// scriptPeers is a PeerSource whose TakeAll and Changes return what the
// test set last.
type scriptPeers struct {
	all        []subnet.Lease
	gone, came []subnet.Lease
	needAll    bool
}

func (p *scriptPeers) Run(ctx context.Context)  { <-ctx.Done() }
func (p *scriptPeers) Updated() <-chan struct{} { return nil }
func (p *scriptPeers) TakeAll() ([]subnet.Lease, bool) {
	return append([]subnet.Lease(nil), p.all...), true
}
func (p *scriptPeers) Changes() (gone, came []subnet.Lease, all bool) {
	gone, came, p.gone, p.came = p.gone, p.came, nil, nil
	return gone, came, p.needAll
}

// deltaNetwork is a Network with the delta path that accepts every change.
type deltaNetwork struct{ passes, deltas int }

func (n *deltaNetwork) MTU() int                                        { return 1450 }
func (n *deltaNetwork) Reconcile(context.Context, []subnet.Lease) error { n.passes++; return nil }
func (n *deltaNetwork) Changed() <-chan struct{}                        { return nil }
func (n *deltaNetwork) Close() error                                    { return nil }
func (n *deltaNetwork) Update(context.Context, []subnet.Lease, []subnet.Lease) error {
	n.deltas++
	return nil
}

func newTestDataPlane(t *testing.T, level slog.Level) (*dataPlane, *scriptPeers, *deltaNetwork, *bytes.Buffer) {
	t.Helper()
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	src, nw := &scriptPeers{}, &deltaNetwork{}
	own := peer("10.5.1.0/24", "192.0.2.1", "")
	return newDataPlane(src, nw, own, cfg, metrics.New(), log), src, nw, &buf
}

// peerLines are the per-peer lines of a log, in order.
func peerLines(buf *bytes.Buffer) []string {
	var out []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, `msg="Peer `) {
			out = append(out, l)
		}
	}
	buf.Reset()
	return out
}

func wantLines(t *testing.T, step string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// -v=2: one line per peer added, changed or removed, on full passes and on
// the delta path alike, and a full pass after deltas logs nothing new.
func TestPeerLinesFullAndDelta(t *testing.T) {
	dp, src, nw, buf := newTestDataPlane(t, LevelPeers)
	ctx := context.Background()

	a, b := peer("10.5.2.0/24", "192.0.2.2", "aa:00:00:00:00:02"), peer("10.5.3.0/24", "192.0.2.3", "")
	src.all = []subnet.Lease{peer("10.5.1.0/24", "192.0.2.1", ""), a, b} // ours is never a peer
	if _, err := dp.full(ctx); err != nil {
		t.Fatal(err)
	}
	wantLines(t, "first pass", peerLines(buf), []string{
		`level=DEBUG+2 msg="Peer added" subnet=10.5.2.0/24 publicIP=192.0.2.2 backend=vxlan`,
		`level=DEBUG+2 msg="Peer added" subnet=10.5.3.0/24 publicIP=192.0.2.3 backend=vxlan`,
	})
	if dp.programmed != 2 {
		t.Errorf("programmed %d, want 2", dp.programmed)
	}

	// The delta path: b moves to another public IP, c joins, a leaves.
	b2, c := peer("10.5.3.0/24", "192.0.2.33", ""), peer("10.5.4.0/24", "192.0.2.4", "")
	src.gone, src.came = []subnet.Lease{b, a}, []subnet.Lease{b2, c}
	if err := dp.changed(ctx); err != nil {
		t.Fatal(err)
	}
	if nw.deltas != 1 || nw.passes != 1 {
		t.Fatalf("deltas %d passes %d, want the delta path", nw.deltas, nw.passes)
	}
	wantLines(t, "delta", peerLines(buf), []string{
		`level=DEBUG+2 msg="Peer removed" subnet=10.5.2.0/24 publicIP=192.0.2.2 backend=vxlan`,
		`level=DEBUG+2 msg="Peer changed" subnet=10.5.3.0/24 publicIP=192.0.2.33 backend=vxlan was="publicIP=192.0.2.3 backend=vxlan"`,
		`level=DEBUG+2 msg="Peer added" subnet=10.5.4.0/24 publicIP=192.0.2.4 backend=vxlan`,
	})
	if dp.programmed != 2 {
		t.Errorf("programmed %d after the delta, want 2", dp.programmed)
	}

	// A full pass over the same set: nothing to say.
	src.all = []subnet.Lease{b2, c}
	if err := dp.periodic(ctx); err != nil {
		t.Fatal(err)
	}
	wantLines(t, "pass after deltas", peerLines(buf), nil)

	// A full pass that finds a change (a missed event, a relist): c's VTEP
	// MAC, c removed... each told once.
	c2 := peer("10.5.4.0/24", "192.0.2.4", "aa:00:00:00:00:04")
	d := subnet.Lease{IPv6Subnet: netip.MustParsePrefix("fd00:5:6::/64"), Attrs: subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::6"), BackendType: "vxlan"}}
	src.all = []subnet.Lease{c2, d}
	src.needAll = true
	if err := dp.changed(ctx); err != nil {
		t.Fatal(err)
	}
	got := peerLines(buf)
	wantLines(t, "full pass with changes", got, []string{
		`level=DEBUG+2 msg="Peer changed" subnet=10.5.4.0/24 publicIP=192.0.2.4 backend=vxlan was="publicIP=192.0.2.4 backend=vxlan"`,
		`level=DEBUG+2 msg="Peer added" ipv6Subnet=fd00:5:6::/64 publicIPv6=2001:db8::6 backend=vxlan`,
		`level=DEBUG+2 msg="Peer removed" subnet=10.5.3.0/24 publicIP=192.0.2.33 backend=vxlan`,
	})
}

// The default level (-v=0) logs no per-peer line and keeps no copy of the
// peer set.
func TestPeerLinesQuietByDefault(t *testing.T) {
	dp, src, _, buf := newTestDataPlane(t, slog.LevelInfo)
	src.all = []subnet.Lease{peer("10.5.2.0/24", "192.0.2.2", "")}
	if _, err := dp.full(context.Background()); err != nil {
		t.Fatal(err)
	}
	src.gone, src.came = src.all, nil
	if err := dp.changed(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lines := peerLines(buf); len(lines) != 0 {
		t.Errorf("default level logged %q", lines)
	}
	if dp.peerLog.known != nil {
		t.Error("the per-peer log keeps a copy of the peers at the default level")
	}
}
