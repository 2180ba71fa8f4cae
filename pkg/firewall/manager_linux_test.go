package firewall

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive the managers through a scripted Runner: no root needed.

type call struct {
	name  string
	args  []string
	stdin string
}

func (c call) String() string { return strings.TrimSpace(c.name + " " + strings.Join(c.args, " ")) }

type fakeRunner struct {
	mu      sync.Mutex
	calls   []call
	respond func(c call) ([]byte, error)
}

func (f *fakeRunner) Run(_ context.Context, name string, stdin []byte, args ...string) ([]byte, error) {
	c := call{name: name, args: args, stdin: string(stdin)}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	return f.respond(c)
}

func (f *fakeRunner) take() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func callStrings(calls []call) []string {
	var s []string
	for _, c := range calls {
		s = append(s, c.String())
	}
	return s
}

func failed(name string, args []string, stderr string) error {
	return &CommandError{Name: name, Args: args, Stderr: stderr, Err: errors.New("exit status 1")}
}

func testLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func filterDump(extraChains []string, rules ...string) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, c := range extraChains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, r := range rules {
		b.WriteString(r + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// fakeIPTables answers saves with an empty node until a restore ran, and
// with the golden IPv4 dumps afterwards.
func fakeIPTables(t *testing.T) (*fakeRunner, *bool) {
	installed := new(bool)
	f := &fakeRunner{}
	f.respond = func(c call) ([]byte, error) {
		if strings.HasSuffix(c.name, "-restore") {
			*installed = true
			return nil, nil
		}
		if !strings.HasSuffix(c.name, "-save") {
			t.Errorf("unexpected command %s", c)
			return nil, errors.New("unexpected")
		}
		v4 := !strings.HasPrefix(c.name, "ip6tables")
		nat, filter := natDump(nil), filterDump(nil)
		if v4 && *installed {
			nat = natDump([]string{MasqChain}, goldenLines(goldenMasqV4)...)
			filter = filterDump([]string{ForwardChain}, goldenLines(goldenForwardV4)...)
		}
		switch strings.Join(c.args, " ") {
		case "-t nat":
			return []byte(nat), nil
		case "-t filter":
			return []byte(filter), nil
		case "":
			return []byte(nat + filter), nil
		}
		t.Errorf("unexpected command %s", c)
		return nil, errors.New("unexpected")
	}
	return f, installed
}

func newTestIPTables(r Runner, log *slog.Logger, randomFully bool) *IPTables {
	x := &xtables{runner: r, log: log, cmds: CommandsFor(VariantNFT), wait: true}
	return newIPTables(x, Options{Logger: log, Resync: time.Hour, NFT: "nft"}, randomFully)
}

func TestIPTablesApplyAndResync(t *testing.T) {
	ctx := context.Background()
	f, _ := fakeIPTables(t)
	log, logs := testLogger()
	m := newTestIPTables(f, log, true)

	if err := m.Apply(ctx, testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	calls := f.take()
	// Apply reads one full dump per family.
	wantCalls := []string{"iptables-nft-save", "iptables-nft-restore --noflush --wait", "ip6tables-nft-save"}
	if got := callStrings(calls); !slices.Equal(got, wantCalls) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	wantPayload := "*nat\n:FLANNEL-POSTRTG - [0:0]\n" + goldenMasqV4 + "COMMIT\n" +
		"*filter\n:FLANNEL-FWD - [0:0]\n" + goldenForwardV4 + "COMMIT\n"
	if calls[1].stdin != wantPayload {
		t.Errorf("restore payload:\n%s\nwant:\n%s", calls[1].stdin, wantPayload)
	}

	// Applying again only reads.
	if err := m.Apply(ctx, testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	if got := callStrings(f.take()); !slices.Equal(got, []string{"iptables-nft-save", "ip6tables-nft-save"}) {
		t.Errorf("second Apply ran %q, want one save per family", got)
	}

	// An idle resync reads each wanted table once and writes nothing.
	if err := m.resyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := callStrings(f.take()); !slices.Equal(got, []string{"iptables-nft-save -t nat", "iptables-nft-save -t filter"}) {
		t.Errorf("idle resync ran %q", got)
	}
	if strings.Contains(logs.String(), "Some iptables rules are missing") {
		t.Error("idle resync logged a repair")
	}
}

func TestIPTablesResyncRepairsAndLogs(t *testing.T) {
	ctx := context.Background()
	f, installed := fakeIPTables(t)
	log, logs := testLogger()
	m := newTestIPTables(f, log, true)
	if err := m.Apply(ctx, testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	f.take()
	*installed = false // someone flushed our chains
	if err := m.resyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := callStrings(f.take())
	if !slices.Equal(got, []string{"iptables-nft-save -t nat", "iptables-nft-save -t filter", "iptables-nft-restore --noflush --wait"}) {
		t.Errorf("repairing resync ran %q", got)
	}
	if n := strings.Count(logs.String(), `msg="Some iptables rules are missing; deleting and recreating rules"`); n != 2 {
		t.Errorf("upstream's repair line logged %d times, want once per table:\n%s", n, logs)
	}
}

func TestIPTablesWithoutRandomFully(t *testing.T) {
	f, _ := fakeIPTables(t)
	log, _ := testLogger()
	m := newTestIPTables(f, log, false) // iptables older than 1.6.2
	if err := m.Apply(context.Background(), testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.take() {
		if strings.HasSuffix(c.name, "-restore") && strings.Contains(c.stdin, "random-fully") {
			t.Errorf("payload uses --random-fully although unsupported:\n%s", c.stdin)
		}
	}
}

func TestIPTablesErrors(t *testing.T) {
	ctx := context.Background()
	log, _ := testLogger()
	// A wanted table that cannot be read is an error naming the command;
	// an unwanted family that cannot be read is skipped.
	f := &fakeRunner{respond: func(c call) ([]byte, error) {
		if strings.HasPrefix(c.name, "ip6tables") {
			return nil, failed(c.name, c.args, "can't initialize ip6tables table `nat': Table does not exist")
		}
		if len(c.args) == 0 || slices.Contains(c.args, "nat") {
			return nil, failed(c.name, c.args, "Permission denied (you must be root)")
		}
		if strings.HasSuffix(c.name, "-restore") {
			return nil, nil
		}
		return []byte(filterDump(nil)), nil
	}}
	m := newTestIPTables(f, log, true)
	err := m.Apply(ctx, testConfig(true, false))
	if err == nil || !strings.Contains(err.Error(), "iptables-nft-save") || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("Apply error = %v", err)
	}
	if strings.Contains(err.Error(), "ip6tables") {
		t.Errorf("unwanted IPv6 failure reported: %v", err)
	}
	if got := callStrings(f.take()); slices.Contains(got, "iptables-nft-restore --noflush --wait") {
		t.Errorf("wrote without reading: %q", got)
	}
	// On a resync a failing table does not stop the readable one.
	m.cfg = &Config{Network: testConfig(true, false).Network, Subnet: testConfig(true, false).Subnet, Masq: true, Forward: true}
	if err := m.resyncOnce(ctx); err == nil || !strings.Contains(err.Error(), "iptables-nft-save -t nat") {
		t.Fatalf("resync error = %v", err)
	}
	if got := callStrings(f.take()); !slices.Contains(got, "iptables-nft-restore --noflush --wait") {
		t.Errorf("filter table not written: %q", got)
	}
	if err := m.Apply(ctx, Config{Network: testConfig(true, false).Network}); err == nil {
		t.Error("invalid config accepted")
	}
}

func TestIPTablesRemovesUnwantedChains(t *testing.T) {
	ctx := context.Background()
	log, _ := testLogger()
	f := &fakeRunner{respond: func(c call) ([]byte, error) {
		switch {
		case strings.HasSuffix(c.name, "-restore"):
			return nil, nil
		case !strings.HasPrefix(c.name, "ip6"):
			return []byte(natDump([]string{MasqChain}, goldenLines(goldenMasqV4)...) + filterDump(nil)), nil
		}
		return []byte(natDump([]string{MasqChain}, goldenLines(goldenMasqV6)...) + filterDump(nil)), nil
	}}
	m := newTestIPTables(f, log, true)
	cfg := testConfig(true, false)
	cfg.Masq = false // masquerading turned off since the last run; IPv6 too
	if err := m.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, c := range f.take() {
		if strings.HasSuffix(c.name, "-restore") {
			payloads = append(payloads, c.name+"\n"+c.stdin)
		}
	}
	removeNat := "*nat\n" + deleteLine(goldenLines(goldenMasqV4)[0]) + "\n-F FLANNEL-POSTRTG\n-X FLANNEL-POSTRTG\nCOMMIT\n"
	want := []string{
		"iptables-nft-restore\n" + removeNat + "*filter\n:FLANNEL-FWD - [0:0]\n" + goldenForwardV4 + "COMMIT\n",
		"ip6tables-nft-restore\n" + removeNat,
	}
	if !slices.Equal(payloads, want) {
		t.Errorf("payloads:\n%s\nwant:\n%s", strings.Join(payloads, "\n--\n"), strings.Join(want, "\n--\n"))
	}
}

func TestKeeperStopsAndCountsPasses(t *testing.T) {
	f, _ := fakeIPTables(t)
	log, _ := testLogger()
	m := newTestIPTables(f, log, true)
	m.resync = time.Millisecond
	if err := m.Apply(context.Background(), testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	f.take()
	ctx, cancel := context.WithCancel(context.Background())
	passes := 0
	m.afterPass = func() {
		if passes++; passes == 5 {
			cancel()
		}
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("Run did not return after its context was cancelled")
	}
	if got := len(f.take()); passes != 5 || got != 10 {
		t.Errorf("%d passes ran %d commands, want 5 passes and 10 saves", passes, got)
	}
}

func nftFake(t *testing.T, probe func(fullyRandom bool) error) (*fakeRunner, map[string]string) {
	tables := map[string]string{} // "ip flannel-ipv4" -> listing
	f := &fakeRunner{}
	f.respond = func(c call) ([]byte, error) {
		args := strings.Join(c.args, " ")
		switch {
		case args == "--check -f -":
			return nil, probe(strings.Contains(c.stdin, "fully-random"))
		case strings.HasPrefix(args, "list table "):
			name := strings.TrimPrefix(args, "list table ")
			if def, ok := tables[name]; ok {
				return []byte(def), nil
			}
			return nil, failed(c.name, c.args, "Error: No such file or directory\nlist table "+name)
		case args == "list tables":
			var out string
			for name := range tables {
				out += "table " + name + "\n"
			}
			return []byte(out), nil
		case args == "-f -":
			// Apply "table X / delete table X / definition" blocks.
			for _, block := range strings.Split(c.stdin, "\ndelete table ")[1:] {
				name, def, _ := strings.Cut(block, "\n")
				delete(tables, name)
				if i := strings.Index(def, "\ntable "); i >= 0 {
					def = def[:i+1]
				}
				if strings.HasPrefix(def, "table "+name+" {") {
					tables[name] = def
				}
			}
			return nil, nil
		}
		t.Errorf("unexpected command %s", c)
		return nil, errors.New("unexpected")
	}
	return f, tables
}

func TestNFTablesProbe(t *testing.T) {
	ctx := context.Background()
	log, logs := testLogger()
	f, _ := nftFake(t, func(bool) error { return nil })
	m, err := NewNFTables(ctx, Options{Runner: f, Logger: log})
	if err != nil || !m.fullyRandom {
		t.Fatalf("probe: %v, fullyRandom=%v", err, m != nil && m.fullyRandom)
	}
	f, _ = nftFake(t, func(fr bool) error {
		if fr {
			return failed("nft", nil, "Error: syntax error, unexpected fully-random")
		}
		return nil
	})
	m, err = NewNFTables(ctx, Options{Runner: f, Logger: log})
	if err != nil || m.fullyRandom {
		t.Fatalf("probe without fully-random: %v, fullyRandom=%v", err, m != nil && m.fullyRandom)
	}
	if !strings.Contains(logs.String(), "nftables: random fully unsupported") {
		t.Error("missing upstream's log line for unsupported fully-random")
	}
	f, _ = nftFake(t, func(bool) error { return failed("nft", nil, "Error: Could not process rule: Operation not permitted") })
	if _, err := NewNFTables(ctx, Options{Runner: f, Logger: log}); err == nil || !strings.Contains(err.Error(), "Operation not permitted") {
		t.Fatalf("broken nft accepted: %v", err)
	}
}

func TestNFTablesApplyAndResync(t *testing.T) {
	ctx := context.Background()
	log, logs := testLogger()
	f, tables := nftFake(t, func(bool) error { return nil })
	m, err := NewNFTables(ctx, Options{Runner: f, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	f.take()
	if err := m.Apply(ctx, testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	calls := f.take()
	if got := callStrings(calls); !slices.Equal(got, []string{"nft list table ip flannel-ipv4", "nft list table ip6 flannel-ipv6", "nft -f -"}) {
		t.Fatalf("calls %q", got)
	}
	if want := nftReplace(nftTableV4, goldenNFTv4); calls[2].stdin != want {
		t.Errorf("nft input:\n%s\nwant:\n%s", calls[2].stdin, want)
	}
	if err := m.Apply(ctx, testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	if got := callStrings(f.take()); len(got) != 2 {
		t.Errorf("second Apply ran %q, want two lists", got)
	}
	if err := m.resyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := callStrings(f.take()); !slices.Equal(got, []string{"nft list table ip flannel-ipv4"}) {
		t.Errorf("idle resync ran %q", got)
	}
	// A rule changed by hand is restored with one transaction.
	tables["ip flannel-ipv4"] = strings.Replace(tables["ip flannel-ipv4"], "ip daddr 10.5.0.0/16 accept", "ip daddr 10.5.0.0/16 drop", 1)
	if err := m.resyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := callStrings(f.take()); !slices.Equal(got, []string{"nft list table ip flannel-ipv4", "nft -f -"}) {
		t.Errorf("repairing resync ran %q", got)
	}
	if !strings.Contains(logs.String(), "Some nftables rules are missing; deleting and recreating rules") {
		t.Error("repair not logged")
	}
	// Turning IPv4 off and IPv6 on swaps the tables in one transaction.
	if err := m.Apply(ctx, testConfig(false, true)); err != nil {
		t.Fatal(err)
	}
	calls = f.take()
	if last := calls[len(calls)-1]; last.String() != "nft -f -" || last.stdin != nftReplace(nftTableV4, "")+nftReplace(nftTableV6, goldenNFTv6) {
		t.Errorf("swap transaction:\n%s", last.stdin)
	}
	if _, ok := tables["ip flannel-ipv4"]; ok || tables["ip6 flannel-ipv6"] != goldenNFTv6 {
		t.Errorf("tables after swap: %v", tables)
	}
}

func TestNFTablesListError(t *testing.T) {
	log, _ := testLogger()
	f := &fakeRunner{respond: func(c call) ([]byte, error) {
		return nil, failed(c.name, c.args, "Error: cache initialization failed: Operation not permitted")
	}}
	m := &NFTables{runner: f, log: log, nft: "nft", resync: time.Hour}
	err := m.Apply(context.Background(), testConfig(true, false))
	if err == nil || !strings.Contains(err.Error(), "Operation not permitted") {
		t.Fatalf("Apply error = %v", err)
	}
	if got := callStrings(f.take()); slices.Contains(got, "nft -f -") {
		t.Errorf("wrote although listing failed: %q", got)
	}
}

func TestDeleteNFTTables(t *testing.T) {
	ctx := context.Background()
	log, _ := testLogger()
	f, tables := nftFake(t, nil)
	tables["ip flannel-ipv4"] = goldenNFTv4
	tables["ip filter"] = "table ip filter {\n}\n"
	if err := deleteNFTTables(ctx, f, "nft", log); err != nil {
		t.Fatal(err)
	}
	if _, ok := tables["ip flannel-ipv4"]; ok || len(tables) != 1 {
		t.Errorf("tables left: %v", tables)
	}
	f.take()
	if err := deleteNFTTables(ctx, f, "nft", log); err != nil {
		t.Fatal(err)
	}
	if got := callStrings(f.take()); !slices.Equal(got, []string{"nft list tables"}) {
		t.Errorf("nothing to delete but ran %q", got)
	}
	missing := &fakeRunner{respond: func(c call) ([]byte, error) {
		return nil, &CommandError{Name: c.name, Err: &exec.Error{Name: c.name, Err: exec.ErrNotFound}}
	}}
	if err := deleteNFTTables(ctx, missing, "nft", log); err != nil {
		t.Errorf("missing nft is not success: %v", err)
	}
}

func TestNewUnknownMode(t *testing.T) {
	if _, err := New(context.Background(), Mode("ipfw"), Options{}); err == nil || !strings.Contains(err.Error(), `"ipfw"`) {
		t.Fatalf("error = %v", err)
	}
}
