package main

// Helpers for tests that run the built plugin binary the way a runtime does:
// CNI_* environment, config on stdin, result or error JSON on stdout.

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	noopdebug "github.com/containernetworking/cni/plugins/test/noop/debug"
)

const systemPluginDir = "/usr/lib/cni" // Debian's containernetworking-plugins

func requireSystemPlugins(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(systemPluginDir, name)); err != nil {
			t.Skipf("needs the %s plugin in %s: %v", name, systemPluginDir, err)
		}
	}
}

// node is one fake node's files: subnet.env, our dataDir, host-local's
// dataDir, and the CNI_PATH the plugin gets.
type node struct {
	t          *testing.T
	subnetFile string
	dataDir    string
	ipamDir    string
	cniPath    string
}

func newNode(t *testing.T, subnetEnv string, pluginDirs ...string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{
		t:          t,
		subnetFile: filepath.Join(dir, "subnet.env"),
		dataDir:    filepath.Join(dir, "flannel"),
		ipamDir:    filepath.Join(dir, "ipam"),
		cniPath:    strings.Join(pluginDirs, ":"),
	}
	if subnetEnv != "" {
		n.writeSubnetEnv(subnetEnv)
	}
	return n
}

func (n *node) writeSubnetEnv(content string) {
	n.t.Helper()
	if err := os.WriteFile(n.subnetFile, []byte(content), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// conf completes a stdin config with this node's subnetFile and dataDir.
func (n *node) conf(base string) string {
	n.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		n.t.Fatalf("test config %s: %v", base, err)
	}
	m["subnetFile"] = n.subnetFile
	m["dataDir"] = n.dataDir
	b, err := json.Marshal(m)
	if err != nil {
		n.t.Fatal(err)
	}
	return string(b)
}

// call is one plugin invocation. Empty fields get defaults.
type call struct {
	cmd    string
	cid    string
	ifName string
	netns  string
	args   string   // CNI_ARGS
	env    []string // more variables
	bare   bool     // only CNI_COMMAND, as for the missing-variables case
}

type outcome struct {
	stdout, stderr string
	exitCode       int
}

func (n *node) run(c call, stdin string) outcome {
	n.t.Helper()
	if c.cid == "" {
		c.cid = "ctr1"
	}
	if c.ifName == "" {
		c.ifName = "eth0"
	}
	if c.netns == "" {
		// The CNI skeleton accepts a netns path that does not exist;
		// host-local and noop never enter it.
		c.netns = "/nonexistent/netns"
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=" + c.cmd}
	if !c.bare {
		env = append(env,
			"CNI_CONTAINERID="+c.cid,
			"CNI_NETNS="+c.netns,
			"CNI_IFNAME="+c.ifName,
			"CNI_PATH="+n.cniPath,
			"CNI_ARGS="+c.args,
		)
	}
	env = append(env, c.env...)
	cmd := exec.Command(filepath.Join(testBinaries(n.t), "flannel"))
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	o := outcome{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			n.t.Fatalf("run plugin: %v", err)
		}
		o.exitCode = ee.ExitCode()
	}
	return o
}

func (o outcome) mustSucceed(t *testing.T, what string) {
	t.Helper()
	if o.exitCode != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, o.exitCode, o.stdout, o.stderr)
	}
}

// cniError returns the error JSON of a failed call.
func (o outcome) cniError(t *testing.T, what string) types.Error {
	t.Helper()
	if o.exitCode == 0 {
		t.Fatalf("%s succeeded, want an error\nstdout: %s", what, o.stdout)
	}
	var e types.Error
	if err := json.Unmarshal([]byte(o.stdout), &e); err != nil || e.Msg == "" {
		t.Fatalf("%s: stdout is not a CNI error (%v): %q", what, err, o.stdout)
	}
	return e
}

// files lists the names in dir; a missing dir is empty.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// reservations lists host-local's reserved addresses of network name.
func (n *node) reservations(name string) map[string]string {
	n.t.Helper()
	out := map[string]string{}
	dir := filepath.Join(n.ipamDir, name)
	for _, f := range files(n.t, dir) {
		if f == "lock" || strings.HasPrefix(f, "last_reserved_ip") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			n.t.Fatal(err)
		}
		out[f] = string(b)
	}
	return out
}

// noop is CNI's test-double plugin linked into its own plugin directory
// under a chosen type name.
type noop struct {
	t          *testing.T
	dir        string
	debugFile  string
	commandLog string
}

func newNoop(t *testing.T, typ string, d noopdebug.Debug) *noop {
	t.Helper()
	dir := t.TempDir()
	p := &noop{t: t, dir: filepath.Join(dir, "bin"), debugFile: filepath.Join(dir, "debug.json"), commandLog: filepath.Join(dir, "commands.json")}
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(testBinaries(t), "noop"), filepath.Join(p.dir, typ)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.commandLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.set(d)
	return p
}

func (p *noop) set(d noopdebug.Debug) {
	p.t.Helper()
	if err := d.WriteDebug(p.debugFile); err != nil {
		p.t.Fatal(err)
	}
}

func (p *noop) last() *noopdebug.Debug {
	p.t.Helper()
	d, err := noopdebug.ReadDebug(p.debugFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return d
}

// commands returns the commands logged since the last call, and clears
// the log.
func (p *noop) commands() noopdebug.CmdLog {
	p.t.Helper()
	b, err := os.ReadFile(p.commandLog)
	if err != nil {
		p.t.Fatal(err)
	}
	var log noopdebug.CmdLog
	if len(b) > 0 {
		if err := json.Unmarshal(b, &log); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := os.WriteFile(p.commandLog, nil, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return log
}

func commandNames(log noopdebug.CmdLog) string {
	var s []string
	for _, e := range log {
		s = append(s, e.Command)
	}
	return strings.Join(s, ",")
}
