package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"
)

// rpcCounter counts the unary gRPC requests a client sends, by method.
type rpcCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *rpcCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.n[method[strings.LastIndex(method, "/")+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *rpcCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// `flannelctl leases` reads every lease's state with two requests, however
// many leases there are: no request per lease. --ttl adds one TimeToLive
// per live etcd lease, which is what etcd offers (see leaseViews).
func TestLeasesRequestCount(t *testing.T) {
	endpoint, admin := startEtcd(t)
	ctx := context.Background()
	const n = 40
	var expired clientv3.LeaseID
	for i := range n {
		g, err := admin.Grant(ctx, 3600)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("/coreos.com/network/subnets/10.5.%d.0-24", i+1)
		val := fmt.Sprintf(`{"PublicIP":"192.168.0.%d","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:%02x"}}`, i+1, i+1)
		if _, err := admin.Put(ctx, key, val, clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			expired = g.ID
		}
	}
	if _, err := admin.Put(ctx, "/coreos.com/network/subnets/10.5.200.0-24", `{"PublicIP":"192.168.0.200","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}

	counter := &rpcCounter{n: map[string]int{}}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(counter.intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	o := &options{Prefix: "/coreos.com/network", Timeout: 10 * time.Second}
	s := &store{cli: cli, m: etcdsubnet.New(cli, etcdsubnet.Options{Prefix: o.Prefix}), o: o}
	counter.take()

	views, err := s.leaseViews(ctx, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := counter.take(); len(got) != 2 || got["Range"] != 1 || got["LeaseLeases"] != 1 {
		t.Errorf("requests for %d leases: %v, want one Range and one LeaseLeases", n, got)
	}
	live := 0
	for _, v := range views {
		if v.Live != nil && *v.Live {
			live++
		}
		if v.TTLSeconds != nil || v.Expires != nil {
			t.Errorf("%s: a TTL without --ttl", v.Key)
		}
	}
	if live != n || !views[len(views)-1].Reservation {
		t.Errorf("%d live leases, want %d; last %+v", live, n, views[len(views)-1])
	}

	// A key whose etcd lease etcd no longer lists is expired. (Revoking
	// deletes the key; a listing taken just before sees it so.)
	es, err := s.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Revoke(ctx, expired); err != nil {
		t.Fatal(err)
	}
	liveIDs, err := s.liveLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vs := buildViews(es, nil, time.Now())
	setLive(vs, liveIDs)
	var b strings.Builder
	if err := renderTable(&b, vs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "10.5.1.0/24    -            192.168.0.1    vxlan    0a:00:00:00:00:01  expired\n") ||
		!strings.Contains(b.String(), "10.5.2.0/24    -            192.168.0.2    vxlan    0a:00:00:00:00:02  live\n") {
		t.Errorf("table:\n%s", b.String())
	}
	counter.take()

	views, err = s.leaseViews(ctx, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := counter.take(); got["Range"] != 1 || got["LeaseLeases"] != 1 || got["LeaseTimeToLive"] != n-1 {
		t.Errorf("requests with --ttl: %v, want one Range, one LeaseLeases and %d LeaseTimeToLive", got, n-1)
	}
	for _, v := range views {
		if !v.Reservation && (v.TTLSeconds == nil || *v.TTLSeconds <= 0 || *v.TTLSeconds > 3600) {
			t.Errorf("%s: TTL %v", v.Key, v.TTLSeconds)
		}
	}
}

// -o yaml is -o json's objects; -o wide adds the etcd lease and the key;
// an unknown -o is a usage error.
func TestLeasesOutputFormats(t *testing.T) {
	endpoint, cli := startEtcd(t)
	ctx := context.Background()
	g, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/coreos.com/network/subnets/10.5.4.0-24", `{"PublicIP":"192.168.50.4","PublicIPv6":null,"BackendType":"host-gw"}`, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLANNELD_ETCD_ENDPOINTS": endpoint}
	code, js, stderr := captured(t, []string{"leases", "-o", "json"}, env, "")
	if code != 0 {
		t.Fatalf("json: %d %s", code, stderr)
	}
	code, ym, stderr := captured(t, []string{"leases", "-o", "yaml"}, env, "")
	if code != 0 {
		t.Fatalf("yaml: %d %s", code, stderr)
	}
	var fromJSON, fromYAML []map[string]any
	if err := json.Unmarshal([]byte(js), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(ym), &fromYAML); err != nil {
		t.Fatalf("%v\n%s", err, ym)
	}
	if fmt.Sprint(fromJSON) != fmt.Sprint(fromYAML) || len(fromJSON) != 1 || fromJSON[0]["Live"] != true || fromJSON[0]["TTLSeconds"] != nil {
		t.Errorf("json %v\nyaml %v", fromJSON, fromYAML)
	}
	if !strings.Contains(ym, "Live: true\n") || !strings.Contains(ym, "Subnet: 10.5.4.0/24\n") {
		t.Errorf("yaml:\n%s", ym)
	}

	code, wide, _ := captured(t, []string{"leases", "-o", "wide"}, env, "")
	lines := strings.Split(strings.TrimSuffix(wide, "\n"), "\n")
	if code != 0 || len(lines) != 2 ||
		strings.Join(strings.Fields(lines[0]), " ") != "SUBNET IPV6 SUBNET PUBLIC IP BACKEND VTEP MAC EXPIRES ETCD LEASE KEY" ||
		strings.Join(strings.Fields(lines[1]), " ") != fmt.Sprintf("10.5.4.0/24 - 192.168.50.4 host-gw - live %x /coreos.com/network/subnets/10.5.4.0-24", int64(g.ID)) {
		t.Errorf("wide:\n%s", wide)
	}
	code, ttl, _ := captured(t, []string{"leases", "--ttl"}, env, "")
	if code != 0 || !strings.Contains(ttl, "10.5.4.0/24  -            192.168.50.4  host-gw  -         20") || !strings.Contains(ttl, "(59m5") && !strings.Contains(ttl, "(1h0m0s)") {
		t.Errorf("--ttl:\n%s", ttl)
	}
	if code, _, stderr := captured(t, []string{"leases", "-o", "xml"}, env, ""); code != 2 || !strings.Contains(stderr, `invalid -o "xml": want table, wide, json, yaml`) {
		t.Errorf("-o xml: %d %s", code, stderr)
	}
	if code, _, stderr := captured(t, []string{"migrate-v2", "-o", "xml"}, env, ""); code != 2 || !strings.Contains(stderr, `invalid -o "xml"`) {
		t.Errorf("migrate-v2 -o xml: %d %s", code, stderr)
	}
}

// completeWords runs the bash completion script for a command line whose
// last word is being completed, and returns the candidates.
func completeWords(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, "'"+w+"'")
	}
	prog := fmt.Sprintf("source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_flannelctl\nprintf '%%s\\n' \"${COMPREPLY[@]}\"\n",
		script, strings.Join(quoted, " "), len(words)-1)
	out, err := exec.Command("bash", "--norc", "--noprofile", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	return got
}

func TestCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	code, script, stderr := captured(t, []string{"completion", "bash"}, nil, "")
	if code != 0 {
		t.Fatalf("completion bash: %d %s", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "flannelctl.bash")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"flannelctl", ""}, []string{"config", "leases", "reserve", "release", "migrate-v2", "doctor", "completion", "help"}},
		{[]string{"flannelctl", "le"}, []string{"leases"}},
		{[]string{"flannelctl", "config", ""}, []string{"get", "set", "validate"}},
		{[]string{"flannelctl", "leases", "-o", ""}, []string{"table", "wide", "json", "yaml"}},
		{[]string{"flannelctl", "leases", "--t"}, []string{"--timeout", "--ttl"}},
		{[]string{"flannelctl", "--etcd-endpoints", "http://x:2379", "leases", "--ku"}, []string{"--kube-annotation-prefix", "--kubeconfig"}},
		{[]string{"flannelctl", "--etcd-prefix", "leases", "rel"}, []string{"release"}}, // "leases" is the prefix's value
		{[]string{"flannelctl", "completion", ""}, []string{"bash", "zsh"}},
		{[]string{"flannelctl", "doctor", "-"}, nil},
		{[]string{"flannelctl", "--etcd-endpoints", ""}, nil},
	} {
		got := completeWords(t, path, c.words...)
		if c.want == nil {
			if strings.Join(c.words, " ") == "flannelctl doctor -" && !slices.Contains(got, "--cni-bin-dir") {
				t.Errorf("%q: %q, want doctor's flags", c.words, got)
			}
			if strings.HasSuffix(strings.Join(c.words, " "), "--etcd-endpoints ") && len(got) != 0 {
				t.Errorf("%q: %q, want nothing for a value", c.words, got)
			}
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, want %q", c.words, got, c.want)
		}
	}

	code, zsh, _ := captured(t, []string{"completion", "zsh"}, nil, "")
	if code != 0 || !strings.HasPrefix(zsh, "#compdef flannelctl\n") || !strings.Contains(zsh, "bashcompinit") || !strings.HasSuffix(zsh, script) {
		t.Errorf("completion zsh:\n%s", zsh)
	}
	if zshBin, err := exec.LookPath("zsh"); err == nil {
		p := filepath.Join(t.TempDir(), "_flannelctl")
		os.WriteFile(p, []byte(zsh), 0o644)
		if out, err := exec.Command(zshBin, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	if code, _, stderr := captured(t, []string{"completion", "fish"}, nil, ""); code != 2 || !strings.Contains(stderr, `unknown shell "fish"`) {
		t.Errorf("completion fish: %d %s", code, stderr)
	}
}
