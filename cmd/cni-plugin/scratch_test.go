package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestScratchName(t *testing.T) {
	tests := []struct {
		cid, ifName, want string
	}{
		{"cnitool-77751c1123d5179ddaf6", "eth0", "cnitool-77751c1123d5179ddaf6"}, // upstream's name
		{"abc", "net1", "abc:net1"},
		{"abc", "eth0.100", "abc:eth0.100"},
	}
	for _, tt := range tests {
		got := scratchName(tt.cid, tt.ifName)
		if got != tt.want {
			t.Errorf("scratchName(%q, %q) = %q, want %q", tt.cid, tt.ifName, got, tt.want)
		}
		cid, ifName, legacy, ok := parseScratchName(got)
		wantIf, wantLegacy := tt.ifName, false
		if tt.ifName == legacyIfName {
			wantIf, wantLegacy = "", true
		}
		if !ok || cid != tt.cid || ifName != wantIf || legacy != wantLegacy {
			t.Errorf("parseScratchName(%q) = %q, %q, %v, %v", got, cid, ifName, legacy, ok)
		}
	}
	for _, junk := range []string{".tmp-abc-123", unusablePrefix + "abc", "abc:", "abc:eth0", ":net1", "abc:a/b", "abc:x:y", "-abc", "abc:0123456789abcdef"} {
		if _, _, _, ok := parseScratchName(junk); ok {
			t.Errorf("parseScratchName(%q) accepted a name neither plugin writes", junk)
		}
	}
}

func TestSaveScratch(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "flannel")
	path := filepath.Join(dataDir, "abc")
	if err := saveScratch(path, []byte(`{"type":"bridge"}`)); err != nil {
		t.Fatal(err)
	}
	// Overwrite, as a repeated ADD does.
	if err := saveScratch(path, []byte(`{"type":"ptp"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != `{"type":"ptp"}` {
		t.Fatalf("read back %q, %v", got, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", st.Mode(), err)
	}
	st, err = os.Stat(dataDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, %v; want 0700", st.Mode(), err)
	}
	entries, _ := os.ReadDir(dataDir)
	if len(entries) != 1 {
		t.Errorf("dataDir holds %d entries, want only the saved file (no temporary files left)", len(entries))
	}
	if err := removeScratch(path); err != nil {
		t.Fatal(err)
	}
	if err := removeScratch(path); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}

func TestReadScratchFallback(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("abc", "legacy")
	write("abc:net2", "keyed")

	sc, err := readScratch(dir, "abc", "eth0")
	if err != nil || string(sc.data) != "legacy" || sc.legacy {
		t.Errorf("eth0: %+v %v; want the upstream-named file, not marked as fallback", sc, err)
	}
	sc, err = readScratch(dir, "abc", "net2")
	if err != nil || string(sc.data) != "keyed" || sc.legacy {
		t.Errorf("net2: %+v %v; want the keyed file", sc, err)
	}
	sc, err = readScratch(dir, "abc", "net1")
	if err != nil || string(sc.data) != "legacy" || !sc.legacy || sc.path != filepath.Join(dir, "abc") {
		t.Errorf("net1: %+v %v; want the fallback to the upstream-named file", sc, err)
	}
	if _, err := readScratch(dir, "xyz", "net1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unknown container: %v, want not-exist", err)
	}
	if _, err := readScratch(dir, "xyz", "eth0"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unknown container eth0: %v, want not-exist", err)
	}
}

func TestParseScratch(t *testing.T) {
	nc, err := parseScratch([]byte(`{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","ipam":{"type":"host-local"}}`))
	if err != nil || nc.typ != "bridge" || nc.name != "cbr0" || nc.cniVersion != "1.0.0" {
		t.Errorf("got %+v, %v", nc, err)
	}
	// Keys of unexpected JSON types other than type do not matter: the
	// delegate judges them.
	nc, err = parseScratch([]byte(`{"cniVersion":1,"name":2,"type":"bridge","capabilities":"x"}`))
	if err != nil || nc.typ != "bridge" || nc.name != "" || nc.cniVersion != "" {
		t.Errorf("got %+v, %v", nc, err)
	}
	for _, bad := range []string{``, `{"type":"bri`, `{"name":"cbr0"}`, `{"type":5}`, `{"type":""}`, `null`, `[]`, `"bridge"`} {
		if _, err := parseScratch([]byte(bad)); err == nil {
			t.Errorf("parseScratch(%q) accepted it", bad)
		}
	}
}

func TestSweepScratch(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"live":           `{"name":"cbr0","type":"bridge"}`, // upstream name of (live, eth0)
		"live:net1":      `{"name":"cbr0","type":"bridge"}`, // keyed, valid
		"live:net2":      `{"name":"cbr0","type":"bridge"}`, // keyed, container valid but not this interface
		"multi":          `{"name":"cbr0","type":"bridge"}`, // upstream name; only (multi, net1) is valid
		"gone":           `{"name":"cbr0","type":"bridge"}`, // stale, upstream name
		"gone:net1":      `{"name":"cbr0","type":"bridge"}`, // stale, keyed
		"leaked":         `{"cniVersion":"1.1.0","name":"cbr0","type":"bridge"}`,
		"othernet":       `{"name":"other","type":"bridge"}`, // another network sharing dataDir
		"corrupt":        `{"name":"cbr0",`,
		".tmp-gone-1234": `{"name":"cbr0","type":"bridge"}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	valid := []types.GCAttachment{
		{ContainerID: "live", IfName: "eth0"},
		{ContainerID: "live", IfName: "net1"},
		{ContainerID: "multi", IfName: "net1"},
	}
	if err := sweepScratch(dir, "cbr0", valid); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".tmp-gone-1234", "corrupt", "live", "live:net1", "multi", "othernet", "subdir"}
	if !slices.Equal(left, want) {
		t.Errorf("left after GC:\n got  %v\n want %v", left, want)
	}

	if err := sweepScratch(filepath.Join(dir, "missing"), "cbr0", nil); err != nil {
		t.Errorf("missing dataDir: %v", err)
	}
}
