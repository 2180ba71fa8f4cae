package main

// Privileged tests: this test acts as the container runtime through libcni,
// with Debian's real bridge, host-local, portmap and loopback plugins and our
// built binary. Every case makes its own "host" and "pod" network namespaces
// and runs every plugin inside the host namespace (ip netns exec), so the
// bridge, veths and iptables rules never touch the root namespace.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/flannelng/flannel/internal/testns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testns.RequireRoot(t)
	requireSystemPlugins(t, "bridge", "host-local", "portmap", "loopback")
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace named <prefix>-<random> (testns:
// removed when the test ends), with IPv6 on and duplicate address detection
// off (addresses are usable at once; the namespaces are private, so there is
// nothing to collide with). It returns the name and a netlink handle in it.
func newNetns(t *testing.T, prefix string) (string, *netlink.Handle) {
	t.Helper()
	ns := testns.New(t, prefix)
	ipCmd(t, "netns", "exec", ns.Name, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return ns.Name, ns.Handle(t)
}

// hostNSExec is libcni's plugin runner, moved into the host namespace.
type hostNSExec struct {
	hostNS string
	logf   func(format string, args ...any) // gets the stderr of failed plugins
	version.PluginDecoder
}

func (e *hostNSExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.hostNS, pluginPath)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if e.logf != nil {
			e.logf("%s %s failed: %v\nstdout: %s\nstderr: %s", filepath.Base(pluginPath), cniCommand(environ), err, stdout.Bytes(), stderr.Bytes())
		}
		var cniErr types.Error
		if json.Unmarshal(stdout.Bytes(), &cniErr) == nil && cniErr.Msg != "" {
			return nil, &cniErr
		}
		return nil, fmt.Errorf("%s: %v: %s%s", filepath.Base(pluginPath), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func cniCommand(environ []string) string {
	for _, kv := range slices.Backward(environ) {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			return v
		}
	}
	return ""
}

func (e *hostNSExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// fakeRuntime is one fake node with one pod: its namespaces, files and the
// libcni setup of a container runtime.
type fakeRuntime struct {
	*node
	host, pod   string // namespace names
	hostH, podH *netlink.Handle
	cni         *libcni.CNIConfig
	rt          *libcni.RuntimeConf
	lo          *libcni.NetworkConfigList
}

func newRuntime(t *testing.T, subnetEnv string) *fakeRuntime {
	t.Helper()
	requireRoot(t)
	suffix := randomSuffix(t)
	r := &fakeRuntime{node: newNode(t, subnetEnv, testBinaries(t), systemPluginDir)}
	r.host, r.hostH = newNetns(t, "flcni-h")
	r.pod, r.podH = newNetns(t, "flcni-p")
	r.cni = libcni.NewCNIConfigWithCacheDir([]string{testBinaries(t), systemPluginDir}, filepath.Join(t.TempDir(), "cache"), &hostNSExec{hostNS: r.host, logf: t.Logf})
	r.rt = &libcni.RuntimeConf{
		ContainerID: "ctr-" + suffix,
		NetNS:       "/var/run/netns/" + r.pod,
		IfName:      "eth0",
		CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
		},
	}
	return r
}

// conflist is dist/10-flannel.conflist, as installed on nodes, with the
// given version and the plugin's files moved into the test's directories.
func (r *fakeRuntime) conflist(cniVersion string, ipamRoutes []map[string]string, withPortmap bool) *libcni.NetworkConfigList {
	r.t.Helper()
	b, err := os.ReadFile("../../dist/10-flannel.conflist")
	if err != nil {
		r.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		r.t.Fatalf("dist/10-flannel.conflist: %v", err)
	}
	m["cniVersion"] = cniVersion
	flannel := m["plugins"].([]any)[0].(map[string]any)
	if !withPortmap {
		m["plugins"] = m["plugins"].([]any)[:1]
	}
	flannel["subnetFile"] = r.subnetFile
	flannel["dataDir"] = r.dataDir
	ipam := map[string]any{"dataDir": r.ipamDir}
	if ipamRoutes != nil {
		ipam["routes"] = ipamRoutes
	}
	flannel["ipam"] = ipam
	b, _ = json.Marshal(m)
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		r.t.Fatal(err)
	}
	return list
}

// loopbackUp does what runtimes do before the pod network.
func (r *fakeRuntime) loopbackUp(cniVersion string) {
	r.t.Helper()
	list, err := libcni.ConfListFromBytes(fmt.Appendf(nil, `{"cniVersion":%q,"name":"lo","plugins":[{"type":"loopback"}]}`, cniVersion))
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.cni.AddNetworkList(context.Background(), list, r.rt); err != nil {
		r.t.Fatalf("loopback ADD: %v", err)
	}
	r.lo = list
}

// veths lists the veth links in the host namespace.
func (r *fakeRuntime) veths() []string {
	r.t.Helper()
	links, err := r.hostH.LinkList()
	if err != nil {
		r.t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		if l.Type() == "veth" {
			names = append(names, l.Attrs().Name)
		}
	}
	return names
}

// podLink returns the pod's interface, or nil.
func (r *fakeRuntime) podLink(name string) netlink.Link {
	l, err := r.podH.LinkByName(name)
	if err != nil {
		return nil
	}
	return l
}

// firewallMentions reports whether the host namespace's iptables or
// ip6tables rules mention s (bridge and portmap tag rules with the
// container ID).
func (r *fakeRuntime) firewallMentions(s string) bool {
	r.t.Helper()
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if strings.Contains(ipCmd(r.t, "netns", "exec", r.host, save), s) {
			return true
		}
	}
	return false
}

// assertClean checks that nothing of the pod's attachment is left.
func (r *fakeRuntime) assertClean(what string) {
	r.t.Helper()
	if l := r.podLink("eth0"); l != nil {
		r.t.Errorf("%s: pod still has eth0", what)
	}
	if v := r.veths(); len(v) != 0 {
		r.t.Errorf("%s: host namespace still has veths %v", what, v)
	}
	if res := r.reservations("cbr0"); len(res) != 0 {
		r.t.Errorf("%s: host-local reservations left: %v", what, res)
	}
	if f := files(r.t, r.dataDir); len(f) != 0 {
		r.t.Errorf("%s: scratch files left: %v", what, f)
	}
	if r.firewallMentions(r.rt.ContainerID) {
		r.t.Errorf("%s: iptables rules for %s left", what, r.rt.ContainerID)
	}
}

type family struct {
	name    string
	env     string
	subnets []netip.Prefix // pod addresses must be in these
	routes  []string       // pod routes expected, with the gateway of their family
}

var families = []family{
	{
		name:    "ipv4",
		env:     "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=false\n",
		subnets: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")},
		routes:  []string{"10.244.0.0/16 via 10.244.3.1", "0.0.0.0/0 via 10.244.3.1"},
	},
	{
		name:    "ipv6",
		env:     "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=false\n",
		subnets: []netip.Prefix{netip.MustParsePrefix("fd00:10:244:3::/64")},
		routes:  []string{"fd00:10:244::/56 via fd00:10:244:3::1", "::/0 via fd00:10:244:3::1"},
	},
	{
		name:    "dual",
		env:     "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=false\n",
		subnets: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24"), netip.MustParsePrefix("fd00:10:244:3::/64")},
		routes:  []string{"10.244.0.0/16 via 10.244.3.1", "0.0.0.0/0 via 10.244.3.1", "fd00:10:244::/56 via fd00:10:244:3::1", "::/0 via fd00:10:244:3::1"},
	},
}

// podRoutes renders the pod's eth0 routes that have a gateway as "dst via gw".
func (r *fakeRuntime) podRoutes() []string {
	r.t.Helper()
	l := r.podLink("eth0")
	if l == nil {
		r.t.Fatal("pod has no eth0")
	}
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := r.podH.RouteList(l, fam)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, rt := range routes {
			if rt.Gw == nil {
				continue
			}
			dst := "0.0.0.0/0"
			if fam == netlink.FAMILY_V6 {
				dst = "::/0"
			}
			if rt.Dst != nil {
				dst = rt.Dst.String()
			}
			out = append(out, dst+" via "+rt.Gw.String())
		}
	}
	return out
}

func TestPrivilegedLifecycle(t *testing.T) {
	requireRoot(t)
	for _, ver := range []string{"0.3.1", "0.4.0", "1.0.0"} {
		for _, fam := range families {
			t.Run(ver+"/"+fam.name, func(t *testing.T) {
				testLifecycle(t, ver, fam)
			})
		}
	}
}

func testLifecycle(t *testing.T, ver string, fam family) {
	ctx := context.Background()
	r := newRuntime(t, fam.env)
	list := r.conflist(ver, nil, true)
	r.loopbackUp(ver)

	res, err := r.cni.AddNetworkList(ctx, list, r.rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	result, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatalf("result %v: %v", res, err)
	}
	var addrs []netip.Prefix
	for _, ipc := range result.IPs {
		addrs = append(addrs, toPrefix(ipc.Address))
	}
	if len(addrs) != len(fam.subnets) {
		t.Fatalf("result addresses %v, want one in each of %v", addrs, fam.subnets)
	}
	for i, sn := range fam.subnets {
		if !sn.Contains(addrs[i].Addr()) || addrs[i].Masked() != sn {
			t.Errorf("address %s not from FLANNEL_SUBNET %s", addrs[i], sn)
		}
	}

	eth0 := r.podLink("eth0")
	if eth0 == nil {
		t.Fatal("pod has no eth0 after ADD")
	}
	if eth0.Attrs().MTU != 1410 {
		t.Errorf("pod eth0 MTU %d, want FLANNEL_MTU 1410", eth0.Attrs().MTU)
	}
	podAddrs, err := r.podH.AddrList(eth0, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var have []netip.Prefix
	for _, a := range podAddrs {
		have = append(have, toPrefix(*a.IPNet))
	}
	for _, want := range addrs {
		if !slices.Contains(have, want) {
			t.Errorf("pod eth0 lacks %s (has %v)", want, have)
		}
	}
	gotRoutes := r.podRoutes()
	for _, want := range fam.routes {
		if !slices.Contains(gotRoutes, want) {
			t.Errorf("pod route %q missing; pod routes %v", want, gotRoutes)
		}
	}
	if v := r.veths(); len(v) != 1 {
		t.Errorf("host namespace veths %v, want one", v)
	}
	if res := r.reservations("cbr0"); len(res) != len(fam.subnets) {
		t.Errorf("host-local reservations %v", res)
	}
	if f := files(t, r.dataDir); !slices.Equal(f, []string{r.rt.ContainerID}) {
		t.Errorf("scratch files %v, want upstream's name %s", f, r.rt.ContainerID)
	}
	if !r.firewallMentions(r.rt.ContainerID) {
		t.Errorf("no masquerade or port-mapping rules for %s (FLANNEL_IPMASQ=false, so the bridge masquerades)", r.rt.ContainerID)
	}

	if ver != "0.3.1" { // CHECK exists from 0.4.0 on
		// CHECK our plugin alone: Debian's portmap 1.1.1 fails its own CHECK
		// under iptables-nft (it looks for its IPv4 rules in the IPv6 table,
		// among others). Same list name, so libcni finds the cached result.
		flannelOnly := *list
		flannelOnly.Plugins = list.Plugins[:1]
		if err := r.cni.CheckNetworkList(ctx, &flannelOnly, r.rt); err != nil {
			t.Errorf("CHECK: %v", err)
		}
	}

	// DEL works while the daemon is away: it only replays the saved config.
	if err := os.Remove(r.subnetFile); err != nil {
		t.Fatal(err)
	}
	if err := r.cni.DelNetworkList(ctx, list, r.rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	r.assertClean("after DEL")
	if err := r.cni.DelNetworkList(ctx, list, r.rt); err != nil {
		t.Errorf("second DEL: %v", err)
	}
	if err := r.cni.DelNetworkList(ctx, r.lo, r.rt); err != nil {
		t.Errorf("loopback DEL: %v", err)
	}
}

func toPrefix(n net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// A bridge ADD that fails after creating the veth (a route whose gateway is
// not on-link) is rolled back by our plugin: the veth goes too.
func TestPrivilegedAddRollback(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, families[0].env)
	list := r.conflist("1.0.0", []map[string]string{{"dst": "192.0.2.0/24", "gw": "198.51.100.1"}}, true)
	if _, err := r.cni.AddNetworkList(ctx, list, r.rt); err == nil {
		t.Fatal("ADD with an unreachable route gateway succeeded")
	} else if !strings.Contains(err.Error(), "unreachable") {
		t.Logf("ADD failed with %v", err)
	}
	r.assertClean("after the failed ADD")
	// The runtime's cleanup DEL after a failed ADD succeeds.
	if err := r.cni.DelNetworkList(ctx, list, r.rt); err != nil {
		t.Errorf("DEL after failed ADD: %v", err)
	}
}

// cniVersion 1.1.0 with Debian's bridge (1.0.0 at most) fails cleanly:
// upstream leaks the scratch file here.
func TestPrivilegedAddVersionMismatch(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, families[0].env)
	// Without portmap, which refuses 1.1.0 as well and would fail the
	// runtime's DEL before it reaches our plugin.
	list := r.conflist("1.1.0", nil, false)
	_, err := r.cni.AddNetworkList(ctx, list, r.rt)
	if err == nil || !strings.Contains(err.Error(), "incompatible CNI versions") {
		t.Fatalf("ADD: %v, want incompatible CNI versions", err)
	}
	r.assertClean("after the failed ADD")
	if err := r.cni.DelNetworkList(ctx, list, r.rt); err != nil {
		t.Errorf("DEL after failed ADD: %v", err)
	}
}

// A pod set up by upstream's plugin (scratch file named by container ID,
// upstream's JSON) is deleted by ours.
func TestPrivilegedDelUpstreamScratch(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, families[0].env)
	list := r.conflist("1.0.0", nil, true)
	// Upstream's rendering for this conflist and subnet.env, byte for byte.
	upstream := fmt.Sprintf(`{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":true,"ipam":{"dataDir":%q,"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1410,"name":"cbr0","type":"bridge"}`, r.ipamDir)
	if err := saveScratch(filepath.Join(r.dataDir, r.rt.ContainerID), []byte(upstream)); err != nil {
		t.Fatal(err)
	}
	exec := &hostNSExec{hostNS: r.host, logf: t.Logf}
	args := &invoke.Args{Command: "ADD", ContainerID: r.rt.ContainerID, NetNS: r.rt.NetNS, IfName: "eth0", Path: systemPluginDir}
	if _, err := invoke.ExecPluginWithResult(ctx, filepath.Join(systemPluginDir, "bridge"), []byte(upstream), args, exec); err != nil {
		t.Fatalf("bridge ADD: %v", err)
	}
	if r.podLink("eth0") == nil || len(r.reservations("cbr0")) != 1 {
		t.Fatal("the upstream-style ADD did not set up the pod")
	}
	if err := r.cni.DelNetworkList(ctx, list, r.rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	r.assertClean("after DEL")
}

// A cni0 left with the address of a subnet the node no longer holds: the
// plugin passes forceAddress, the pod comes up, the bridge gets the
// current gateway. Upstream fails every ADD with `"cni0" already has an IP
// address different from 10.244.3.1/24` until cni0 is deleted by hand.
func TestPrivilegedStaleBridgeAddress(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, families[0].env)
	ipCmd(t, "-n", r.host, "link", "add", "cni0", "type", "bridge")
	ipCmd(t, "-n", r.host, "addr", "add", "10.244.9.1/24", "dev", "cni0")
	ipCmd(t, "-n", r.host, "link", "set", "cni0", "up")
	list := r.conflist("1.0.0", nil, false)
	r.loopbackUp("1.0.0")
	if _, err := r.cni.AddNetworkList(ctx, list, r.rt); err != nil {
		t.Fatalf("ADD with a stale cni0 address: %v", err)
	}
	br, err := r.hostH.LinkByName("cni0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := r.hostH.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, a := range addrs {
		have = append(have, a.IPNet.String())
	}
	if len(have) != 1 || have[0] != "10.244.3.1/24" {
		t.Errorf("cni0 addresses %v, want only the current gateway 10.244.3.1/24", have)
	}
	// The saved config says what was sent.
	saved, err := os.ReadFile(filepath.Join(r.dataDir, scratchName(r.rt.ContainerID, r.rt.IfName)))
	if err != nil || !strings.Contains(string(saved), `"forceAddress":true`) {
		t.Errorf("saved delegate config (%v): %s", err, saved)
	}
	// A second pod on the now-correct bridge gets no forceAddress.
	rt2 := *r.rt
	rt2.ContainerID += "-2"
	pod2, _ := newNetns(t, "flcni-p2")
	rt2.NetNS = "/var/run/netns/" + pod2
	if _, err := r.cni.AddNetworkList(ctx, list, &rt2); err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	saved2, _ := os.ReadFile(filepath.Join(r.dataDir, scratchName(rt2.ContainerID, rt2.IfName)))
	if strings.Contains(string(saved2), "forceAddress") {
		t.Errorf("forceAddress passed although cni0 was in order: %s", saved2)
	}
	for _, rt := range []*libcni.RuntimeConf{&rt2, r.rt} {
		if err := r.cni.DelNetworkList(ctx, list, rt); err != nil {
			t.Errorf("DEL %s: %v", rt.ContainerID, err)
		}
	}
}
