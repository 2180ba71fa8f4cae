package etcdv2

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	v2 "github.com/flannelng/flannel/pkg/etcdv2"
)

const dir = "/coreos.com/network/subnets"

// TestParseNode is the key filter: which children of <prefix>/subnets are
// leases, as v0.11 reads them, and which are skipped.
func TestParseNode(t *testing.T) {
	exp := time.Date(2026, 12, 7, 10, 21, 51, 0, time.UTC)
	val := `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`
	tests := []struct {
		node    v2.Node
		subnet  string // "" = skipped
		expires bool
	}{
		{v2.Node{Key: dir + "/10.244.82.0-24", Value: val, Expiration: &exp, TTL: 86393}, "10.244.82.0/24", true},
		{v2.Node{Key: dir + "/10.244.150.0-24", Value: `{"PublicIP":"10.210.0.9"}`}, "10.244.150.0/24", false},
		// v0.28's bytes, as the migration mode writes them.
		{v2.Node{Key: dir + "/10.244.1.0-24", Value: `{"PublicIP":"10.210.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}}`}, "10.244.1.0/24", false},
		// v0.11's pattern is not anchored at the start; host bits are
		// somebody's mistake, read as the network.
		{v2.Node{Key: dir + "/x10.244.2.0-24", Value: val}, "10.244.2.0/24", false},
		{v2.Node{Key: dir + "/10.244.3.7-24", Value: val}, "10.244.3.0/24", false},
		{v2.Node{Key: dir + "/garbage", Value: val}, "", false},
		{v2.Node{Key: dir + "/10.244.4.0-24", Value: "not json"}, "", false},
		{v2.Node{Key: dir + "/10.244.4.0-24", Value: ""}, "", false}, // expire, compareAndDelete
		{v2.Node{Key: dir + "/10.244.4.0-24", Dir: true}, "", false},
		{v2.Node{Key: dir + "/10.244.5.0-24/x", Value: val}, "", false},
		{v2.Node{Key: dir + "/10.244.6.0-24&fd00::-64", Value: val}, "", false},
		{v2.Node{Key: dir + "/0.0.0.0-0&fd00::-64", Value: val}, "", false},
		{v2.Node{Key: dir, Dir: true}, "", false},
		{v2.Node{Key: "/coreos.com/network/subnetsX/10.244.7.0-24", Value: val}, "", false},
		{v2.Node{Key: dir + "/10.244.8.0-24", Value: `{"PublicIP":"fd00::1"}`}, "", false},
	}
	for _, tt := range tests {
		l, err := parseNode(dir, &tt.node)
		switch {
		case tt.subnet == "" && err == nil:
			t.Errorf("%s %q: read as %v, want it skipped", tt.node.Key, tt.node.Value, l)
		case tt.subnet != "" && err != nil:
			t.Errorf("%s %q: %v", tt.node.Key, tt.node.Value, err)
		case tt.subnet != "" && (l.Subnet != netip.MustParsePrefix(tt.subnet) || l.Expiration.IsZero() == tt.expires || l.IPv6Subnet.IsValid()):
			t.Errorf("%s: %+v, want %s (expires %v)", tt.node.Key, l, tt.subnet, tt.expires)
		}
	}
}

// TestBadKeysLoggedOnce: a bad key is logged once however often it is
// seen, and the memory of bad keys is bounded.
func TestBadKeysLoggedOnce(t *testing.T) {
	m, logs := testManager(nil, Options{})
	bad := &v2.Node{Key: dir + "/garbage", Value: "x"}
	for range 3 {
		if _, err := m.decodeNode(bad); err == nil {
			t.Fatal("garbage decoded")
		}
	}
	if n := strings.Count(logs.String(), "Ignoring bad subnet node"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs)
	}
	m.forgetBad(bad.Key) // deleted: a new bad value is news
	m.decodeNode(bad)
	if n := strings.Count(logs.String(), "Ignoring bad subnet node"); n != 2 {
		t.Errorf("after a delete: logged %d times, want twice", n)
	}
	for i := range 3 * maxBadKeys {
		m.decodeNode(&v2.Node{Key: fmt.Sprintf("%s/bad%d", dir, i), Value: "x"})
	}
	if len(m.badKeys) > maxBadKeys {
		t.Errorf("%d bad keys remembered, want at most %d", len(m.badKeys), maxBadKeys)
	}
	// garbage twice, then as many others as fit.
	if n := strings.Count(logs.String(), "Ignoring bad subnet node"); n != maxBadKeys+1 {
		t.Errorf("%d bad keys logged, want %d", n, maxBadKeys+1)
	}
	if n := strings.Count(logs.String(), "More than"); n != 1 {
		t.Errorf("the overflow was said %d times, want once", n)
	}
}

// FuzzParseNode: any key and value either is skipped or reads as one
// masked IPv4 subnet directly below the directory.
func FuzzParseNode(f *testing.F) {
	f.Add(dir+"/10.244.82.0-24", `{"PublicIP":"10.210.0.1","BackendType":"host-gw"}`, false)
	f.Add(dir+"/garbage", `{}`, false)
	f.Add(dir+"/1.2.3.4-33", `{}`, false)
	f.Add(dir+"/a/1.2.3.4-24", `{}`, true)
	f.Add(dir+"/10.0.0.0-8&fd00::-64", `null`, false)
	f.Fuzz(func(t *testing.T, key, value string, isDir bool) {
		l, err := parseNode(dir, &v2.Node{Key: key, Value: value, Dir: isDir})
		if err != nil {
			return
		}
		name := strings.TrimPrefix(key, dir+"/")
		if !strings.HasPrefix(key, dir+"/") || strings.Contains(name, "/") || isDir {
			t.Fatalf("%q accepted outside the directory", key)
		}
		if !l.Subnet.IsValid() || !l.Subnet.Addr().Is4() || l.Subnet.Masked() != l.Subnet || l.IPv6Subnet.IsValid() {
			t.Fatalf("%q: subnet %v / %v", key, l.Subnet, l.IPv6Subnet)
		}
		if l.Attrs.PublicIPv6.IsValid() && !l.Attrs.PublicIPv6.Is6() {
			t.Fatalf("%q: %v", value, l.Attrs)
		}
	})
}

// logBuf collects a Manager's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testManager(cli *v2.Client, o Options) (*Manager, *logBuf) {
	lb := &logBuf{}
	o.Log = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(cli, o), lb
}
