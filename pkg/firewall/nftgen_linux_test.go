package firewall

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/flannelng/flannel/internal/testns"
	"github.com/flannelng/flannel/pkg/nsenter"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestParseGenReply(t *testing.T) {
	ne := binary.NativeEndian
	msg := make([]byte, 20+8+8)
	ne.PutUint32(msg, uint32(len(msg)))
	ne.PutUint16(msg[4:], nfnlSubsysNFTables<<8|nftMsgNewGen)
	// NFTA_GEN_PROC_PID first, then NFTA_GEN_ID: the parser must walk.
	ne.PutUint16(msg[20:], 8)
	ne.PutUint16(msg[22:], 2)
	ne.PutUint16(msg[28:], 8)
	ne.PutUint16(msg[30:], nftaGenID)
	binary.BigEndian.PutUint32(msg[32:], 4242)
	if g, err := parseGenReply(msg); err != nil || g != 4242 {
		t.Fatalf("generation %d, %v; want 4242", g, err)
	}
	errMsg := make([]byte, 36)
	ne.PutUint32(errMsg, 36)
	ne.PutUint16(errMsg[4:], unix.NLMSG_ERROR)
	eperm := -int32(unix.EPERM)
	ne.PutUint32(errMsg[16:], uint32(eperm))
	if _, err := parseGenReply(errMsg); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("error reply: %v", err)
	}
	if _, err := parseGenReply(msg[:10]); err == nil {
		t.Fatal("short reply accepted")
	}
}

// genIn reads the generation of the test's namespace.
func genIn(tb testing.TB, ns string) func() (uint32, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return func() (g uint32, err error) {
		err = nsenter.Run(h, ns, func() error {
			g, err = NFTablesGeneration()
			return err
		})
		return g, err
	}
}

// With the generation, an idle keeper starts no process at all, and any
// change to the ruleset (ours or anybody's) brings the next pass back.
func TestPrivilegedKeeperSkipsWhileRulesetUnchanged(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	for _, variant := range variants() {
		t.Run(variant, func(t *testing.T) {
			r := newNSRunner(t)
			cmds := CommandsFor(variant)
			log, logs := testLogger()
			gen := genIn(t, r.ns)
			m, err := NewIPTables(ctx, Options{Runner: r, Logger: log, IPTables: &cmds, Generation: gen})
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(true, true)
			if err := m.Apply(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			pass := func(what string, wantSaves, wantRestores int) {
				t.Helper()
				r.take()
				if err := m.resyncOnce(ctx); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				c := r.take()
				if total(c, "-save") != wantSaves || total(c, "-restore") != wantRestores {
					t.Errorf("%s: pass ran %v, want %d saves and %d restores", what, c, wantSaves, wantRestores)
				}
			}
			if variant == VariantLegacy {
				// Legacy rules do not live in nf_tables: every pass reads.
				pass("legacy, first", 4, 0)
				pass("legacy, second", 4, 0)
				return
			}
			pass("first pass after Apply", 4, 0)
			pass("idle", 0, 0)
			pass("idle again", 0, 0)
			r.sh(t, "nft", "add", "table", "inet", "somebody-else")
			pass("after a foreign nft change", 4, 0)
			pass("idle after it", 0, 0)
			r.sh(t, cmds.IPTables, "-t", "nat", "-D", MasqChain, "1")
			logs.Reset()
			pass("after our rule was deleted", 4, 1)
			if !strings.Contains(logs.String(), "Some iptables rules are missing") {
				t.Errorf("repair not logged:\n%s", logs)
			}
			r.checkGolden(t, cmds, cfg)
			pass("after our own repair", 4, 0)
			pass("idle after the repair", 0, 0)
		})
	}
}

func TestPrivilegedNFTablesKeeperSkipsWhileRulesetUnchanged(t *testing.T) {
	testns.RequireRoot(t)
	ctx := context.Background()
	r := newNSRunner(t)
	log, _ := testLogger()
	m, err := NewNFTables(ctx, Options{Runner: r, Logger: log, Generation: genIn(t, r.ns)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(true, true)
	if err := m.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	nftRuns := func() int {
		t.Helper()
		r.take()
		if err := m.resyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
		return r.take()["nft"]
	}
	if n := nftRuns(); n != 2 {
		t.Errorf("first pass: %d nft runs, want 2 (one list per table)", n)
	}
	if n := nftRuns(); n != 0 {
		t.Errorf("idle pass: %d nft runs, want 0", n)
	}
	r.sh(t, "nft", "flush", "table", "ip", "flannel-ipv4")
	if n := nftRuns(); n != 3 {
		t.Errorf("pass after a flush: %d nft runs, want 2 lists and 1 write", n)
	}
	if n := nftRuns(); n != 2 {
		t.Errorf("pass after our repair: %d nft runs, want 2", n)
	}
}
