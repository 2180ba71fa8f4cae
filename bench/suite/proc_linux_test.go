//go:build linux

package suite

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// comm with spaces and parentheses; utime 150, stime 50, cutime 20, cstime 10.
	line := "4242 (flan (x) d) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 20 10 20 0 12 0 100 1000000 500 18446744073709551615\n"
	c, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if c.Self != 2*time.Second || c.Children != 300*time.Millisecond {
		t.Errorf("%+v", c)
	}
	if _, err := parseStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("short stat accepted")
	}
}

func TestStatusKB(t *testing.T) {
	b := []byte("Name:\tflanneld\nVmHWM:\t   51234 kB\nRssAnon:\t   100 kB\n")
	if v, err := statusKB(b, "VmHWM:"); err != nil || v != 51234<<10 {
		t.Errorf("%d %v", v, err)
	}
	if _, err := statusKB(b, "RssFile:"); err == nil {
		t.Error("missing line accepted")
	}
}

func TestCommandName(t *testing.T) {
	if got := commandName([]byte("/usr/sbin/iptables-nft-save\x00-t\x00nat\x00")); got != "iptables-nft-save -t nat" {
		t.Errorf("%q", got)
	}
	if commandName(nil) != "" {
		t.Error("empty cmdline")
	}
}

// Our own process: the readers must work on a live PID.
func TestReadOwnProc(t *testing.T) {
	pid := os.Getpid()
	if _, err := ReadProcCPU(pid); err != nil {
		t.Error(err)
	}
	if _, err := ReadThreadsCPU(pid); err != nil {
		t.Error(err)
	}
	if hwm, err := ReadPeakRSS(pid); err != nil || hwm == 0 {
		t.Errorf("%d %v", hwm, err)
	}
	if anon, _, err := ReadRSS(pid); err != nil || anon == 0 {
		t.Errorf("%d %v", anon, err)
	}
}

// The connector sees every process a parent starts, however short-lived,
// and names it. Needs root (initial namespaces).
func TestPrivilegedForkCounter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process events connector needs root")
	}
	// Go's first exec of a process clones once more to probe
	// CLONE_PIDFD; do it before counting.
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	fc, err := CountForks(os.Getpid())
	if err != nil {
		t.Skipf("process events connector unavailable: %v", err)
	}
	for range 5 {
		if err := exec.Command("true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // events are asynchronous
	got := fc.Stop()
	if got.Err != nil {
		t.Fatal(got.Err)
	}
	// Other goroutines of the test binary start nothing: exactly ours.
	// A child reaped before its exec event was read has no name left.
	if got.Processes != 5 || got.ByCommand["true"]+got.ByCommand["?"] != 5 || got.ByCommand["true"] == 0 {
		t.Errorf("counted %+v, want 5× true", got)
	}
}
