package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/internal/testns"
)

// Privileged tests: each creates its own network namespace (testns: a unique
// name, deleted in t.Cleanup). Nothing touches the root namespace.

// nsRunner runs every command inside a namespace and counts them by program.
type nsRunner struct {
	ns     string
	mu     sync.Mutex
	counts map[string]int
}

func newNSRunner(tb testing.TB) *nsRunner {
	return &nsRunner{ns: testns.New(tb, "fwtest").Name, counts: map[string]int{}}
}

func (r *nsRunner) Run(ctx context.Context, name string, stdin []byte, args ...string) ([]byte, error) {
	r.mu.Lock()
	r.counts[name]++
	r.mu.Unlock()
	return ExecRunner{}.Run(ctx, "ip", stdin, append([]string{"netns", "exec", r.ns, name}, args...)...)
}

// take returns and resets the counts.
func (r *nsRunner) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts
	r.counts = map[string]int{}
	return c
}

func total(counts map[string]int, suffix string) int {
	n := 0
	for name, c := range counts {
		if strings.HasSuffix(name, suffix) {
			n += c
		}
	}
	return n
}

// sh runs a command in the namespace without counting it; failure is fatal.
func (r *nsRunner) sh(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	return r.shIn(tb, "", name, args...)
}

func (r *nsRunner) shIn(tb testing.TB, stdin, name string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.ns, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ourText extracts, from the namespace's dump of one table, the jumps to our
// chain and the chain's rules, in the form IPTablesChain.String renders.
func (r *nsRunner) ourText(tb testing.TB, cmds IPTablesCommands, f family, def chainDef) string {
	tb.Helper()
	t := parseSave([]byte(r.sh(tb, cmds.save(f), "-t", def.table)))[def.table]
	var lines []string
	for _, rule := range t.chainRules(def.parent) {
		if targets(rule, def.name) {
			lines = append(lines, rule)
		}
	}
	lines = append(lines, t.chainRules(def.name)...)
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func (r *nsRunner) checkGolden(tb testing.TB, cmds IPTablesCommands, cfg Config) {
	tb.Helper()
	for _, c := range IPTablesChains(cfg) {
		f, def := ipv4, masqDef
		if c.IPv6 {
			f = ipv6
		}
		if c.Name == ForwardChain {
			def = forwardDef
		}
		if got := r.ourText(tb, cmds, f, def); got != c.String() {
			tb.Errorf("%s %s %s in the kernel:\n%s\nwant:\n%s", cmds.name(), f, c.Name, got, c.String())
		}
	}
}

func variants() []string { return []string{VariantNFT, VariantLegacy} }

func TestPrivilegedIPTablesApplyGolden(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	for _, variant := range variants() {
		t.Run(variant, func(t *testing.T) {
			r := newNSRunner(t)
			cmds := CommandsFor(variant)
			log, _ := testLogger()
			m, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &cmds})
			if err != nil {
				t.Fatal(err)
			}
			if !m.randomFully {
				t.Fatal("iptables 1.8 must support --random-fully")
			}
			cfg := testConfig(true, true)
			if err := m.Apply(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			// The kernel round-trips the exact upstream text.
			for _, tc := range []struct {
				f     family
				def   chainDef
				chain string
			}{{ipv4, masqDef, goldenMasqV4}, {ipv4, forwardDef, goldenForwardV4}, {ipv6, masqDef, goldenMasqV6}, {ipv6, forwardDef, goldenForwardV6}} {
				if got := r.ourText(t, cmds, tc.f, tc.def); got != tc.chain {
					t.Errorf("%s %s:\n%s\nwant:\n%s", tc.f, tc.def.name, got, tc.chain)
				}
			}
			counts := r.take()
			if got := total(counts, "-restore"); got != 2 {
				t.Errorf("first Apply ran %d restores, want one per family: %v", got, counts)
			}
			// Applying again is a no-op: one save per table, no restore.
			if err := m.Apply(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			counts = r.take()
			if total(counts, "-restore") != 0 || total(counts, "-save") != 2 {
				t.Errorf("second Apply ran %v, want one save per family and no restore", counts)
			}
			// Without random-fully the plain MASQUERADE text is installed.
			cfg.RandomFully = false
			if err := m.Apply(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			if got := r.ourText(t, cmds, ipv4, masqDef); got != noRandom(goldenMasqV4) {
				t.Errorf("without random-fully:\n%s", got)
			}
		})
	}
}

func TestPrivilegedIPTablesResyncRepairs(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	jumpSpec := []string{"-m", "comment", "--comment", masqComment, "-j", MasqChain}
	fwdJumpSpec := []string{"-m", "comment", "--comment", forwardComment, "-j", ForwardChain}
	mutations := []struct {
		name string
		ipv6 bool
		cmds [][]string // iptables arguments, run in order
	}{
		{"rule deleted", false, [][]string{{"-t", "nat", "-D", MasqChain, "3"}}},
		{"rules reordered", false, [][]string{
			{"-t", "nat", "-A", MasqChain, "-m", "mark", "--mark", kubeProxyMark, "-m", "comment", "--comment", masqComment, "-j", "RETURN"},
			{"-t", "nat", "-D", MasqChain, "1"},
		}},
		{"foreign rule inside our chain", false, [][]string{{"-t", "nat", "-I", MasqChain, "2", "-s", "192.0.2.0/24", "-j", "RETURN"}}},
		{"jump deleted", false, [][]string{append([]string{"-t", "nat", "-D", "POSTROUTING"}, jumpSpec...)}},
		{"jump duplicated", false, [][]string{append([]string{"-t", "nat", "-I", "POSTROUTING", "1"}, jumpSpec...)}},
		{"forward chain flushed", false, [][]string{{"-t", "filter", "-F", ForwardChain}}},
		{"forward chain and jump deleted", false, [][]string{
			append([]string{"-t", "filter", "-D", "FORWARD"}, fwdJumpSpec...),
			{"-t", "filter", "-F", ForwardChain},
			{"-t", "filter", "-X", ForwardChain},
		}},
		{"IPv6 rule deleted", true, [][]string{{"-t", "nat", "-D", MasqChain, "6"}}},
	}
	for _, variant := range variants() {
		t.Run(variant, func(t *testing.T) {
			r := newNSRunner(t)
			cmds := CommandsFor(variant)
			log, logs := testLogger()
			m, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &cmds})
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(true, true)
			if err := m.Apply(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			for _, mu := range mutations {
				bin := cmds.IPTables
				if mu.ipv6 {
					bin = cmds.IP6Tables
				}
				for _, args := range mu.cmds {
					r.sh(t, bin, args...)
				}
				r.take()
				logs.Reset()
				if err := m.resyncOnce(ctx); err != nil {
					t.Fatalf("%s: resync: %v", mu.name, err)
				}
				r.checkGolden(t, cmds, cfg)
				counts := r.take()
				if total(counts, "-save") != 4 || total(counts, "-restore") != 1 {
					t.Errorf("%s: resync ran %v, want 4 saves and 1 restore", mu.name, counts)
				}
				if !strings.Contains(logs.String(), "Some iptables rules are missing; deleting and recreating rules") {
					t.Errorf("%s: repair not logged:\n%s", mu.name, logs)
				}
			}
		})
	}
}

func TestPrivilegedIPTablesForeignRulesKeepTheirPlace(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	r := newNSRunner(t)
	cmds := CommandsFor(VariantNFT)
	log, _ := testLogger()
	m, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &cmds})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(true, false)
	before := "-A POSTROUTING -s 192.0.2.0/24 -j RETURN"
	after := "-A POSTROUTING -s 198.51.100.0/24 -j MASQUERADE"
	// One foreign rule exists before we start; it stays ahead of our
	// (appended) jump, like upstream.
	r.sh(t, "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "RETURN")
	if err := m.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	r.sh(t, "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "198.51.100.0/24", "-j", "MASQUERADE")
	jump := masqDef.jump()
	postrouting := func() []string {
		return parseSave([]byte(r.sh(t, "iptables-nft-save", "-t", "nat")))["nat"].chainRules("POSTROUTING")
	}
	if got := postrouting(); !slices.Equal(got, []string{before, jump, after}) {
		t.Fatalf("POSTROUTING after apply: %q", got)
	}
	// Our chain is rewritten; the jump is not moved.
	r.sh(t, "iptables-nft", "-t", "nat", "-D", MasqChain, "1")
	if err := m.resyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := postrouting(); !slices.Equal(got, []string{before, jump, after}) {
		t.Errorf("POSTROUTING after repair: %q, want %q", got, []string{before, jump, after})
	}
	r.checkGolden(t, cmds, cfg)
	// A missing jump is appended, as upstream does.
	r.sh(t, "iptables-nft", "-t", "nat", "-D", "POSTROUTING", "2")
	if err := m.resyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := postrouting(); !slices.Equal(got, []string{before, after, jump}) {
		t.Errorf("POSTROUTING after re-adding the jump: %q", got)
	}
}

// TestPrivilegedIPTablesKeeperIdleCost runs the keeper with a short period
// and counts the processes it starts: one save per table per period.
func TestPrivilegedIPTablesKeeperIdleCost(t *testing.T) {
	testns.RequireRoot(t)
	r := newNSRunner(t)
	cmds := CommandsFor(VariantNFT)
	log, logs := testLogger()
	m, err := NewIPTables(context.Background(), Options{Runner: r, Logger: log, IPTables: &cmds, Resync: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(true, true)
	if err := m.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	r.take()
	const passes = 5
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	m.afterPass = func() {
		if n++; n == passes {
			cancel()
		}
	}
	m.Run(ctx)
	counts := r.take()
	execs := total(counts, "")
	if n != passes || total(counts, "-save") != passes*4 || total(counts, "-restore") != 0 || execs != passes*4 {
		t.Fatalf("%d idle passes ran %v, want %d saves and nothing else", n, counts, passes*4)
	}
	if strings.Contains(logs.String(), "Some iptables rules are missing") {
		t.Error("idle keeper logged a repair")
	}
	perMinute := float64(execs) / passes * float64(time.Minute/DefaultResync)
	t.Logf("idle keeper, dual stack, masq+forward: %.0f processes per minute at the default %v period (%.0f per table); upstream runs about 20 per family per period, ~%d per minute",
		perMinute, DefaultResync, perMinute/4, 2*20*int(time.Minute/DefaultResync))
	// Nothing is removed when Run returns.
	r.checkGolden(t, cmds, cfg)
}

func BenchmarkPrivilegedIPTablesIdleResync(b *testing.B) {
	testns.RequireRoot(b)
	r := newNSRunner(b)
	cmds := CommandsFor(VariantNFT)
	log, _ := testLogger()
	ctx := context.Background()
	m, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &cmds})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Apply(ctx, testConfig(true, false)); err != nil {
		b.Fatal(err)
	}
	r.take()
	b.ResetTimer()
	for range b.N {
		if err := m.resyncOnce(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perPass := float64(total(r.take(), "")) / float64(b.N)
	b.ReportMetric(perPass, "procs/pass")
	b.ReportMetric(perPass*float64(time.Minute/DefaultResync), "procs/min@5s")
}

func TestPrivilegedNFTablesApplyGolden(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	r := newNSRunner(t)
	log, logs := testLogger()
	m, err := NewNFTables(ctx, Options{Runner: r, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if !m.fullyRandom {
		t.Fatal("nft 1.0.6 must accept fully-random")
	}
	r.take() // the probes
	cfg := testConfig(true, true)
	if err := m.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		// Exact text, as nft prints it.
		if got := r.sh(t, "nft", "list", "table", "ip", "flannel-ipv4"); got != goldenNFTv4 {
			t.Errorf("%s: v4 table:\n%s\nwant:\n%s", when, got, goldenNFTv4)
		}
		if got := r.sh(t, "nft", "list", "table", "ip6", "flannel-ipv6"); got != goldenNFTv6 {
			t.Errorf("%s: v6 table:\n%s\nwant:\n%s", when, got, goldenNFTv6)
		}
	}
	check("after apply")
	if c := r.take(); c["nft"] != 3 {
		t.Errorf("first Apply ran %v, want 2 lists and 1 write", c)
	}
	if err := m.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if c := r.take(); c["nft"] != 2 {
		t.Errorf("second Apply ran %v, want 2 lists", c)
	}
	if err := m.resyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if c := r.take(); c["nft"] != 2 || strings.Contains(logs.String(), "missing") {
		t.Errorf("idle resync ran %v, want one list per table", c)
	}
	for _, mu := range [][]string{
		{"flush", "chain", "ip", "flannel-ipv4", "forward"},
		{"add", "rule", "ip", "flannel-ipv4", "postrtg", "ip", "saddr", "192.0.2.0/24", "accept"},
		{"insert", "rule", "ip", "flannel-ipv4", "postrtg", "ip", "saddr", "192.0.2.0/24", "masquerade"},
		{"delete", "table", "ip6", "flannel-ipv6"},
		{"delete", "chain", "ip", "flannel-ipv4", "postrtg"},
	} {
		r.sh(t, "nft", mu...)
		logs.Reset()
		if err := m.resyncOnce(ctx); err != nil {
			t.Fatalf("nft %v: resync: %v", mu, err)
		}
		check(strings.Join(mu, " "))
		if c := r.take(); c["nft"] != 3 {
			t.Errorf("nft %v: resync ran %v, want 2 lists and 1 write", mu, c)
		}
		if !strings.Contains(logs.String(), "Some nftables rules are missing") {
			t.Errorf("nft %v: repair not logged", mu)
		}
	}
	// IPv6 off: its table goes.
	if err := m.Apply(ctx, testConfig(true, false)); err != nil {
		t.Fatal(err)
	}
	if got := r.sh(t, "nft", "list", "tables"); strings.TrimSpace(got) != "table ip flannel-ipv4" {
		t.Errorf("tables with IPv6 off: %q", got)
	}
}

// TestPrivilegedModeSwitch goes iptables (legacy) -> nftables -> iptables
// (nft) and checks that each switch leaves no trace of the other mode.
func TestPrivilegedModeSwitch(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	r := newNSRunner(t)
	log, _ := testLogger()
	cfg := testConfig(true, true)
	noIPTablesTrace := func(when string) {
		t.Helper()
		for _, v := range variants() {
			c := CommandsFor(v)
			for _, save := range []string{c.IPTablesSave, c.IP6TablesSave} {
				if out := r.sh(t, save); strings.Contains(out, "FLANNEL") || strings.Contains(out, "flanneld") {
					t.Errorf("%s: %s still shows our rules:\n%s", when, save, out)
				}
			}
		}
		if out := r.sh(t, "nft", "list", "ruleset"); strings.Contains(out, "FLANNEL") {
			t.Errorf("%s: nft list ruleset still shows iptables-nft chains:\n%s", when, out)
		}
	}
	noNFTTrace := func(when string) {
		t.Helper()
		if out := r.sh(t, "nft", "list", "tables"); strings.Contains(out, "flannel-ipv") {
			t.Errorf("%s: nft tables left: %s", when, out)
		}
	}

	legacy := CommandsFor(VariantLegacy)
	ipt, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &legacy})
	if err != nil {
		t.Fatal(err)
	}
	if err := ipt.CleanupOther(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ipt.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	r.checkGolden(t, legacy, cfg)
	// Leave chains in the nft variant too, as a run with the other variant would.
	nftCmds := CommandsFor(VariantNFT)
	other := newIPTables(&xtables{runner: r, log: log, cmds: nftCmds, wait: true}, Options{Logger: log}, true)
	if err := other.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	nft, err := NewNFTables(ctx, Options{Runner: r, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := nft.CleanupOther(ctx); err != nil {
		t.Fatal(err)
	}
	if err := nft.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	noIPTablesTrace("iptables -> nftables")
	if got := r.sh(t, "nft", "list", "table", "ip", "flannel-ipv4"); got != goldenNFTv4 {
		t.Errorf("nft table after switch:\n%s", got)
	}
	// Cleaning again finds nothing and succeeds.
	r.take()
	if err := nft.CleanupOther(ctx); err != nil {
		t.Fatal(err)
	}
	if c := r.take(); total(c, "-restore") != 0 {
		t.Errorf("second cleanup wrote: %v", c)
	}

	// Back to iptables, with the nft variant; stale legacy chains (from a
	// run with the other variant) are removed as well.
	r.shIn(t, "*nat\n:FLANNEL-POSTRTG - [0:0]\n"+goldenMasqV4+"COMMIT\n", "iptables-legacy-restore", "--noflush")
	ipt2, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &nftCmds})
	if err != nil {
		t.Fatal(err)
	}
	if err := ipt2.CleanupOther(ctx); err != nil {
		t.Fatal(err)
	}
	noNFTTrace("nftables -> iptables")
	if out := r.sh(t, "iptables-legacy-save"); strings.Contains(out, "FLANNEL") {
		t.Errorf("legacy chains left:\n%s", out)
	}
	if err := ipt2.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	r.checkGolden(t, nftCmds, cfg)
	if err := ipt2.CleanupOther(ctx); err != nil {
		t.Fatalf("cleanup with nothing to clean: %v", err)
	}
}

func TestPrivilegedCleanupPrevious(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	r := newNSRunner(t)
	log, _ := testLogger()
	cmds := CommandsFor(VariantNFT)
	m, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &cmds})
	if err != nil {
		t.Fatal(err)
	}
	prev := Config{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24")}
	foreignNat := "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"
	foreignFwd := "-A FORWARD -i docker0 -j ACCEPT"
	// flannel v0.11 rules and a later commented one, mixed with Docker's.
	r.shIn(t, "*nat\n"+
		"-A POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN\n"+
		foreignNat+"\n"+
		"-A POSTROUTING -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully\n"+
		"-A POSTROUTING ! -s 10.244.0.0/16 -d 10.244.3.0/24 -j RETURN\n"+
		"-A POSTROUTING ! -s 10.244.0.0/16 -d 10.244.0.0/16 -j MASQUERADE --random-fully\n"+
		"-A POSTROUTING -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN\n"+
		"COMMIT\n*filter\n"+
		"-A FORWARD -s 10.244.0.0/16 -j ACCEPT\n"+
		foreignFwd+"\n"+
		"-A FORWARD -d 10.244.0.0/16 -j ACCEPT\n"+
		"COMMIT\n", "iptables-nft-restore", "--noflush")
	cfg := testConfig(true, false)
	if err := m.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := m.CleanupPrevious(ctx, prev, cfg); err != nil {
		t.Fatal(err)
	}
	tables := parseSave([]byte(r.sh(t, "iptables-nft-save")))
	if got := tables["nat"].chainRules("POSTROUTING"); !slices.Equal(got, []string{foreignNat, masqDef.jump()}) {
		t.Errorf("POSTROUTING: %q", got)
	}
	if got := tables["filter"].chainRules("FORWARD"); !slices.Equal(got, []string{foreignFwd, forwardDef.jump()}) {
		t.Errorf("FORWARD: %q", got)
	}
	r.checkGolden(t, cmds, cfg)
}

func TestPrivilegedDetectIPTables(t *testing.T) {
	testns.RequireRoot(t)
	if _, err := exec.LookPath("iptables-legacy-save"); err != nil {
		t.Skip("needs both iptables variants")
	}
	ctx := context.Background()
	log, logs := testLogger()
	r := newNSRunner(t)
	want := VariantNFT
	if p, err := exec.LookPath("iptables"); err == nil {
		if res, err := filepath.EvalSymlinks(p); err == nil && variantOfBinary(res) == VariantLegacy {
			want = VariantLegacy
		}
	}
	if got := DetectIPTables(ctx, r, log).Variant; got != want {
		t.Errorf("empty namespace: %q, want the system default %q", got, want)
	}
	if !strings.Contains(logs.String(), "Using iptables variant") {
		t.Error("choice not logged")
	}
	for i := range 3 {
		r.sh(t, "iptables-legacy", "-A", "INPUT", "-s", fmt.Sprintf("192.0.2.%d", i), "-j", "ACCEPT")
	}
	if got := DetectIPTables(ctx, r, log).Variant; got != VariantLegacy {
		t.Errorf("with legacy rules: %q", got)
	}
	r.sh(t, "iptables-nft", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY")
	if got := DetectIPTables(ctx, r, log).Variant; got != VariantNFT {
		t.Errorf("with kubelet's canary in nft: %q", got)
	}
}

func TestPrivilegedBlackholeRoute(t *testing.T) {
	testns.RequireRoot(t)
	r := newNSRunner(t)
	nsh, err := netns.GetFromName(r.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, s := range []string{"10.5.21.0/24", "fd00:10:5:21::/64"} {
		subnet := netip.MustParsePrefix(s)
		for i, want := range []bool{true, false, false} {
			added, err := EnsureBlackholeRoute(h, subnet)
			if err != nil {
				t.Fatalf("%s call %d: %v", s, i, err)
			}
			if added != want {
				t.Errorf("%s call %d: added=%v, want %v", s, i, added, want)
			}
		}
		fam := "-4"
		if subnet.Addr().Is6() {
			fam = "-6"
		}
		out := r.sh(t, "ip", fam, "route", "show", "type", "blackhole")
		if n := strings.Count(out, s); n != 1 || !strings.Contains(out, fmt.Sprintf("metric %d", BlackholeMetric)) {
			t.Errorf("blackhole routes for %s:\n%s", s, out)
		}
	}
	// The bridge route for the subnet wins over the blackhole.
	r.sh(t, "ip", "link", "add", "cni0", "type", "bridge")
	r.sh(t, "ip", "link", "set", "cni0", "up")
	r.sh(t, "ip", "addr", "add", "10.5.21.1/24", "dev", "cni0")
	if out := r.sh(t, "ip", "route", "get", "10.5.21.5"); !strings.Contains(out, "dev cni0") {
		t.Errorf("pod address routed to the blackhole: %s", out)
	}
	if _, err := EnsureBlackholeRoute(h, netip.Prefix{}); err == nil {
		t.Error("invalid subnet accepted")
	}
	// Another blackhole type check: unix constants stay what netlink reports.
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Type: unix.RTN_BLACKHOLE}, netlink.RT_FILTER_TYPE)
	if err != nil || len(routes) != 1 {
		t.Errorf("blackhole routes via netlink: %v %v", routes, err)
	}
}
