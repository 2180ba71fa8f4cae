//go:build linux

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
)

// Options describe a lab.
type Options struct {
	Hosts    int      // flannel hosts to create at once (h1..hN); more with AddHost
	IPv6     bool     // also give nodes IPv6 underlay addresses (fd00:30::/64)
	Dir      string   // working dir for logs, subnet files, etcd data; default: a new temp dir, removed by Close
	Binaries Binaries // programs the lab runs; only the ones used need to be set
	Logf     func(format string, args ...any)

	// Prefix names every namespace of the lab (<Prefix>-fab, <Prefix>-h1,
	// ...). Default: "fl" and 6 random hex digits. New refuses a prefix
	// that namespaces already use.
	Prefix string
	// Detached lets the lab's processes outlive this program (flannel-lab
	// up). Otherwise they get SIGKILL when the program dies, so a test
	// killed by its timeout leaves no daemons behind.
	Detached bool
}

// Binaries are paths of the programs the lab runs.
type Binaries struct {
	Flanneld  string // cmd/flanneld
	LabEtcd   string // cmd/lab-etcd
	CNIPlugin string // cmd/cni-plugin, named flannel; its directory is searched for CNI plugins first

	// The Kubernetes test rig (kube_linux.go), built from tools/kube by
	// `make kube-bins`; see FindKubeBinaries.
	KubeAPIServer string // k8s.io/kubernetes/cmd/kube-apiserver
	Kubectl       string // k8s.io/kubernetes/cmd/kubectl

	// etcd 3.5 with the v2 API (etcdv2_linux.go), built from tools/etcd2
	// by `make etcd2`; see FindEtcdV2Binary.
	EtcdV2 string // etcd server v3.5, run with --enable-v2
}

// Host is a simulated node: a network namespace with eth0 on the fabric.
// Externals (AddExternal) are Hosts too, with no flanneld.
type Host struct {
	Name string     // short name: h1, h2, ... (externals: x1, x2, ...)
	NS   string     // network namespace name
	IP   netip.Addr // underlay IPv4 address on eth0
	IPv6 netip.Addr // underlay IPv6 address on eth0, if Options.IPv6
	Dir  string     // per-host directory; flanneld writes Dir/subnet.env

	index    int    // address index, shared by hosts and externals
	veth     string // the peer of eth0 in the fabric namespace
	external bool
	podMu    sync.Mutex // serialises pod wiring on this host (the cni0 bridge)
	nextPod  int
}

// SubnetFile is the subnet.env path the lab passes to this host's flanneld.
func (h *Host) SubnetFile() string { return filepath.Join(h.Dir, "subnet.env") }

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	prefix     string
	dir        string
	createdDir bool
	fabricNS   string
	ipv6       bool
	detached   bool
	bin        Binaries
	logf       func(format string, args ...any)

	mu        sync.Mutex
	closed    bool
	nextIndex int
	hosts     []*Host
	externals []*Host
	pods      []*Pod
	procs     []*Process
	etcd      *Process
	etcdTLS   bool
	clients   []*clientv3.Client
	kube      kubeState // the kube-apiserver and what it hands out; kube_linux.go
}

const (
	fabricBridge = "br0"
	underlayMTU  = 1500
)

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,11}$`)

// New builds the fabric and o.Hosts hosts. On error it removes whatever it
// made.
func New(ctx context.Context, o Options) (*Lab, error) {
	if o.Hosts < 0 || o.Hosts > maxNodes {
		return nil, fmt.Errorf("Options.Hosts = %d: must be between 0 and %d", o.Hosts, maxNodes)
	}
	prefix := o.Prefix
	if prefix == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random prefix: %w", err)
		}
		prefix = "fl" + hex.EncodeToString(b[:])
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("Options.Prefix %q: want 2 to 12 lower-case letters and digits, starting with a letter", prefix)
	}
	existing, err := ListNS(prefix)
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		return nil, fmt.Errorf("Options.Prefix %q is in use by namespace %s", prefix, existing[0])
	}
	l := &Lab{
		prefix:   prefix,
		fabricNS: prefix + "-fab",
		ipv6:     o.IPv6,
		detached: o.Detached,
		bin:      o.Binaries,
		logf:     o.Logf,
	}
	if l.logf == nil {
		l.logf = func(string, ...any) {}
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "flannel-lab-")
		if err != nil {
			return nil, fmt.Errorf("lab dir: %w", err)
		}
		l.dir, l.createdDir = d, true
	} else {
		d, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("lab dir %s: %w", o.Dir, err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("lab dir: %w", err)
		}
		l.dir = d
	}
	if err := l.build(ctx, o.Hosts); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context, hosts int) error {
	l.logf("lab %s: fabric %s, dir %s", l.prefix, l.fabricNS, l.dir)
	if err := addNS(ctx, l.fabricNS); err != nil {
		return err
	}
	err := withHandle(l.fabricNS, func(h *netlink.Handle) error {
		snooping := false
		br := &netlink.Bridge{
			LinkAttrs: netlink.LinkAttrs{Name: fabricBridge, MTU: underlayMTU},
			// Snooping could hold back IPv6 neighbour discovery until a
			// querier shows up; a lab switch floods.
			MulticastSnooping: &snooping,
		}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge %s: %w", fabricBridge, err)
		}
		if err := addAddr(h, br, netip.PrefixFrom(fabric4, underlay4.Bits())); err != nil {
			return err
		}
		if l.ipv6 {
			if err := addAddr(h, br, netip.PrefixFrom(fabric6, underlay6.Bits())); err != nil {
				return err
			}
		}
		if err := h.LinkSetUp(br); err != nil {
			return fmt.Errorf("set %s up: %w", fabricBridge, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fabric %s: %w", l.fabricNS, err)
	}
	for range hosts {
		if _, err := l.AddHost(ctx); err != nil {
			return err
		}
	}
	l.saveState()
	return nil
}

// Prefix is the name prefix of every namespace of the lab.
func (l *Lab) Prefix() string { return l.prefix }

// Dir is the lab's working directory.
func (l *Lab) Dir() string { return l.dir }

// FabricNS is the namespace holding the underlay bridge and etcd.
func (l *Lab) FabricNS() string { return l.fabricNS }

// Binaries returns the program paths the lab was given.
func (l *Lab) Binaries() Binaries { return l.bin }

// Hosts returns the flannel hosts, in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// AddHost adds a flannel host (a node joining later).
func (l *Lab) AddHost(ctx context.Context) (*Host, error) { return l.addNode(ctx, false) }

// AddExternal adds a namespace on the underlay that is not a flannel host,
// e.g. a server outside the cluster for masquerade tests.
func (l *Lab) AddExternal(ctx context.Context) (*Host, error) { return l.addNode(ctx, true) }

func (l *Lab) addNode(ctx context.Context, external bool) (*Host, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab is closed")
	}
	if len(l.hosts)+len(l.externals) >= maxNodes {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab has %d nodes, the most a bridge takes", maxNodes)
	}
	l.nextIndex++
	idx := l.nextIndex
	var name string
	if external {
		name = fmt.Sprintf("x%d", len(l.externals)+1)
	} else {
		name = fmt.Sprintf("h%d", len(l.hosts)+1)
	}
	v4, v6, err := nodeAddrs(idx)
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	h := &Host{
		Name:     name,
		NS:       l.prefix + "-" + name,
		IP:       v4,
		Dir:      filepath.Join(l.dir, name),
		index:    idx,
		veth:     "v" + name,
		external: external,
		nextPod:  1,
	}
	if l.ipv6 {
		h.IPv6 = v6
	}
	// Registered before it exists, so that Close removes a half-built node.
	if external {
		l.externals = append(l.externals, h)
	} else {
		l.hosts = append(l.hosts, h)
	}
	l.mu.Unlock()

	err = os.MkdirAll(h.Dir, 0o755)
	if err != nil {
		err = fmt.Errorf("host %s dir: %w", name, err)
	} else if err = l.wireNode(ctx, h); err != nil {
		err = fmt.Errorf("host %s: %w", name, err)
	}
	if err != nil {
		if uerr := l.unwireNode(h); uerr != nil {
			return nil, errors.Join(err, uerr)
		}
		l.mu.Lock()
		l.hosts = removeHost(l.hosts, h)
		l.externals = removeHost(l.externals, h)
		l.mu.Unlock()
		return nil, err
	}
	l.logf("lab %s: %s %s in %s", l.prefix, name, h.IP, h.NS)
	l.saveState()
	return h, nil
}

// wireNode creates the node's namespace and connects its eth0 to the fabric
// bridge. The veth pair is created inside the fabric namespace with its peer
// placed straight into the node namespace, so nothing ever appears in the
// root namespace.
func (l *Lab) wireNode(ctx context.Context, h *Host) error {
	if err := addNS(ctx, h.NS); err != nil {
		return err
	}
	nsh, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", h.NS, err)
	}
	defer nsh.Close()
	err = withHandle(l.fabricNS, func(fh *netlink.Handle) error {
		br, err := fh.LinkByName(fabricBridge)
		if err != nil {
			return fmt.Errorf("find %s: %w", fabricBridge, err)
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: h.veth, MTU: underlayMTU},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(nsh),
			// A NIC keeps its MAC across a reboot (ResetHost); a new one
			// would leave the peers' ARP entries pointing nowhere for
			// seconds, which no real reboot does.
			PeerHardwareAddr: nodeMAC(h.IP),
		}
		if err := fh.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s (peer eth0 in %s): %w", h.veth, h.NS, err)
		}
		if err := fh.LinkSetMaster(veth, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", h.veth, fabricBridge, err)
		}
		if err := fh.LinkSetUp(veth); err != nil {
			return fmt.Errorf("set %s up: %w", h.veth, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = withHandle(h.NS, func(nh *netlink.Handle) error {
		eth0, err := nh.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0: %w", err)
		}
		if err := addAddr(nh, eth0, netip.PrefixFrom(h.IP, underlay4.Bits())); err != nil {
			return err
		}
		if h.IPv6.IsValid() {
			if err := addAddr(nh, eth0, netip.PrefixFrom(h.IPv6, underlay6.Bits())); err != nil {
				return err
			}
		}
		if err := nh.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("set eth0 up: %w", err)
		}
		// flanneld picks the interface of the default route.
		if err := addDefaultRoute(nh, eth0, fabric4); err != nil {
			return err
		}
		if h.IPv6.IsValid() {
			if err := addDefaultRoute(nh, eth0, fabric6); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if h.external {
		return nil
	}
	return writeSysctls(h.NS, map[string]string{
		"net.ipv4.ip_forward":              "1",
		"net.ipv6.conf.all.forwarding":     "1",
		"net.ipv6.conf.default.forwarding": "1",
	})
}

// addAddr adds an address without duplicate address detection: a tentative
// IPv6 address would be unusable for the first second or two.
func addAddr(h *netlink.Handle, link netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, link.Attrs().Name, err)
	}
	return nil
}

func addDefaultRoute(h *netlink.Handle, link netlink.Link, gw netip.Addr) error {
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
	if gw.Is4() {
		r.Family = netlink.FAMILY_V4
	} else {
		r.Family = netlink.FAMILY_V6
	}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	return nil
}

// ResetHost simulates a reboot: it kills (SIGKILL) every process the lab
// started in the host, deletes the host's pods and namespace with
// everything in it, and recreates the namespace with the same name and
// addresses. Files in h.Dir stay.
func (l *Lab) ResetHost(ctx context.Context, h *Host) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("lab is closed")
	}
	var procs []*Process
	for _, p := range l.procs {
		if p.NS == h.NS {
			procs = append(procs, p)
		}
	}
	var pods []*Pod
	keep := l.pods[:0]
	for _, p := range l.pods {
		if p.Host == h {
			pods = append(pods, p)
		} else {
			keep = append(keep, p)
		}
	}
	l.pods = keep
	l.mu.Unlock()

	var errs []error
	for _, p := range procs {
		if err := p.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range pods {
		if err := deleteNS(p.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.unwireNode(h); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset %s: %w", h.Name, err)
	}
	if err := l.wireNode(ctx, h); err != nil {
		return fmt.Errorf("reset %s: %w", h.Name, err)
	}
	l.logf("lab %s: reset %s", l.prefix, h.Name)
	l.saveState()
	return nil
}

// unwireNode deletes the node's namespace and the fabric end of its veth.
func (l *Lab) unwireNode(h *Host) error {
	// Deleting the fabric end destroys the pair at once; the namespace
	// itself is freed asynchronously and its eth0 would otherwise keep the
	// fabric name vhN taken for a moment.
	err := withHandle(l.fabricNS, func(fh *netlink.Handle) error {
		link, err := fh.LinkByName(h.veth)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find %s: %w", h.veth, err)
		}
		if err := fh.LinkDel(link); err != nil {
			return fmt.Errorf("delete %s: %w", h.veth, err)
		}
		return nil
	})
	return errors.Join(err, deleteNS(h.NS))
}

func removeHost(hs []*Host, h *Host) []*Host {
	out := hs[:0]
	for _, x := range hs {
		if x != h {
			out = append(out, x)
		}
	}
	return out
}

// Close stops every process the lab started (SIGTERM, then SIGKILL after
// a bound), deletes every namespace with the lab's prefix and removes Dir if
// New created it. It is idempotent.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := append([]*Process(nil), l.procs...)
	clients := l.clients
	l.clients = nil
	kubeTransports := l.kube.transports
	l.kube.transports = nil
	var names []string
	for _, p := range l.pods {
		names = append(names, p.NS)
	}
	for _, h := range append(append([]*Host(nil), l.hosts...), l.externals...) {
		names = append(names, h.NS)
	}
	names = append(names, l.fabricNS)
	l.mu.Unlock()

	var errs []error
	for _, tr := range kubeTransports {
		tr.CloseIdleConnections()
	}
	for _, c := range clients {
		// Client.Close cancels Ctx first: a cancelled Ctx means the
		// caller closed it already.
		if c.Ctx().Err() == nil {
			_ = c.Close()
		}
	}
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, p := range procs {
		wg.Go(func() {
			if _, err := p.Stop(stopGrace); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	// Also whatever carries the prefix but was never recorded, e.g. a
	// namespace whose setup failed half-way.
	if found, err := ListNS(l.prefix); err != nil {
		errs = append(errs, err)
	} else {
		names = append(names, found...)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if err := deleteNS(n); err != nil {
			errs = append(errs, err)
		}
	}
	if l.createdDir {
		if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove lab dir: %w", err))
		}
	} else {
		l.saveState()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close lab %s: %w", l.prefix, err)
	}
	return nil
}

func (l *Lab) track(p *Process) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = p.Kill()
		return errors.New("lab is closed")
	}
	l.procs = append(l.procs, p)
	return nil
}

// StartProcess runs argv inside the namespace ns with `ip netns exec`, its
// stdout and stderr appended to logPath after a marker line. The
// environment holds only PATH and env. Close stops it.
func (l *Lab) StartProcess(ns, logPath string, env []string, argv ...string) (*Process, error) {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, errors.New("lab is closed")
	}
	// `ip netns exec` would start and then fail; say so up front.
	if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
		return nil, fmt.Errorf("start %v: netns %s: %w", argv, ns, err)
	}
	fullEnv := append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p, err := startProcess(ns, fullEnv, logPath, l.detached, argv...)
	if err != nil {
		return nil, err
	}
	if err := l.track(p); err != nil {
		return nil, err
	}
	l.saveState()
	return p, nil
}

// StartFlanneld runs Binaries.Flanneld in h with
// --etcd-endpoints=<EtcdEndpoint> --subnet-file=<h.SubnetFile()> followed by
// args (a later flag wins, so args can override both). Output is appended to
// h.Dir/flanneld.log.
func (l *Lab) StartFlanneld(h *Host, args ...string) (*Process, error) {
	return l.StartFlanneldEnv(h, nil, args...)
}

// StartFlanneldEnv is StartFlanneld with extra environment variables
// (KEY=value); the environment is otherwise empty but for PATH.
func (l *Lab) StartFlanneldEnv(h *Host, env []string, args ...string) (*Process, error) {
	if l.bin.Flanneld == "" {
		return nil, errors.New("start flanneld: Options.Binaries.Flanneld is not set")
	}
	argv := append([]string{l.bin.Flanneld,
		"--etcd-endpoints=" + l.EtcdEndpoint(),
		"--subnet-file=" + h.SubnetFile(),
	}, args...)
	p, err := l.StartProcess(h.NS, filepath.Join(h.Dir, "flanneld.log"), env, argv...)
	if err != nil {
		return nil, fmt.Errorf("start flanneld on %s: %w", h.Name, err)
	}
	return p, nil
}

// Processes returns every process the lab started, running or not.
func (l *Lab) Processes() []*Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Process(nil), l.procs...)
}
