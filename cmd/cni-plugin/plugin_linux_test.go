package main

// End-to-end tests of the built binary that need no root: the delegates are
// Debian's host-local (which only writes files in its dataDir) and CNI's noop
// test plugin.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	noopdebug "github.com/containernetworking/cni/plugins/test/noop/debug"
)

func TestPluginVersion(t *testing.T) {
	n := newNode(t, "")
	o := n.run(call{cmd: "VERSION", bare: true}, "")
	o.mustSucceed(t, "VERSION")
	want := `{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`
	if strings.TrimSpace(o.stdout) != want {
		t.Errorf("VERSION\n got  %s\n want %s", o.stdout, want)
	}
}

// The saved file is exactly upstream's, for the spec's captured examples, and
// exactly what the delegate receives, for ADD and DEL. The delegate is the
// noop plugin standing in for bridge, controlled through CNI_ARGS so that the
// config stays the spec's.
func TestPluginSavesUpstreamConfig(t *testing.T) {
	for _, tt := range goldenCases {
		t.Run(tt.name, func(t *testing.T) {
			var in map[string]any
			if err := json.Unmarshal([]byte(tt.stdin), &in); err != nil {
				t.Fatal(err)
			}
			ver := in["cniVersion"].(string)
			p := newNoop(t, "bridge", noopdebug.Debug{ReportResult: fmt.Sprintf(`{"cniVersion":%q,"dns":{}}`, ver)})
			n := newNode(t, tt.env, p.dir)
			c := call{args: "DEBUG=" + p.debugFile}

			c.cmd = "ADD"
			o := n.run(c, n.conf(tt.stdin))
			o.mustSucceed(t, "ADD")
			var res map[string]any
			if err := json.Unmarshal([]byte(o.stdout), &res); err != nil || res["cniVersion"] != ver {
				t.Errorf("ADD printed %q (%v), want the delegate's %s result", o.stdout, err, ver)
			}
			if o.stderr != "" {
				t.Errorf("ADD wrote to stderr without %s: %q", debugEnv, o.stderr)
			}
			path := filepath.Join(n.dataDir, "ctr1")
			saved, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(saved) != tt.golden {
				t.Errorf("saved config\n got  %s\n want %s", saved, tt.golden)
			}
			if d := p.last(); d.Command != "ADD" || string(d.CmdArgs.StdinData) != tt.golden || d.CmdArgs.ContainerID != "ctr1" || d.CmdArgs.IfName != "eth0" {
				t.Errorf("delegate got %s for %s/%s with %s", d.Command, d.CmdArgs.ContainerID, d.CmdArgs.IfName, d.CmdArgs.StdinData)
			}
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("saved file mode %v %v, want 0600", st.Mode(), err)
			}
			st, err = os.Stat(n.dataDir)
			if err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("dataDir mode %v %v, want 0700", st.Mode(), err)
			}

			// DEL replays the saved bytes, without subnet.env.
			if err := os.Remove(n.subnetFile); err != nil {
				t.Fatal(err)
			}
			c.cmd = "DEL"
			n.run(c, n.conf(tt.stdin)).mustSucceed(t, "DEL")
			if d := p.last(); d.Command != "DEL" || string(d.CmdArgs.StdinData) != tt.golden {
				t.Errorf("delegate got %s with %s", d.Command, d.CmdArgs.StdinData)
			}
			if f := files(t, n.dataDir); len(f) != 0 {
				t.Errorf("after DEL dataDir holds %v", f)
			}

			// A second DEL succeeds without calling the delegate.
			p.set(noopdebug.Debug{})
			n.run(c, n.conf(tt.stdin)).mustSucceed(t, "second DEL")
			if d := p.last(); d.Command != "" {
				t.Errorf("second DEL called the delegate with %s", d.Command)
			}
		})
	}
}

func TestPluginDebugLog(t *testing.T) {
	tt := goldenCases[0]
	p := newNoop(t, "bridge", noopdebug.Debug{ReportResult: `{"cniVersion":"1.0.0"}`})
	n := newNode(t, tt.env, p.dir)
	o := n.run(call{cmd: "ADD", args: "DEBUG=" + p.debugFile, env: []string{debugEnv + "=1"}}, n.conf(tt.stdin))
	o.mustSucceed(t, "ADD")
	if !strings.Contains(o.stderr, "delegateAdd: netconf sent to delegate plugin") || !strings.Contains(o.stderr, `\"mtu\":1450`) {
		t.Errorf("stderr with %s=1 lacks the delegate config: %q", debugEnv, o.stderr)
	}
}

// host-local as the delegate allocates from FLANNEL_SUBNET; with the
// container-and-interface scratch key, a second flannel interface in the
// same container no longer overwrites the first one's state.
func TestPluginHostLocalDelegate(t *testing.T) {
	requireSystemPlugins(t, "host-local")
	n := newNode(t, ipv4Env, systemPluginDir)
	stdin := n.conf(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":"host-local"},"ipam":{"dataDir":%q}}`, n.ipamDir))

	o := n.run(call{cmd: "ADD"}, stdin)
	o.mustSucceed(t, "ADD eth0")
	var res struct {
		IPs    []struct{ Address, Gateway string }
		Routes []struct{ Dst string }
	}
	if err := json.Unmarshal([]byte(o.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address != "10.244.3.2/24" || res.IPs[0].Gateway != "10.244.3.1" {
		t.Errorf("ADD result IPs %+v, want 10.244.3.2/24 via 10.244.3.1", res.IPs)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst != "10.244.0.0/16" {
		t.Errorf("ADD result routes %+v, want 10.244.0.0/16", res.Routes)
	}
	n.run(call{cmd: "ADD", ifName: "net1"}, stdin).mustSucceed(t, "ADD net1")

	if got, want := files(t, n.dataDir), []string{"ctr1", "ctr1:net1"}; !slices.Equal(got, want) {
		t.Errorf("dataDir holds %v, want %v", got, want)
	}
	want := map[string]string{"10.244.3.2": "ctr1\r\neth0", "10.244.3.3": "ctr1\r\nnet1"}
	if got := n.reservations("hl"); !reflect.DeepEqual(got, want) {
		t.Errorf("reservations %v, want %v", got, want)
	}

	n.run(call{cmd: "DEL", ifName: "net1"}, stdin).mustSucceed(t, "DEL net1")
	if got := n.reservations("hl"); !reflect.DeepEqual(got, map[string]string{"10.244.3.2": "ctr1\r\neth0"}) {
		t.Errorf("after DEL net1, reservations %v", got)
	}
	n.run(call{cmd: "DEL"}, stdin).mustSucceed(t, "DEL eth0")
	for _, ifName := range []string{"eth0", "net1"} {
		n.run(call{cmd: "DEL", ifName: ifName}, stdin).mustSucceed(t, "second DEL "+ifName)
	}
	if got := n.reservations("hl"); len(got) != 0 {
		t.Errorf("after DEL, reservations %v", got)
	}
	if f := files(t, n.dataDir); len(f) != 0 {
		t.Errorf("after DEL, dataDir holds %v", f)
	}
}

// Bad input of every kind fails with a CNI error JSON that says what is wrong,
// and leaves neither a scratch file nor an address reservation behind.
func TestPluginAddFailures(t *testing.T) {
	requireSystemPlugins(t, "host-local")
	const hlConf = `{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":"host-local"}}`
	tests := []struct {
		name     string
		env      string // subnet.env content; "" = no file
		conf     string // base config, completed with the node's paths and ipam dataDir
		rawStdin string // sent as is instead of conf
		call     call
		code     uint
		msg      string // exact, after replacing {subnetFile}
		prefix   bool   // msg is a prefix
	}{
		{
			name: "malformed JSON", env: ipv4Env, rawStdin: `{"name":"hl","type":"flannel"`,
			code: 6, msg: "error unmarshall network config: ", prefix: true,
		},
		{
			name: "delegate with name", env: ipv4Env, conf: `{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":"host-local","name":"x"}}`,
			code: 999, msg: "'delegate' dictionary must not have 'name' field, it'll be set by flannel",
		},
		{
			name: "delegate with ipam", env: ipv4Env, conf: `{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":"host-local","ipam":{"type":"host-local"}}}`,
			code: 999, msg: "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel",
		},
		{
			name: "delegate type not a string", env: ipv4Env, conf: `{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":["bridge"]}}`,
			code: 999, msg: "'delegate' dictionary, if present, must have (string) 'type' field",
		},
		{
			name: "bad ipam routes", env: ipv4Env, conf: `{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":"host-local"},"ipam":{"routes":[{"dst":"10.0.0.0"}]}}`,
			code: 999, msg: "failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: invalid CIDR address: 10.0.0.0",
		},
		{
			name: "missing CNI variables", env: ipv4Env, conf: hlConf, call: call{bare: true},
			code: 4, msg: "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing",
		},
		{
			name: "missing subnet.env", conf: hlConf,
			code: 999, msg: "failed to load flannel 'subnet.env' file: open {subnetFile}: no such file or directory. Check the flannel pod log for this node.",
		},
		{
			name: "truncated subnet.env", env: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_M", conf: hlConf,
			code: 999, msg: "failed to load flannel 'subnet.env' file: {subnetFile} is missing FLANNEL_MTU, FLANNEL_IPMASQ. Check the flannel pod log for this node.",
		},
		{
			name: "subnet.env cut inside a CIDR", env: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.24", conf: hlConf,
			code: 999, msg: "failed to load flannel 'subnet.env' file: {subnetFile} line 2: FLANNEL_SUBNET: invalid CIDR address: 10.24. Check the flannel pod log for this node.",
		},
		{
			name: "delegate rejects the version", env: ipv4Env, conf: `{"cniVersion":"1.1.0","name":"hl","type":"flannel","delegate":{"type":"host-local"}}`,
			code: 1, msg: "incompatible CNI versions",
		},
		{
			name: "delegate not installed", env: ipv4Env, conf: `{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":"no-such-plugin"}}`,
			code: 999, msg: `failed to delegate add: failed to find plugin "no-such-plugin" in path [` + systemPluginDir + `]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, tt.env, systemPluginDir)
			stdin := tt.rawStdin
			if stdin == "" {
				var m map[string]any
				if err := json.Unmarshal([]byte(tt.conf), &m); err != nil {
					t.Fatal(err)
				}
				if m["ipam"] == nil {
					m["ipam"] = map[string]any{}
				}
				m["ipam"].(map[string]any)["dataDir"] = n.ipamDir
				b, _ := json.Marshal(m)
				stdin = n.conf(string(b))
			}
			c := tt.call
			c.cmd = "ADD"
			e := n.run(c, stdin).cniError(t, "ADD")
			want := strings.ReplaceAll(tt.msg, "{subnetFile}", n.subnetFile)
			if e.Code != tt.code || !tt.prefix && e.Msg != want || tt.prefix && !strings.HasPrefix(e.Msg, want) {
				t.Errorf("error code %d msg %q, want code %d msg %q", e.Code, e.Msg, tt.code, want)
			}
			if f := files(t, n.dataDir); len(f) != 0 {
				t.Errorf("scratch files left: %v", f)
			}
			if r := n.reservations("hl"); len(r) != 0 {
				t.Errorf("reservations left: %v", r)
			}
		})
	}
}

// A delegate ADD that fails after its own checks (here host-local with an
// exhausted range) is rolled back: its DEL runs and the scratch file goes;
// the other container's state is untouched.
func TestPluginAddRollback(t *testing.T) {
	requireSystemPlugins(t, "host-local")
	// A /30: host-local hands out .2 only (.1 is the gateway).
	n := newNode(t, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/30\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", systemPluginDir)
	stdin := n.conf(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"hl","type":"flannel","delegate":{"type":"host-local"},"ipam":{"dataDir":%q}}`, n.ipamDir))
	n.run(call{cmd: "ADD", cid: "first"}, stdin).mustSucceed(t, "ADD first")
	e := n.run(call{cmd: "ADD", cid: "second"}, stdin).cniError(t, "ADD second")
	if !strings.Contains(e.Msg, "no IP addresses available") {
		t.Errorf("error %q, want host-local's exhaustion error", e.Msg)
	}
	if got := files(t, n.dataDir); !slices.Equal(got, []string{"first"}) {
		t.Errorf("dataDir holds %v, want only first", got)
	}
	if got := n.reservations("hl"); !reflect.DeepEqual(got, map[string]string{"10.244.3.2": "first\r\neth0"}) {
		t.Errorf("reservations %v", got)
	}
}

// When the rollback DEL fails as well, the scratch file stays for the
// runtime's DEL, which keeps failing (and keeping it) until the delegate
// succeeds.
func TestPluginDelKeepsStateUntilDelegateSucceeds(t *testing.T) {
	p := newNoop(t, "fake", noopdebug.Debug{ReportError: "boom", ReportErrorCode: 999})
	n := newNode(t, ipv4Env, p.dir)
	stdin := n.conf(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","delegate":{"type":"fake","debugFile":%q,"commandLog":%q}}`, p.debugFile, p.commandLog))

	e := n.run(call{cmd: "ADD"}, stdin).cniError(t, "ADD")
	if e.Msg != "boom" {
		t.Errorf("ADD error %q, want the delegate's, unchanged", e.Msg)
	}
	if got := commandNames(p.commands()); got != "ADD,DEL" {
		t.Errorf("delegate calls %q, want ADD then the rollback DEL", got)
	}
	if got := files(t, n.dataDir); !slices.Equal(got, []string{"ctr1"}) {
		t.Fatalf("dataDir %v, want the scratch file kept after a failed rollback", got)
	}

	for range 2 {
		e = n.run(call{cmd: "DEL"}, stdin).cniError(t, "DEL")
		if e.Msg != "boom" {
			t.Errorf("DEL error %q, want the delegate's", e.Msg)
		}
		if got := files(t, n.dataDir); !slices.Equal(got, []string{"ctr1"}) {
			t.Fatalf("dataDir %v after a failed DEL, want the scratch file kept", got)
		}
	}
	p.set(noopdebug.Debug{})
	p.commands()
	n.run(call{cmd: "DEL"}, stdin).mustSucceed(t, "DEL")
	if got := commandNames(p.commands()); got != "DEL" {
		t.Errorf("delegate calls %q, want DEL", got)
	}
	if got := files(t, n.dataDir); len(got) != 0 {
		t.Errorf("dataDir %v after a good DEL", got)
	}
}

// A saved delegate config that is empty (a crash while an older plugin
// wrote it in place) or does not parse cannot be replayed. DEL succeeds, as
// upstream's does: an error would keep the pod Terminating for ever, since
// the kubelet retries DEL with the same file. The file is moved aside,
// under a name neither plugin reads as state, for the operator to inspect;
// the next DEL finds nothing and succeeds too. The delegate is not called:
// there is nothing to call it with.
func TestPluginDelUnusableScratch(t *testing.T) {
	for name, content := range map[string]string{
		"empty":     "",
		"truncated": `{"cniVersion":"1.0.0","name":"cbr0","ty`,
		"null":      "null",
		"no type":   `{"cniVersion":"1.0.0","name":"cbr0"}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := newNoop(t, "bridge", noopdebug.Debug{})
			n := newNode(t, "", p.dir)
			if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(n.dataDir, "ctr1")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			stdin := n.conf(`{"name":"cbr0","type":"flannel"}`)
			o := n.run(call{cmd: "DEL", args: "DEBUG=" + p.debugFile}, stdin)
			o.mustSucceed(t, "DEL")
			if !strings.Contains(o.stderr, path) {
				t.Errorf("stderr does not name the unusable file %s: %q", path, o.stderr)
			}
			if d := p.last(); d.Command != "" {
				t.Errorf("delegate called with %s", d.Command)
			}
			aside := filepath.Join(n.dataDir, unusablePrefix+"ctr1")
			if got := files(t, n.dataDir); !slices.Equal(got, []string{unusablePrefix + "ctr1"}) {
				t.Fatalf("dataDir %v, want only the file moved aside", got)
			}
			if b, err := os.ReadFile(aside); err != nil || string(b) != content {
				t.Errorf("moved-aside file %q %v, want the original bytes", b, err)
			}
			n.run(call{cmd: "DEL", args: "DEBUG=" + p.debugFile}, stdin).mustSucceed(t, "second DEL")
			if d := p.last(); d.Command != "" {
				t.Errorf("second DEL called the delegate with %s", d.Command)
			}
		})
	}
}

// Files in upstream's format and name are deleted by our DEL: eth0 fully;
// for another interface (upstream keyed only by container ID) the delegate
// DEL runs through the fallback and the file is left for GC.
func TestPluginDelUpstreamScratch(t *testing.T) {
	requireSystemPlugins(t, "host-local")
	n := newNode(t, "", systemPluginDir)
	// Upstream's rendering for {"name":"hl","cniVersion":"1.0.0","delegate":{"type":"host-local"},"ipam":{"dataDir":...}}.
	upstream := fmt.Sprintf(`{"cniVersion":"1.0.0","ipMasq":false,"ipam":{"dataDir":%q,"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"mtu":1450,"name":"hl","type":"host-local"}`, n.ipamDir)
	stdin := n.conf(`{"cniVersion":"1.0.0","name":"hl","type":"flannel"}`)
	for _, a := range []struct{ cid, ifName string }{{"up1", "eth0"}, {"up2", "net1"}} {
		// What upstream's ADD did: save, then run the delegate.
		if err := saveScratch(filepath.Join(n.dataDir, a.cid), []byte(upstream)); err != nil {
			t.Fatal(err)
		}
		runDelegate(t, systemPluginDir, "host-local", "ADD", a.cid, a.ifName, upstream)
	}
	if got := n.reservations("hl"); len(got) != 2 {
		t.Fatalf("reservations %v, want two", got)
	}
	n.run(call{cmd: "DEL", cid: "up1"}, stdin).mustSucceed(t, "DEL up1")
	n.run(call{cmd: "DEL", cid: "up2", ifName: "net1"}, stdin).mustSucceed(t, "DEL up2 net1")
	if got := n.reservations("hl"); len(got) != 0 {
		t.Errorf("reservations %v after DEL", got)
	}
	if got := files(t, n.dataDir); !slices.Equal(got, []string{"up2"}) {
		t.Errorf("dataDir %v, want only up2's file (the fallback never removes)", got)
	}
}

// runDelegate runs a system plugin directly, as upstream's plugin would.
func runDelegate(t *testing.T, dir, typ, cmd, cid, ifName, conf string) {
	t.Helper()
	c := exec.Command(filepath.Join(dir, typ))
	c.Env = []string{
		"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + cid, "CNI_IFNAME=" + ifName,
		"CNI_NETNS=/nonexistent/netns", "CNI_PATH=" + dir,
	}
	c.Stdin = strings.NewReader(conf)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", typ, cmd, err, out)
	}
}

// An upstream scratch file whose version the delegate rejects (upstream
// leaked these on failed ADDs) no longer makes every DEL fail.
func TestPluginDelVersionRejectedScratch(t *testing.T) {
	requireSystemPlugins(t, "host-local")
	n := newNode(t, "", systemPluginDir)
	leaked := fmt.Sprintf(`{"cniVersion":"1.1.0","ipMasq":false,"ipam":{"dataDir":%q,"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"mtu":1450,"name":"hl","type":"host-local"}`, n.ipamDir)
	if err := saveScratch(filepath.Join(n.dataDir, "ctr1"), []byte(leaked)); err != nil {
		t.Fatal(err)
	}
	o := n.run(call{cmd: "DEL"}, n.conf(`{"cniVersion":"1.0.0","name":"hl","type":"flannel"}`))
	o.mustSucceed(t, "DEL")
	if !strings.Contains(o.stderr, "counting it as done") {
		t.Errorf("no warning on stderr: %q", o.stderr)
	}
	if got := files(t, n.dataDir); len(got) != 0 {
		t.Errorf("dataDir %v", got)
	}
}

func TestPluginCheck(t *testing.T) {
	p := newNoop(t, "fake", noopdebug.Debug{ReportResult: `{"cniVersion":"1.0.0","ips":[{"address":"10.244.3.2/24","gateway":"10.244.3.1"}]}`})
	n := newNode(t, ipv4Env, p.dir)
	base := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","delegate":{"type":"fake","debugFile":%q,"commandLog":%q}}`, p.debugFile, p.commandLog)
	stdin := n.conf(base)
	o := n.run(call{cmd: "ADD"}, stdin)
	o.mustSucceed(t, "ADD")
	saved, err := os.ReadFile(filepath.Join(n.dataDir, "ctr1"))
	if err != nil {
		t.Fatal(err)
	}

	// CHECK gets the runtime's prevResult, which is what ADD printed.
	var withPrev map[string]any
	if err := json.Unmarshal([]byte(stdin), &withPrev); err != nil {
		t.Fatal(err)
	}
	var prev map[string]any
	if err := json.Unmarshal([]byte(o.stdout), &prev); err != nil {
		t.Fatal(err)
	}
	withPrev["prevResult"] = prev
	b, _ := json.Marshal(withPrev)
	p.commands()
	n.run(call{cmd: "CHECK"}, string(b)).mustSucceed(t, "CHECK")
	log := p.commands()
	if commandNames(log) != "CHECK" {
		t.Fatalf("delegate calls %q, want CHECK", commandNames(log))
	}
	var got, want map[string]any
	if err := json.Unmarshal(log[0].CmdArgs.StdinData, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(saved, &want); err != nil {
		t.Fatal(err)
	}
	want["prevResult"] = prev
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delegate CHECK config\n got  %v\n want %v", got, want)
	}

	// The delegate's verdict is passed on.
	p.set(noopdebug.Debug{ReportError: "eth0 has no address", ReportErrorCode: 999})
	if e := n.run(call{cmd: "CHECK"}, string(b)).cniError(t, "failing CHECK"); e.Msg != "eth0 has no address" {
		t.Errorf("CHECK error %q", e.Msg)
	}

	e := n.run(call{cmd: "CHECK", cid: "unknown"}, string(b)).cniError(t, "CHECK unknown")
	if e.Code != types.ErrUnknownContainer || !strings.Contains(e.Msg, "unknown") {
		t.Errorf("CHECK of an unknown container: code %d %q", e.Code, e.Msg)
	}
}

func TestPluginStatus(t *testing.T) {
	p := newNoop(t, "fake", noopdebug.Debug{})
	n := newNode(t, "", p.dir)
	stdin := n.conf(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"cbr0","type":"flannel","delegate":{"type":"fake","debugFile":%q,"commandLog":%q}}`, p.debugFile, p.commandLog))

	e := n.run(call{cmd: "STATUS", bare: true, env: []string{"CNI_PATH=" + p.dir}}, stdin).cniError(t, "STATUS without subnet.env")
	want := "failed to load flannel 'subnet.env' file: open " + n.subnetFile + ": no such file or directory. Check the flannel pod log for this node."
	if e.Code != types.ErrPluginNotAvailable || e.Msg != want {
		t.Errorf("STATUS: code %d %q, want code 50 %q", e.Code, e.Msg, want)
	}
	n.writeSubnetEnv("FLANNEL_NETWORK=10.244.0.0/16\n")
	if e := n.run(call{cmd: "STATUS", bare: true, env: []string{"CNI_PATH=" + p.dir}}, stdin).cniError(t, "STATUS incomplete"); e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, "is missing FLANNEL_SUBNET") {
		t.Errorf("STATUS with incomplete subnet.env: code %d %q", e.Code, e.Msg)
	}
	if len(p.commands()) != 0 {
		t.Error("delegate called while subnet.env is unusable")
	}

	n.writeSubnetEnv(ipv4Env)
	n.run(call{cmd: "STATUS", bare: true, env: []string{"CNI_PATH=" + p.dir}}, stdin).mustSucceed(t, "STATUS")
	if got := commandNames(p.commands()); got != "STATUS" {
		t.Errorf("delegate calls %q, want STATUS forwarded", got)
	}
	p.set(noopdebug.Debug{ReportError: "bridge broken", ReportErrorCode: types.ErrLimitedConnectivity})
	if e := n.run(call{cmd: "STATUS", bare: true, env: []string{"CNI_PATH=" + p.dir}}, stdin).cniError(t, "STATUS"); e.Code != types.ErrLimitedConnectivity || e.Msg != "bridge broken" {
		t.Errorf("delegate STATUS error not passed on: code %d %q", e.Code, e.Msg)
	}
}

func TestPluginGC(t *testing.T) {
	p := newNoop(t, "fake", noopdebug.Debug{})
	n := newNode(t, ipv4Env, p.dir)
	base := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"cbr0","type":"flannel","delegate":{"type":"fake","debugFile":%q,"commandLog":%q}}`, p.debugFile, p.commandLog)
	for _, name := range []string{"live", "live:net1", "gone", "gone:net1"} {
		if err := saveScratch(filepath.Join(n.dataDir, name), []byte(`{"cniVersion":"1.1.0","name":"cbr0","type":"fake"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := saveScratch(filepath.Join(n.dataDir, "othernet"), []byte(`{"name":"other","type":"fake"}`)); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(n.conf(base)), &m); err != nil {
		t.Fatal(err)
	}
	valid := []any{map[string]any{"containerID": "live", "ifname": "eth0"}, map[string]any{"containerID": "live", "ifname": "net1"}}
	m["cni.dev/valid-attachments"] = valid
	m["cni.dev/attachments"] = valid
	gcStdin, _ := json.Marshal(m)
	gc := call{cmd: "GC", bare: true, env: []string{"CNI_PATH=" + p.dir}}

	// A failing delegate GC: report it, remove nothing.
	p.set(noopdebug.Debug{ReportError: "ipam gc failed", ReportErrorCode: 999})
	if e := n.run(gc, string(gcStdin)).cniError(t, "GC"); e.Msg != "ipam gc failed" {
		t.Errorf("GC error %q", e.Msg)
	}
	if got := files(t, n.dataDir); len(got) != 5 {
		t.Errorf("files removed although the delegate GC failed: %v", got)
	}

	p.set(noopdebug.Debug{})
	p.commands()
	n.run(gc, string(gcStdin)).mustSucceed(t, "GC")
	log := p.commands()
	if commandNames(log) != "GC" {
		t.Fatalf("delegate calls %q, want GC", commandNames(log))
	}
	var sent map[string]any
	if err := json.Unmarshal(log[0].CmdArgs.StdinData, &sent); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sent["cni.dev/valid-attachments"], valid) || !reflect.DeepEqual(sent["cni.dev/attachments"], valid) {
		t.Errorf("delegate GC config lacks the attachments: %s", log[0].CmdArgs.StdinData)
	}
	if sent["name"] != "cbr0" || sent["ipam"] == nil {
		t.Errorf("delegate GC config is not the rendered delegate config: %s", log[0].CmdArgs.StdinData)
	}
	if got, want := files(t, n.dataDir), []string{"live", "live:net1", "othernet"}; !slices.Equal(got, want) {
		t.Errorf("after GC dataDir holds %v, want %v", got, want)
	}

	// GC needs a 1.1.0 config (checked by the CNI skeleton).
	m["cniVersion"] = "1.0.0"
	old, _ := json.Marshal(m)
	if e := n.run(gc, string(old)).cniError(t, "GC 1.0.0"); e.Msg != "config version does not allow GC" {
		t.Errorf("GC with 1.0.0: %q", e.Msg)
	}
}
