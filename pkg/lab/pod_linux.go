//go:build linux

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/flannelng/flannel/pkg/nldump"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Pod is a network namespace wired into its host's cni0 bridge.
type Pod struct {
	Name string
	NS   string
	Host *Host
	IP   netip.Addr // IPv4 address on eth0, if the host has an IPv4 subnet
	IPv6 netip.Addr // IPv6 address on eth0, if the host has an IPv6 subnet

	viaCNI   bool
	cniList  *libcni.NetworkConfigList
	hostVeth string // hand-wired pods: the host end of the veth
}

const (
	podBridge = "cni0"
	// systemCNIDir is where Debian's containernetworking-plugins live;
	// searched after the directory of Binaries.CNIPlugin.
	systemCNIDir = "/usr/lib/cni"
)

var podNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,11}$`)

// AddPod creates the namespace <prefix>-<host>-<name> and wires it into h.
// With Binaries.CNIPlugin set it runs the flannel CNI plugin (and through it
// the bridge and host-local plugins) inside the host namespace, as a
// container runtime would; otherwise it wires the pod by hand the way the
// bridge plugin would. Either way the host's subnet.env must exist, so add
// pods after flanneld wrote it.
func (l *Lab) AddPod(ctx context.Context, h *Host, name string) (*Pod, error) {
	if !podNameRE.MatchString(name) {
		return nil, fmt.Errorf("pod name %q: want 1 to 12 lower-case letters, digits or '-'", name)
	}
	h.podMu.Lock()
	defer h.podMu.Unlock()
	p := &Pod{Name: name, NS: h.NS + "-" + name, Host: h, viaCNI: l.bin.CNIPlugin != ""}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab is closed")
	}
	for _, q := range l.pods {
		if q.NS == p.NS {
			l.mu.Unlock()
			return nil, fmt.Errorf("pod %s already exists on %s", name, h.Name)
		}
	}
	// Registered before it exists, so that Close removes a half-built pod.
	l.pods = append(l.pods, p)
	l.mu.Unlock()

	err := addNS(ctx, p.NS)
	if err == nil {
		if p.viaCNI {
			err = l.addPodCNI(ctx, p)
		} else {
			err = l.addPodByHand(p)
		}
	}
	if err != nil {
		err = fmt.Errorf("add pod %s on %s: %w", name, h.Name, err)
		if derr := l.removePod(p); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	l.logf("lab %s: pod %s on %s: %s", l.prefix, name, h.Name, joinAddrs(p.IP, p.IPv6))
	l.saveState()
	return p, nil
}

// DelPod removes a pod: through the CNI plugin's DEL if AddPod used it,
// then its namespace.
func (l *Lab) DelPod(ctx context.Context, p *Pod) error {
	p.Host.podMu.Lock()
	defer p.Host.podMu.Unlock()
	var errs []error
	if p.viaCNI && p.cniList != nil {
		if err := l.cniConfig(p.Host).DelNetworkList(ctx, p.cniList, podRuntimeConf(p)); err != nil {
			errs = append(errs, fmt.Errorf("cni DEL: %w", err))
		}
	}
	if err := l.removePod(p); err != nil {
		errs = append(errs, err)
	}
	l.saveState()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete pod %s on %s: %w", p.Name, p.Host.Name, err)
	}
	return nil
}

// Pods returns every pod, in the order they were added.
func (l *Lab) Pods() []*Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Pod(nil), l.pods...)
}

func (l *Lab) removePod(p *Pod) error {
	var errs []error
	if p.hostVeth != "" {
		// The namespace is freed asynchronously; deleting the host end now
		// frees the name for a pod of the same name at once.
		err := withHandle(p.Host.NS, func(h *netlink.Handle) error {
			link, err := h.LinkByName(p.hostVeth)
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			if err != nil {
				return err
			}
			return h.LinkDel(link)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", p.hostVeth, err))
		}
	}
	if err := deleteNS(p.NS); err != nil {
		errs = append(errs, err)
	}
	l.mu.Lock()
	keep := l.pods[:0]
	for _, q := range l.pods {
		if q != p {
			keep = append(keep, q)
		}
	}
	l.pods = keep
	l.mu.Unlock()
	return errors.Join(errs...)
}

// addPodByHand does what the bridge plugin with host-local IPAM would:
// cni0 holds the subnet's first address, the pod gets the next free one and
// a default route via cni0.
func (l *Lab) addPodByHand(p *Pod) error {
	h := p.Host
	env, err := ReadSubnetEnv(h.SubnetFile())
	if err != nil {
		return err
	}
	h.nextPod++
	idx := h.nextPod // .1 is the bridge
	if env.Subnet.IsValid() {
		if p.IP, err = nthAddr(env.Subnet, idx); err != nil {
			return fmt.Errorf("pod address: %w", err)
		}
	}
	if env.Subnet6.IsValid() {
		if p.IPv6, err = nthAddr(env.Subnet6, idx); err != nil {
			return fmt.Errorf("pod address: %w", err)
		}
	}
	podNS, err := netns.GetFromName(p.NS)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", p.NS, err)
	}
	defer podNS.Close()
	p.hostVeth = "vp" + p.Name
	err = withHandle(h.NS, func(hh *netlink.Handle) error {
		br, err := ensurePodBridge(hh, env)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: p.hostVeth, MTU: env.MTU},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(podNS),
		}
		if err := hh.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s (peer eth0 in %s): %w", p.hostVeth, p.NS, err)
		}
		if err := hh.LinkSetMaster(veth, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", p.hostVeth, podBridge, err)
		}
		if err := hh.LinkSetUp(veth); err != nil {
			return fmt.Errorf("set %s up: %w", p.hostVeth, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	return withHandle(p.NS, func(ph *netlink.Handle) error {
		eth0, err := ph.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0: %w", err)
		}
		if p.IP.IsValid() {
			if err := addAddr(ph, eth0, netip.PrefixFrom(p.IP, env.Subnet.Bits())); err != nil {
				return err
			}
		}
		if p.IPv6.IsValid() {
			if err := addAddr(ph, eth0, netip.PrefixFrom(p.IPv6, env.Subnet6.Bits())); err != nil {
				return err
			}
		}
		if err := ph.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("set eth0 up: %w", err)
		}
		if p.IP.IsValid() {
			if err := addDefaultRoute(ph, eth0, env.Gateway); err != nil {
				return err
			}
		}
		if p.IPv6.IsValid() {
			if err := addDefaultRoute(ph, eth0, env.Gateway6); err != nil {
				return err
			}
		}
		return nil
	})
}

// ensurePodBridge makes cni0 exist, be up and hold the gateway addresses of
// env.
func ensurePodBridge(h *netlink.Handle, env SubnetEnv) (netlink.Link, error) {
	br, err := h.LinkByName(podBridge)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		nb := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: podBridge, MTU: env.MTU}}
		if err := h.LinkAdd(nb); err != nil {
			return nil, fmt.Errorf("add bridge %s: %w", podBridge, err)
		}
		br, err = h.LinkByName(podBridge)
	}
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", podBridge, err)
	}
	have, err := nldump.Retry("list addresses of "+podBridge, func() ([]netlink.Addr, error) {
		return h.AddrList(br, netlink.FAMILY_ALL)
	})
	if err != nil {
		return nil, err
	}
	want := []netip.Prefix{}
	if env.Subnet.IsValid() {
		want = append(want, netip.PrefixFrom(env.Gateway, env.Subnet.Bits()))
	}
	if env.Subnet6.IsValid() {
		want = append(want, netip.PrefixFrom(env.Gateway6, env.Subnet6.Bits()))
	}
next:
	for _, w := range want {
		for _, a := range have {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == w.Addr() {
				continue next
			}
		}
		if err := addAddr(h, br, w); err != nil {
			return nil, err
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set %s up: %w", podBridge, err)
	}
	return br, nil
}

// addPodCNI runs the flannel CNI plugin for the pod. The plugins execute
// inside the host namespace, as they would on a real node, so the bridge
// and the host end of the veth land there.
func (l *Lab) addPodCNI(ctx context.Context, p *Pod) error {
	h := p.Host
	plugin := map[string]any{
		"type":       filepath.Base(l.bin.CNIPlugin),
		"subnetFile": h.SubnetFile(),
		"dataDir":    filepath.Join(h.Dir, "cni-flannel"),
		"ipam":       map[string]any{"dataDir": filepath.Join(h.Dir, "cni-ipam")},
		"delegate":   map[string]any{"hairpinMode": true, "isDefaultGateway": true},
	}
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "cbr0",
		"plugins":    []any{plugin},
	})
	if err != nil {
		return err
	}
	list, err := libcni.NetworkConfFromBytes(conf)
	if err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	p.cniList = list
	res, err := l.cniConfig(h).AddNetworkList(ctx, list, podRuntimeConf(p))
	if err != nil {
		return fmt.Errorf("cni ADD: %w", err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("cni result: %w", err)
	}
	for _, ipc := range r.IPs {
		if ipc.Interface != nil && (*ipc.Interface < 0 || *ipc.Interface >= len(r.Interfaces) || r.Interfaces[*ipc.Interface].Sandbox == "") {
			continue // not the pod's interface
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		switch {
		case a.Is4() && !p.IP.IsValid():
			p.IP = a
		case a.Is6() && !p.IPv6.IsValid():
			p.IPv6 = a
		}
	}
	if !p.IP.IsValid() && !p.IPv6.IsValid() {
		return fmt.Errorf("cni result has no pod address: %s", r)
	}
	return nil
}

func podRuntimeConf(p *Pod) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.NS,
		NetNS:       filepath.Join(netnsDir, p.NS),
		IfName:      "eth0",
	}
}

func (l *Lab) cniConfig(h *Host) *libcni.CNIConfig {
	paths := []string{filepath.Dir(l.bin.CNIPlugin), systemCNIDir}
	return libcni.NewCNIConfigWithCacheDir(paths, filepath.Join(l.dir, "cni-cache"), &nsExec{ns: h.NS, logPath: filepath.Join(h.Dir, "cni.log")})
}

// nsExec runs CNI plugins inside a host namespace with `ip netns exec`; a
// delegate the plugin runs (bridge, host-local) inherits the namespace.
// Each run's stderr is appended to logPath.
type nsExec struct {
	version.PluginDecoder
	ns      string
	logPath string
}

func (e *nsExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, "ip", "netns", "exec", e.ns, pluginPath)
	c.Env = environ
	c.Stdin = bytes.NewReader(stdin)
	c.Stdout = &stdout
	c.Stderr = &stderr
	c.WaitDelay = time.Second
	err := c.Run()
	e.log(pluginPath, environ, &stderr)
	if err != nil {
		// A plugin reports failure as CNI error JSON on stdout.
		var te types.Error
		if json.Unmarshal(stdout.Bytes(), &te) == nil && (te.Code != 0 || te.Msg != "") {
			return nil, &te
		}
		return nil, fmt.Errorf("%s in %s: %w: %s", filepath.Base(pluginPath), e.ns, err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	return stdout.Bytes(), nil
}

func (e *nsExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (e *nsExec) log(pluginPath string, environ []string, stderr *bytes.Buffer) {
	f, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	var cmd string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	fmt.Fprintf(f, "==== lab: %s %s %s\n", time.Now().Format(time.RFC3339Nano), filepath.Base(pluginPath), cmd)
	_, _ = f.Write(stderr.Bytes())
}

func joinAddrs(as ...netip.Addr) string {
	var out []string
	for _, a := range as {
		if a.IsValid() {
			out = append(out, a.String())
		}
	}
	return strings.Join(out, " ")
}
