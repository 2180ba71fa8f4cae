package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// DefaultNetConfigPath is --net-config-path's default, upstream's mount of
// the kube-flannel-cfg ConfigMap.
const DefaultNetConfigPath = "/etc/kube-flannel/net-conf.json"

// Options configure a Manager; they mirror flanneld's kube flags.
type Options struct {
	// KubeconfigFile and APIURL are --kubeconfig-file and --kube-api-url,
	// with client-go's BuildConfigFromFlags semantics: the URL replaces
	// the kubeconfig's server; both empty means the in-cluster config.
	KubeconfigFile, APIURL string
	// AnnotationPrefix is --kube-annotation-prefix (DefaultPrefix when
	// empty), normalised and checked by NormalizePrefix.
	AnnotationPrefix string
	// NetConfigPath is --net-config-path (DefaultNetConfigPath when empty).
	NetConfigPath string
	// SetNodeNetworkUnavailable is --set-node-network-unavailable: Ready
	// sets NetworkUnavailable=False on our Node.
	SetNodeNetworkUnavailable bool
	// Getenv reads NODE_NAME, POD_NAME and POD_NAMESPACE (os.Getenv when nil).
	Getenv func(string) string
	Log    *slog.Logger
}

// Manager is the Kubernetes lease source (subnet.Manager): the network
// config from a file, our subnets from our Node's podCIDRs, our lease
// attributes published as annotations on our Node, and the peers from one
// list and watch of all Nodes.
type Manager struct {
	opt  Options
	log  *slog.Logger
	keys Keys
	node string
	api  api
	*reporter

	peers *peers
	now   func() time.Time

	life    context.Context // ends at Close; the Node watch runs in it
	stop    context.CancelFunc
	start   sync.Once
	started bool          // the Node watch was started (not Close first)
	ran     chan struct{} // closed when the Node watch's goroutine has returned
	synced  chan struct{} // closed when the first list of the Nodes is in
	sync1   sync.Once

	mu      sync.Mutex
	logged  map[string]bool // one-off log lines already written
	attrs   subnet.LeaseAttrs
	basedOn string // resourceVersion of our Node that our last PATCH was computed from
}

var (
	_ subnet.Manager       = (*Manager)(nil)
	_ subnet.ReadyReporter = (*Manager)(nil)
)

// New builds the client and finds our Node's name: NODE_NAME, else one GET
// of our pod (POD_NAMESPACE/POD_NAME), retried with back-off while the API
// server cannot be reached (spec 8 #8: in a hostNetwork pod the Service IP
// may not work yet) until ctx ends. A bad prefix, a bad kubeconfig, missing
// variables, a missing pod or a forbidden GET fail at once.
func New(ctx context.Context, o Options) (*Manager, error) {
	o = o.withDefaults()
	keys, err := KeysFor(o.AnnotationPrefix)
	if err != nil {
		return nil, err
	}
	routeKlog(o.Log)
	rc, err := restConfig(o.KubeconfigFile, o.APIURL)
	if err != nil {
		return nil, err
	}
	a, err := newRESTAPI(rc)
	if err != nil {
		return nil, err
	}
	rep := &reporter{log: o.Log, server: a.host}
	name, err := nodeName(ctx, o.Getenv, a, rep)
	if err != nil {
		return nil, err
	}
	o.Log.Info("Kubernetes subnet manager", "node", name, "server", a.host, "annotationPrefix", keys.Prefix)
	return newManager(o, keys, a, name, rep), nil
}

func (o Options) withDefaults() Options {
	if o.AnnotationPrefix == "" {
		o.AnnotationPrefix = DefaultPrefix
	}
	if o.NetConfigPath == "" {
		o.NetConfigPath = DefaultNetConfigPath
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// newManager is New after the client and the node name are known; tests
// pass a fake api.
func newManager(o Options, k Keys, a api, node string, rep *reporter) *Manager {
	o = o.withDefaults()
	if rep == nil {
		rep = &reporter{log: o.Log, server: a.server()}
	}
	life, stop := context.WithCancel(context.Background())
	return &Manager{
		opt: o, log: o.Log, keys: k, node: node, api: a, reporter: rep,
		peers: newPeers(o.Log, k, node, life.Done()),
		now:   time.Now, life: life, stop: stop, ran: make(chan struct{}), synced: make(chan struct{}),
		logged: map[string]bool{},
	}
}

// nodeName is spec 1.2, with upstream's error texts.
func nodeName(ctx context.Context, getenv func(string) string, a api, rep *reporter) (string, error) {
	if n := getenv("NODE_NAME"); n != "" {
		return n, nil
	}
	pod, ns := getenv("POD_NAME"), getenv("POD_NAMESPACE")
	if pod == "" || ns == "" {
		return "", errors.New("env variables POD_NAME and POD_NAMESPACE must be set")
	}
	b := newBackoff()
	for {
		p, err := a.getPod(ctx, ns, pod)
		rep.observe(ctx, "get pod "+ns+"/"+pod, err)
		if err == nil {
			if p.Spec.NodeName == "" {
				return "", fmt.Errorf("node name not present in pod spec '%s/%s'", ns, pod)
			}
			return p.Spec.NodeName, nil
		}
		if !transient(err) || !b.wait(ctx, nil) {
			return "", fmt.Errorf("error retrieving pod spec for '%s/%s': %w", ns, pod, err)
		}
	}
}

// Close stops the Node watch and waits for it; nothing of the Manager runs
// afterwards. Keep, Acquire and the peer source's Run return.
func (m *Manager) Close() {
	m.stop()
	m.start.Do(func() { close(m.ran) }) // never started: nothing to wait for
	<-m.ran
}

// Name is for the start-up line, as upstream's.
func (m *Manager) Name() string { return "Kubernetes Subnet Manager - " + m.node }

// NodeName is our Node's name.
func (m *Manager) NodeName() string { return m.node }

// Keys are the annotation keys in use.
func (m *Manager) Keys() Keys { return m.keys }

// GetConfig reads the net-conf file. Kube mode takes the subnet size from
// the podCIDRs, so SubnetLen, SubnetMin, SubnetMax and their IPv6 twins
// are ignored, as upstream ignores them (it never calls
// CheckNetworkConfig): a config etcd mode would refuse for them alone is
// accepted. Everything else is checked with etcd mode's messages.
func (m *Manager) GetConfig(ctx context.Context) (*subnet.Config, []byte, error) {
	raw, err := os.ReadFile(m.opt.NetConfigPath)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read net conf: %w", err)
	}
	cfg, err := ParseNetConf(raw)
	if err != nil {
		return nil, raw, fmt.Errorf("network config in %s: %w", m.opt.NetConfigPath, err)
	}
	return cfg, raw, nil
}

// subnetKeys are the config keys kube mode ignores (lower case).
var subnetKeys = []string{"subnetlen", "subnetmin", "subnetmax", "ipv6subnetlen", "ipv6subnetmin", "ipv6subnetmax"}

// ParseNetConf is subnet.ParseConfig for kube mode: when the config fails
// only because of the values of the subnet-allocation keys, it is parsed
// again without them. Malformed JSON stays an error.
func ParseNetConf(raw []byte) (*subnet.Config, error) {
	cfg, err := subnet.ParseConfig(raw)
	if err == nil {
		return cfg, nil
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil, err
	}
	stripped := false
	for k := range obj {
		for _, s := range subnetKeys {
			if strings.EqualFold(k, s) {
				delete(obj, k)
				stripped = true
			}
		}
	}
	if !stripped {
		return nil, err
	}
	again, _ := json.Marshal(obj)
	if cfg, err2 := subnet.ParseConfig(again); err2 == nil {
		return cfg, nil
	}
	return nil, err
}

// ownNode is our Node as the watch last saw it (compact), nil when the
// watch has not seen it (or saw it deleted).
func (m *Manager) ownNode() *Node { return m.peers.node(m.node) }

// listed marks the first list of the Nodes done.
func (m *Manager) listed() { m.sync1.Do(func() { close(m.synced) }) }

// once reports whether the line keyed key has not been logged yet, and
// marks it logged.
func (m *Manager) once(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.logged[key] {
		return false
	}
	m.logged[key] = true
	return true
}

// cleared reports whether the line keyed key was logged, and lets it be
// logged again: the condition it reported went away.
func (m *Manager) cleared(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.logged[key]
	delete(m.logged, key)
	return was
}

// Start runs the Node watch (once; it runs until Close), waits until the
// first list of the Nodes is in, then until it holds our Node. It returns
// ctx.Err() if ctx ends first; the watch keeps running.
func (m *Manager) Start(ctx context.Context, cfg *subnet.Config) error {
	m.start.Do(func() {
		m.peers.v4, m.peers.v6 = cfg.EnableIPv4, cfg.EnableIPv6
		m.started = true
		go func() {
			defer close(m.ran)
			m.watchNodes(m.life)
		}()
	})
	if !m.started {
		return errors.New("subnet/kube: Start after Close")
	}
	began := time.Now()
	select {
	case <-m.synced:
	default:
		// The line texts are upstream's (its informer is its "node
		// controller"); the benchmark and operators look for them.
		if m.once("sync") {
			m.log.Info("Waiting for node controller to sync", "server", m.api.server())
		}
		select {
		case <-m.synced:
		case <-ctx.Done():
			return ctx.Err()
		case <-m.life.Done():
			return errors.New("subnet/kube: closed")
		}
		leases, _ := m.peers.TakeAll()
		m.log.Info("Node controller sync successful", "nodes", m.peers.count(), "peers", len(leases), "took", time.Since(began).Round(time.Millisecond))
	}
	m.peers.setSynced()
	for m.ownNode() == nil {
		if m.once("missing") {
			m.log.Warn("waiting for our Node to be registered", "node", m.node)
		}
		if !m.waitOwn(ctx, nil) {
			return ctx.Err()
		}
	}
	return nil
}

// waitOwn waits until our Node changes, timer fires (when not nil), ctx
// ends or the Manager closes; false for the last two.
func (m *Manager) waitOwn(ctx context.Context, timer <-chan time.Time) bool {
	select {
	case <-m.peers.ownChanged:
		return true
	case <-timer:
		return true
	case <-ctx.Done():
		return false
	case <-m.life.Done():
		return false
	}
}

// PublicIPs returns the node-public-ip and node-public-ipv6 annotations of
// our Node (spec 1.4), which replace --public-ip and --public-ipv6. A value
// that is not an address of its family is logged and ignored. Valid after
// Start; zero before.
func (m *Manager) PublicIPs() (v4, v6 netip.Addr) {
	n := m.ownNode()
	if n == nil {
		return v4, v6
	}
	get := func(key string, is4 bool) netip.Addr {
		v, ok := n.Annotations[key]
		if !ok || v == "" {
			return netip.Addr{}
		}
		ip, err := parseIP(v, is4)
		if err != nil {
			if m.once("bad " + key + v) {
				m.log.Warn("ignoring the annotation on our Node: not a usable address", "node", m.node, "key", key, "value", v)
			}
			return netip.Addr{}
		}
		if m.once("use " + key + v) {
			m.log.Info("public address from our Node's annotation (replaces --public-ip/--public-ipv6 and the interface address)", "node", m.node, "key", key, "ip", ip)
		}
		return ip
	}
	return get(m.keys.NodePublicIP, true), get(m.keys.NodePublicIPv6, false)
}

// Previous returns what our Node published when a flannel ran on it
// (kube-subnet-manager "true"), so that vxlan re-creates its devices with
// the MACs peers know. Upstream looks the MAC up under the raw prefix, so
// with a prefix such as example.com/fl it never finds it (spec 4.5); this
// uses the normalised keys.
func (m *Manager) Previous(cfg *subnet.Config, probe subnet.LeaseAttrs) *subnet.LeaseAttrs {
	n := m.ownNode()
	if n == nil {
		return nil
	}
	return ownAttrs(n, m.keys)
}

// Peers returns the lease set of all managed Nodes, ours included.
func (m *Manager) Peers() subnet.PeerSource { return m.peers }

// Ready sets our Node's NetworkUnavailable condition to False (spec 4.6)
// when --set-node-network-unavailable is on. The daemon calls it after the
// data plane is programmed (upstream set it before, #1431). When the
// condition already says False for flannel, nothing is sent, so that its
// lastTransitionTime keeps meaning something. A few quick retries; the
// error is returned for the daemon to log, not to die of.
func (m *Manager) Ready(ctx context.Context) error {
	if !m.opt.SetNodeNetworkUnavailable {
		return nil
	}
	if n := m.ownNode(); n != nil && networkCondition(n) == "False/"+conditionReason {
		m.log.Debug("NetworkUnavailable is already False", "node", m.node)
		return nil
	}
	body := conditionPatch(m.now())
	b := newBackoff()
	var err error
	for range 4 {
		err = m.api.patchNodeStatus(ctx, m.node, body)
		m.observe(ctx, "patch node "+m.node+" status", err)
		if err == nil {
			m.log.Info("node condition set", "node", m.node, "type", conditionType, "status", "False", "reason", conditionReason)
			return nil
		}
		if !transient(err) || !b.wait(ctx, m.life.Done()) {
			break
		}
	}
	return fmt.Errorf("set %s=False on node %q: %w", conditionType, m.node, err)
}

// backoff doubles a wait from 200 ms to 10 s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 200 * time.Millisecond} }

func (b *backoff) next() time.Duration {
	d := b.d
	b.d = min(b.d*2, 10*time.Second)
	return d
}

// wait sleeps for the next interval; false when ctx or done ended it.
func (b *backoff) wait(ctx context.Context, done <-chan struct{}) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-done:
		return false
	}
}

// reporter logs the API server's outages, once at the start and once at
// the end, and other failures once per distinct text until a request
// succeeds again.
type reporter struct {
	log    *slog.Logger
	server string

	mu     sync.Mutex
	outage time.Time // start of the current outage, zero when reachable
	// failed holds the error texts logged since the last success: a
	// forbidden list and a forbidden watch alternate, and each must be
	// logged once, not once per retry.
	failed map[string]bool
}
