package dual

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	v2subnet "github.com/flannelng/flannel/subnet/etcdv2"
)

// fakePeers is a PeerSource whose set the test edits.
type fakePeers struct {
	mu      sync.Mutex
	set     *subnet.LeaseSet
	updated chan struct{}
}

func newFakePeers() *fakePeers {
	return &fakePeers{set: subnet.NewLeaseSet(), updated: make(chan struct{}, 1)}
}

func (f *fakePeers) Run(ctx context.Context)  { <-ctx.Done() }
func (f *fakePeers) Updated() <-chan struct{} { return f.updated }
func (f *fakePeers) TakeAll() ([]subnet.Lease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set.TakeAll()
}
func (f *fakePeers) Changes() ([]subnet.Lease, []subnet.Lease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set.Changes()
}
func (f *fakePeers) edit(fn func(s *subnet.LeaseSet)) {
	f.mu.Lock()
	fn(f.set)
	f.mu.Unlock()
	select {
	case f.updated <- struct{}{}:
	default:
	}
}

func lease(s, ip, mac string) subnet.Lease {
	a := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"` + mac + `"}`)}
	return subnet.Lease{Subnet: netip.MustParsePrefix(s), Attrs: a}
}

// unionView waits until the union's set satisfies ok, for at most 5 s.
func unionView(t *testing.T, u *union, ok func(map[string]subnet.Lease) bool) map[string]subnet.Lease {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u.mu.Lock()
		all, _ := u.set.All()
		u.mu.Unlock()
		m := map[string]subnet.Lease{}
		for _, l := range all {
			m[l.Key()] = l
		}
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("union never reached the wanted state; it holds %v", all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUnion(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p2, p3 := newFakePeers(), newFakePeers()
	u := newUnion(p2, p3, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.Run(ctx)

	a2 := lease("10.5.1.0/24", "172.30.0.11", "0e:00:00:00:00:01")           // a v0.11 node
	b2 := lease("10.5.2.0/24", "172.30.0.12", "0e:00:00:00:00:02")           // a both-mode node, v2 copy
	b3 := b2                                                                 // and its v3 twin
	c3 := lease("10.5.3.0/24", "172.30.0.13", "0e:00:00:00:00:03")           // a v3-only node
	split2 := lease("10.5.4.0/24", "172.30.0.14", "0e:00:00:00:00:04")       // v2 owner of a split claim
	split3 := lease("10.5.4.0/24", "172.30.0.99", "0e:00:00:00:00:99")       // v3 owner of it
	b3.Attrs.BackendData = []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:02"}`) // same bytes

	// Not synced until both sources are.
	p2.edit(func(s *subnet.LeaseSet) {
		s.Reset(map[string]subnet.Lease{a2.Key(): a2, b2.Key(): b2, split2.Key(): split2})
	})
	time.Sleep(20 * time.Millisecond)
	if _, synced := u.TakeAll(); synced {
		t.Fatal("union synced before the v3 source")
	}
	p3.edit(func(s *subnet.LeaseSet) {
		s.Reset(map[string]subnet.Lease{b3.Key(): b3, c3.Key(): c3, split3.Key(): split3})
	})
	m := unionView(t, u, func(m map[string]subnet.Lease) bool { return len(m) == 4 })
	if _, synced := u.TakeAll(); !synced {
		t.Fatal("union not synced after both sources")
	}
	if got := m[split2.Key()].Attrs.PublicIP.String(); got != "172.30.0.14" {
		t.Errorf("split claim routed to %s, want the v2 owner 172.30.0.14", got)
	}
	if n := strings.Count(logs.String(), "Subnet claimed by different nodes"); n != 1 {
		t.Errorf("split claim logged %d times, want once:\n%s", n, logs.String())
	}

	// The both-mode node's v2 copy lapses (it moved to v3 mode): nothing
	// changes for the consumer.
	p2.edit(func(s *subnet.LeaseSet) { s.Delete(b2.Key()) })
	time.Sleep(50 * time.Millisecond)
	if gone, came, all := u.Changes(); all || len(gone)+len(came) != 0 {
		t.Errorf("a lapsed v2 copy of a v3 lease changed the view: gone %v came %v all %v", gone, came, all)
	}
	// The v0.11 node's lease expires: gone, from both.
	p2.edit(func(s *subnet.LeaseSet) { s.Delete(a2.Key()) })
	unionView(t, u, func(m map[string]subnet.Lease) bool { _, ok := m[a2.Key()]; return !ok })
	gone, came, all := u.Changes()
	if all || len(gone) != 1 || gone[0].Key() != a2.Key() || len(came) != 0 {
		t.Errorf("expiry of a v2-only lease: gone %v came %v all %v", gone, came, all)
	}
	// The split claim's v2 owner goes: the v3 owner takes over the view;
	// a repeat of the same split is logged again only if it comes back.
	p2.edit(func(s *subnet.LeaseSet) { s.Delete(split2.Key()) })
	m = unionView(t, u, func(m map[string]subnet.Lease) bool {
		return m[split3.Key()].Attrs.PublicIP.String() == "172.30.0.99"
	})
	// The v3-only node's lease is deleted in v3: gone.
	p3.edit(func(s *subnet.LeaseSet) { s.Delete(c3.Key()) })
	m = unionView(t, u, func(m map[string]subnet.Lease) bool { _, ok := m[c3.Key()]; return !ok })
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if strings.Join(keys, " ") != "10.5.2.0-24 10.5.4.0-24" {
		t.Errorf("final view %v", keys)
	}
}

func TestSameConfig(t *testing.T) {
	parse := func(s string) *subnet.Config {
		c, err := subnet.ParseConfig([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse(`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":1}}`)
	for _, tc := range []struct {
		cfg  string
		same bool
	}{
		{`{"network":"10.5.0.0/16", "backend":{"type":"vxlan","vni":1}}`, true}, // case and spacing
		{`{"Network":"10.5.0.0/16","SubnetLen":24,"Backend":{"VNI":1,"Type":"vxlan"}}`, true},
		{`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":2}}`, false},
		{`{"Network":"10.6.0.0/16","Backend":{"Type":"vxlan","VNI":1}}`, false},
		{`{"Network":"10.5.0.0/16","SubnetLen":25,"Backend":{"Type":"vxlan","VNI":1}}`, false},
	} {
		if got := sameConfig(base, parse(tc.cfg)); got != tc.same {
			t.Errorf("sameConfig(%s) = %v, want %v", tc.cfg, got, tc.same)
		}
	}
}

// fakeSource is a subnet.Manager answering GetConfig from fields.
type fakeSource struct {
	subnet.Manager
	name string
	cfg  string
	err  error
}

func (f *fakeSource) Name() string { return f.name }
func (f *fakeSource) GetConfig(context.Context) (*subnet.Config, []byte, error) {
	if f.err != nil {
		return nil, nil, f.err
	}
	c, err := subnet.ParseConfig([]byte(f.cfg))
	return c, []byte(f.cfg), err
}

func TestAutoChoosesKeyspace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		v3, v2     *fakeSource
		chosen     string // "" none
		err        error
		logs, nots string
	}{
		{"v3 config", &fakeSource{name: "v3", cfg: v2Cfg}, &fakeSource{name: "v2", cfg: v2Cfg}, "v3", nil, "", "v2 mode"},
		{"v2 only", &fakeSource{name: "v3", err: etcdsubnet.ErrNoConfig}, &fakeSource{name: "v2", cfg: v2Cfg}, "v2", nil, "running in v2 mode", ""},
		{"neither", &fakeSource{name: "v3", err: etcdsubnet.ErrNoConfig}, &fakeSource{name: "v2", err: v2subnet.ErrNoConfig}, "", etcdsubnet.ErrNoConfig, "", "v2 mode"},
		{"no v2 API", &fakeSource{name: "v3", err: etcdsubnet.ErrNoConfig}, &fakeSource{name: "v2", err: etcdv2.ErrNoV2API}, "", etcdsubnet.ErrNoConfig, "does not serve the v2 API", ""},
		{"v3 down", &fakeSource{name: "v3", err: errors.New("etcd unreachable")}, &fakeSource{name: "v2", cfg: v2Cfg}, "", nil, "", "v2 mode"},
		{"v2 IPv6", &fakeSource{name: "v3", err: etcdsubnet.ErrNoConfig}, &fakeSource{name: "v2", err: subnet.Permanent(v2subnet.ErrIPv6)}, "", v2subnet.ErrIPv6, "", "v2 mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := NewAuto(tc.v3, tc.v2, slog.New(slog.NewTextHandler(&logs, nil)))
			for range 3 { // a waiting daemon asks again; the logs stay single
				_, _, err := a.GetConfig(context.Background())
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Errorf("err %v, want %v", err, tc.err)
				}
				if errors.Is(tc.err, v2subnet.ErrIPv6) && !subnet.IsPermanent(err) {
					t.Errorf("an IPv6 config in the v2 store must end the daemon: %v", err)
				}
			}
			got := ""
			if c := a.Chosen(); c != nil {
				got = c.Name()
			}
			if got != tc.chosen {
				t.Errorf("chose %q, want %q", got, tc.chosen)
			}
			if tc.logs != "" && strings.Count(logs.String(), tc.logs) != 1 {
				t.Errorf("log %q not once:\n%s", tc.logs, logs.String())
			}
			if tc.nots != "" && strings.Contains(logs.String(), tc.nots) {
				t.Errorf("log has %q:\n%s", tc.nots, logs.String())
			}
		})
	}
}

const v2Cfg = `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`

func TestBothConfig(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v3, v2    *fakeSource
		permanent bool
		want      string
	}{
		{"agree", &fakeSource{cfg: v2Cfg}, &fakeSource{cfg: `{"network":"10.5.0.0/16","backend":{"type":"vxlan"}}`}, false, ""},
		{"differ", &fakeSource{cfg: v2Cfg}, &fakeSource{cfg: `{"Network":"10.6.0.0/16","Backend":{"Type":"vxlan"}}`}, true, `Network: "10.6.0.0/16" -> "10.5.0.0/16"`},
		{"v2 only", &fakeSource{err: etcdsubnet.ErrNoConfig}, &fakeSource{cfg: v2Cfg}, false, ""},
		{"no v2 API", &fakeSource{cfg: v2Cfg}, &fakeSource{err: etcdv2.ErrNoV2API}, false, "--etcd-api=both needs etcd's v2 API"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBoth(nil, nil, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
			b.v3 = v3Fake{tc.v3}
			b.v2 = v2Fake{tc.v2}
			cfg, _, err := b.GetConfig(context.Background())
			if subnet.IsPermanent(err) != tc.permanent {
				t.Errorf("permanent = %v, want %v (%v)", subnet.IsPermanent(err), tc.permanent, err)
			}
			if tc.want == "" && (err != nil || cfg == nil) {
				t.Errorf("err %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

type v3Fake struct{ *fakeSource }

func (v3Fake) List(context.Context) ([]subnet.Lease, int64, error) { return nil, 0, nil }
func (v3Fake) ClaimSubnet(context.Context, *subnet.Config, subnet.LeaseAttrs, netip.Prefix) (subnet.Lease, error) {
	return subnet.Lease{}, errors.New("not in this test")
}

type v2Fake struct{ *fakeSource }

func (v2Fake) AcquireSubnet(context.Context, *subnet.Config, subnet.LeaseAttrs, netip.Prefix) (subnet.Lease, error) {
	return subnet.Lease{}, errors.New("not in this test")
}
func (v2Fake) Retract(context.Context, subnet.Lease) error { return nil }
func (v2Fake) KeepCopy(context.Context, *subnet.Config, subnet.Lease) error {
	return nil
}
