package extension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/subnet"
)

// fakeRunner records commands and fails those fail says to.
type fakeRunner struct {
	ran  []command
	fail func(c command) bool
	out  string
}

func (f *fakeRunner) run(_ context.Context, c command) result {
	f.ran = append(f.ran, c)
	if f.fail != nil && f.fail(c) {
		return result{output: "RTNETLINK answers: boom", err: errors.New("exit status 2"), status: 2}
	}
	return result{output: f.out}
}

// take returns "key SUBNET=... stdin" lines for the commands run since the
// last call.
func (f *fakeRunner) take() []string {
	var out []string
	for _, c := range f.ran {
		out = append(out, fmt.Sprintf("%s %s %q", c.key, strings.Join(c.extra, " "), c.stdin))
	}
	f.ran = nil
	return out
}

func testConfig() backend.Config {
	return backend.Config{
		EnableIPv4: true, Network: netip.MustParsePrefix("10.5.0.0/16"),
		Ext: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1450,
			IfaceAddr: netip.MustParseAddr("172.31.0.1"), ExtAddr: netip.MustParseAddr("203.0.113.1")},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func lease(sn, pub, typ string, data string) subnet.Lease {
	l := subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(pub), BackendType: typ}}
	if data != "" {
		l.Attrs.BackendData = json.RawMessage(data)
	}
	return l
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(json.RawMessage(`{"Type":"extension","prestartupcommand":"a","SubnetAddCommand":"b","ShutdownCommand":"ignored","CommandTimeout":5}`))
	if err != nil || o.PreStartupCommand != "a" || o.SubnetAddCommand != "b" || o.timeout() != 5*time.Second || o.RunInShell {
		t.Fatalf("ParseOptions = %+v, %v", o, err)
	}
	if o, _ := ParseOptions(nil); o.timeout() != DefaultCommandTimeout {
		t.Errorf("default timeout %s", o.timeout())
	}
	for _, raw := range []string{`{"SubnetAddCommand":1}`, `{"RunInShell":"yes"}`, `{"CommandTimeout":"30s"}`, `{"CommandTimeout":-1}`} {
		if _, err := ParseOptions(json.RawMessage(raw)); err == nil || !strings.HasPrefix(err.Error(), "error decoding backend config: ") {
			t.Errorf("ParseOptions(%s) = %v, want a decoding error", raw, err)
		}
	}
}

// Pre's output is the lease's BackendData (a JSON string); PublicIP is the
// interface's address; Post gets our lease's values; failures are fatal
// and say which command, its exit status and output.
func TestStartupCommands(t *testing.T) {
	ctx := context.Background()
	f := &fakeRunner{out: "T+ojkw="}
	b := newBackend(testConfig(), Options{PreStartupCommand: "genkey", PostStartupCommand: "post $SUBNET"}, slog.New(slog.NewTextHandler(io.Discard, nil)), f)
	attrs, err := b.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(attrs.BackendData) != `"T+ojkw="` || attrs.BackendType != "extension" || attrs.PublicIP != netip.MustParseAddr("172.31.0.1") || attrs.PublicIPv6.IsValid() {
		t.Errorf("attrs %+v (BackendData %s)", attrs, attrs.BackendData)
	}
	own := subnet.Lease{Subnet: netip.MustParsePrefix("10.5.1.0/24"), Attrs: attrs}
	nw, err := b.Configure(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	if nw.MTU() != 1450 {
		t.Errorf("MTU %d", nw.MTU())
	}
	got := f.take()
	want := []string{
		`PreStartupCommand  "\n"`,
		`PostStartupCommand NETWORK=10.5.0.0/16 SUBNET=10.5.1.0/24 IPV6SUBNET=::/0 PUBLIC_IP=172.31.0.1 PUBLIC_IPV6=<nil> "\n"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// No Pre command: no BackendData.
	b = newBackend(testConfig(), Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), f)
	if attrs, err := b.Prepare(ctx, nil); err != nil || attrs.BackendData != nil || len(f.take()) != 0 {
		t.Errorf("no Pre: %+v %v", attrs, err)
	}

	f.fail = func(command) bool { return true }
	b = newBackend(testConfig(), Options{PreStartupCommand: "genkey --now"}, slog.New(slog.NewTextHandler(io.Discard, nil)), f)
	_, err = b.Prepare(ctx, nil)
	if err == nil || err.Error() != "PreStartupCommand (exit status 2): failed to run command: genkey --now Err: exit status 2 Output: RTNETLINK answers: boom" {
		t.Errorf("Pre failure: %v", err)
	}
	b = newBackend(testConfig(), Options{PostStartupCommand: "post"}, slog.New(slog.NewTextHandler(io.Discard, nil)), f)
	if _, err := b.Configure(ctx, own); err == nil || !strings.HasPrefix(err.Error(), "PostStartupCommand (exit status 2): failed to run command: post") {
		t.Errorf("Post failure: %v", err)
	}
}

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	f := &fakeRunner{}
	cfg := testConfig()
	b := newBackend(cfg, Options{SubnetAddCommand: "add", SubnetRemoveCommand: "del"}, cfg.Log, f)
	nwi, err := b.Configure(ctx, subnet.Lease{Subnet: netip.MustParsePrefix("10.5.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	nw := nwi.(*network)
	defer nw.Close()
	a := lease("10.5.2.0/24", "172.31.0.2", "extension", `"key-a"`)
	a.IPv6Subnet = netip.MustParsePrefix("fd10:0:0:2::/64")
	a.Attrs.PublicIPv6 = netip.MustParseAddr("fd31::2")
	c := lease("10.5.3.0/24", "172.31.0.3", "extension", "null")
	other := lease("10.5.4.0/24", "172.31.0.4", "vxlan", `{"VNI":1}`)
	bad := lease("10.5.5.0/24", "172.31.0.5", "extension", `{"k":1}`)

	check := func(step string, peers []subnet.Lease, wantErr bool, want ...string) {
		t.Helper()
		err := nw.Reconcile(ctx, peers)
		if (err != nil) != wantErr {
			t.Errorf("%s: Reconcile = %v", step, err)
		}
		if got := f.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: ran\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	addA := `SubnetAddCommand SUBNET=10.5.2.0/24 PUBLIC_IP=172.31.0.2 IPV6SUBNET=fd10:0:0:2::/64 PUBLIC_IPV6=fd31::2 "key-a\n"`
	addC := `SubnetAddCommand SUBNET=10.5.3.0/24 PUBLIC_IP=172.31.0.3 IPV6SUBNET=::/0 PUBLIC_IPV6=<nil> "\n"`
	check("first pass", []subnet.Lease{c, other, a, bad}, false, addA, addC)
	check("same leases", []subnet.Lease{a, c, other, bad}, false)
	c2 := c
	c2.Expiration = time.Now().Add(time.Hour) // a renewal changes nothing the commands see
	check("renewed", []subnet.Lease{a, c2}, false)
	c3 := lease("10.5.3.0/24", "172.31.0.33", "extension", `"new"`)
	check("changed public IP and data", []subnet.Lease{a, c3}, false,
		`SubnetAddCommand SUBNET=10.5.3.0/24 PUBLIC_IP=172.31.0.33 IPV6SUBNET=::/0 PUBLIC_IPV6=<nil> "new\n"`)
	check("removed", []subnet.Lease{c3}, false,
		`SubnetRemoveCommand SUBNET=10.5.2.0/24 PUBLIC_IP=172.31.0.2 IPV6SUBNET=fd10:0:0:2::/64 PUBLIC_IPV6=fd31::2 "key-a\n"`)

	// A failing add is retried on later passes until it succeeds, and a
	// pass is asked for (Changed) in between.
	fails := 2
	f.fail = func(c command) bool {
		if c.key == "SubnetAddCommand" && fails > 0 {
			fails--
			return true
		}
		return false
	}
	for i := 0; i < 3; i++ {
		check(fmt.Sprintf("add attempt %d", i+1), []subnet.Lease{c3, a}, i < 2, addA)
		if i < 2 {
			select {
			case <-nw.Changed():
			case <-time.After(5 * time.Second):
				t.Fatalf("no retry pass asked for after failure %d", i+1)
			}
		}
	}
	check("after success", []subnet.Lease{c3, a}, false)
	if nw.backoff != 0 {
		t.Errorf("back-off not reset: %s", nw.backoff)
	}
	// A lease whose add failed still gets its remove (the command may
	// have done half its work).
	fails = 1
	d := lease("10.5.7.0/24", "172.31.0.7", "extension", "")
	check("failing add", []subnet.Lease{c3, a, d}, true,
		`SubnetAddCommand SUBNET=10.5.7.0/24 PUBLIC_IP=172.31.0.7 IPV6SUBNET=::/0 PUBLIC_IPV6=<nil> "\n"`)
	check("gone before a retry", []subnet.Lease{c3, a}, false,
		`SubnetRemoveCommand SUBNET=10.5.7.0/24 PUBLIC_IP=172.31.0.7 IPV6SUBNET=::/0 PUBLIC_IPV6=<nil> "\n"`)
}

func TestSkipsLeasesOfOtherBackends(t *testing.T) {
	var logs strings.Builder
	cfg := testConfig()
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	f := &fakeRunner{}
	b := newBackend(cfg, Options{SubnetAddCommand: "add"}, cfg.Log, f)
	nw, _ := b.Configure(context.Background(), subnet.Lease{Subnet: netip.MustParsePrefix("10.5.1.0/24")})
	defer nw.Close()
	peers := []subnet.Lease{lease("10.5.4.0/24", "172.31.0.4", "host-gw", ""), lease("10.5.6.0/24", "172.31.0.6", "", ""),
		lease("10.5.5.0/24", "172.31.0.5", "extension", `{"k":1}`)}
	for i := 0; i < 3; i++ {
		if err := nw.Reconcile(context.Background(), peers); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.ran) != 0 {
		t.Errorf("commands ran for leases to skip: %v", f.take())
	}
	for _, want := range []string{"Ignoring non-extension subnet: type=host-gw", `Ignoring non-extension subnet: type=" `,
		"failed to unmarshal BackendData: json: cannot unmarshal object into Go value of type string"} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("%q logged %d times over 3 passes, want once\n%s", want, n, logs.String())
		}
	}
}
