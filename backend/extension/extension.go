// Package extension is flannel's extension backend: the data plane is
// whatever four operator-supplied commands build. PreStartupCommand runs
// before our lease is acquired and its output is advertised as the lease's
// BackendData; PostStartupCommand runs once the lease is held;
// SubnetAddCommand and SubnetRemoveCommand run for each other node's
// extension lease as it comes and goes.
//
// The commands run exactly as upstream v0.28.x runs them (no shell; its
// word splitting, $VAR expansion, environment and stdin; see command.go),
// so a config that works on an upstream node works here. Beyond upstream:
// SubnetAdd/SubnetRemove also get IPV6SUBNET and PUBLIC_IPV6, which
// upstream's docs promise; every command has a timeout; a failed
// SubnetAddCommand is retried on later passes (upstream forgets it); every
// failure is logged with the command's output and exit status. A shell is
// available only through the RunInShell key (see Options).
//
// Unlike the kernel backends, this one cannot see what its commands built,
// so it keeps the leases it ran SubnetAddCommand for and diffs each pass's
// leases against them: a lease seen for the first time, or with changed
// attributes, gets SubnetAddCommand; a lease gone gets SubnetRemoveCommand.
// After a restart every lease is new again, as upstream reruns Add for its
// initial snapshot; the commands must be idempotent.
package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/subnet"
)

// BackendType is the lease BackendType of this backend.
const BackendType = "extension"

// Retry back-off after a failed SubnetAddCommand: the next pass is asked
// for after retryMin, doubling up to retryMax while failures go on.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

type extensionBackend struct {
	cfg  backend.Config
	opts Options
	log  *slog.Logger
	run  runner
	pre  string // PreStartupCommand's output, for the lease
}

// New builds the extension backend from the Backend object.
func New(cfg backend.Config) (backend.Backend, error) {
	opts, err := ParseOptions(cfg.Raw)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	r := execRunner{shell: opts.RunInShell, timeout: opts.timeout(), environ: os.Environ}
	return newBackend(cfg, opts, log, r), nil
}

func newBackend(cfg backend.Config, opts Options, log *slog.Logger, r runner) *extensionBackend {
	if cfg.Log == nil {
		cfg.Log = log
	}
	return &extensionBackend{cfg: cfg, opts: opts, log: log.With("backend", BackendType), run: r}
}

// runStartup runs Pre or Post; a failure is fatal for the daemon.
func (b *extensionBackend) runStartup(ctx context.Context, c command) (string, error) {
	if !configured(c.raw) {
		b.log.Info("No pre/post startup command configured - skipping", "key", c.key)
		return "", nil
	}
	res := b.run.run(ctx, c)
	if res.err != nil {
		return "", fmt.Errorf("%s (exit status %d): %s", c.key, res.status, res.failure(c.raw))
	}
	b.log.Info(fmt.Sprintf("Ran command: %s\n Output: %s", c.raw, res.output), "key", c.key)
	return res.output, nil
}

// Prepare runs PreStartupCommand; its output becomes our lease's
// BackendData (a JSON string). PublicIP is the interface's address, not
// --public-ip: upstream's extension has always advertised IfaceAddr.
func (b *extensionBackend) Prepare(ctx context.Context, prev *subnet.LeaseAttrs) (subnet.LeaseAttrs, error) {
	b.log.Info("extension backend", "shell", b.opts.RunInShell, "command_timeout", b.opts.timeout().String())
	out, err := b.runStartup(ctx, command{key: "PreStartupCommand", raw: b.opts.PreStartupCommand, stdin: "\n"})
	if err != nil {
		return subnet.LeaseAttrs{}, err
	}
	attrs := subnet.LeaseAttrs{PublicIP: b.cfg.Ext.IfaceAddr, BackendType: BackendType}
	if b.cfg.Ext.IfaceV6Addr.IsValid() {
		attrs.PublicIPv6 = b.cfg.Ext.IfaceV6Addr
	}
	if configured(b.opts.PreStartupCommand) {
		data, err := json.Marshal(out)
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
		attrs.BackendData = data
	}
	b.pre = out
	return attrs, nil
}

// Configure runs PostStartupCommand with our lease's values.
func (b *extensionBackend) Configure(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	extra := []string{
		"NETWORK=" + prefixOr(b.cfg.Network, "0.0.0.0/0"),
		"SUBNET=" + prefixOr(own.Subnet, "0.0.0.0/0"),
		"IPV6SUBNET=" + prefixOr(own.IPv6Subnet, "::/0"),
		"PUBLIC_IP=" + addrOr(own.Attrs.PublicIP, "0.0.0.0"),
		"PUBLIC_IPV6=" + addrOr(own.Attrs.PublicIPv6, "<nil>"),
	}
	if _, err := b.runStartup(ctx, command{key: "PostStartupCommand", raw: b.opts.PostStartupCommand, extra: extra, stdin: "\n"}); err != nil {
		return nil, err
	}
	return &network{
		b:       b,
		mtu:     b.cfg.Ext.MTU,
		done:    map[string]peer{},
		skipped: backend.NewSkipLog(b.log),
		changed: make(chan struct{}, 1),
	}, nil
}

// prefixOr and addrOr print values as upstream's env does: a missing
// subnet is the zero network, a missing IPv6 address the literal "<nil>"
// (fmt of a nil pointer).
func prefixOr(p netip.Prefix, none string) string {
	if !p.IsValid() {
		return none
	}
	return p.Masked().String()
}

func addrOr(a netip.Addr, none string) string {
	if !a.IsValid() {
		return none
	}
	return a.String()
}

// peer is a remote lease as SubnetAddCommand last saw it.
type peer struct {
	lease subnet.Lease
	data  string // BackendData decoded: the commands' stdin
	ok    bool   // SubnetAddCommand succeeded (or none is configured)
}

type network struct {
	b   *extensionBackend
	mtu int

	mu      sync.Mutex // one pass at a time
	done    map[string]peer
	skipped *backend.SkipLog
	closed  bool

	changed chan struct{}
	retry   *time.Timer
	backoff time.Duration
}

func (n *network) MTU() int                 { return n.mtu }
func (n *network) Changed() <-chan struct{} { return n.changed }

// Reconcile runs SubnetRemoveCommand for extension leases gone since the
// last pass, then SubnetAddCommand for new and changed ones and for those
// whose last SubnetAddCommand failed. Commands run one at a time, in key
// order. A failed add asks for another pass (Changed) after a back-off.
func (n *network) Reconcile(ctx context.Context, peers []subnet.Lease) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[string]peer{}
	skipped := map[string]string{}
	for _, l := range peers {
		if l.Attrs.BackendType != BackendType {
			skipped[l.Key()] = fmt.Sprintf("Ignoring non-extension subnet: type=%v", l.Attrs.BackendType)
			continue
		}
		data, err := stdinOf(l.Attrs.BackendData)
		if err != nil {
			skipped[l.Key()] = fmt.Sprintf("Ignoring extension subnet %s: failed to unmarshal BackendData: %v", l.Key(), err)
			continue
		}
		want[l.Key()] = peer{lease: l, data: data}
	}
	n.skipped.Pass(skipped)

	var failed []string
	for _, k := range sortedKeys(n.done) {
		if _, ok := want[k]; ok {
			continue
		}
		old := n.done[k]
		delete(n.done, k)
		n.b.log.Info("Subnet removed: " + old.lease.String())
		if err := n.runPeer(ctx, "SubnetRemoveCommand", n.b.opts.SubnetRemoveCommand, old); err != nil {
			// As upstream: not retried. The lease is gone, and so is
			// the knowledge of what a retry should undo once it returns.
			failed = append(failed, err.Error())
		}
	}
	addFailed := 0
	for _, k := range sortedKeys(want) {
		p := want[k]
		if old, ok := n.done[k]; ok && old.ok && sameLease(old, p) {
			continue
		}
		n.b.log.Info(fmt.Sprintf("Subnet added: %s via %s", p.lease, addrOr(p.lease.Attrs.PublicIP, "0.0.0.0")))
		err := n.runPeer(ctx, "SubnetAddCommand", n.b.opts.SubnetAddCommand, p)
		p.ok = err == nil
		n.done[k] = p
		if err != nil {
			addFailed++
			failed = append(failed, err.Error())
		}
	}
	n.scheduleRetry(addFailed > 0)
	if len(failed) > 0 {
		return fmt.Errorf("%d extension command(s) failed, first: %s", len(failed), failed[0])
	}
	return nil
}

// runPeer runs SubnetAdd or SubnetRemove for one remote lease. Upstream
// passes SUBNET and PUBLIC_IP only; IPV6SUBNET and PUBLIC_IPV6, which its
// docs promise, are ours.
func (n *network) runPeer(ctx context.Context, key, raw string, p peer) error {
	if !configured(raw) {
		return nil
	}
	l := p.lease
	c := command{key: key, raw: raw, stdin: p.data + "\n", extra: []string{
		"SUBNET=" + prefixOr(l.Subnet, "0.0.0.0/0"),
		"PUBLIC_IP=" + addrOr(l.Attrs.PublicIP, "0.0.0.0"),
		"IPV6SUBNET=" + prefixOr(l.IPv6Subnet, "::/0"),
		"PUBLIC_IPV6=" + addrOr(l.Attrs.PublicIPv6, "<nil>"),
	}}
	res := n.b.run.run(ctx, c)
	if res.err != nil {
		msg := res.failure(raw)
		n.b.log.Error(msg, "key", key, "lease", l.String(), "exit_status", res.status, "output", res.output)
		return fmt.Errorf("%s for %s: %s", key, l, msg)
	}
	n.b.log.Info(fmt.Sprintf("Ran command: %s\n Output: %s", raw, res.output), "key", key, "lease", l.String())
	return nil
}

// scheduleRetry asks for a pass after a back-off while adds fail, and
// resets the back-off once they succeed.
func (n *network) scheduleRetry(failing bool) {
	if !failing {
		n.backoff = 0
		if n.retry != nil {
			n.retry.Stop()
		}
		return
	}
	if n.closed {
		return
	}
	switch {
	case n.backoff == 0:
		n.backoff = retryMin
	case n.backoff < retryMax:
		n.backoff = min(2*n.backoff, retryMax)
	}
	if n.retry != nil {
		n.retry.Stop()
	}
	n.retry = time.AfterFunc(n.backoff, func() {
		select {
		case n.changed <- struct{}{}:
		default:
		}
	})
}

// Close stops the retry timer. Nothing is run at shutdown: upstream
// ignores the ShutdownCommand its samples set.
func (n *network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	if n.retry != nil {
		n.retry.Stop()
	}
	return nil
}

// stdinOf decodes a lease's BackendData, a JSON string, into the text
// the commands read on stdin; a missing BackendData or JSON null is "".
func stdinOf(raw json.RawMessage) (string, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "", nil
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}

// sameLease reports whether SubnetAddCommand would see the same values.
func sameLease(a, b peer) bool {
	la, lb := a.lease, b.lease
	return la.Subnet == lb.Subnet && la.IPv6Subnet == lb.IPv6Subnet &&
		la.Attrs.PublicIP == lb.Attrs.PublicIP && la.Attrs.PublicIPv6 == lb.Attrs.PublicIPv6 &&
		a.data == b.data
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
