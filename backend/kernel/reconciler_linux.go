package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultFullResyncInterval is how often a pass re-reads the kernel even
// when no notification said anything changed. Notifications carry repairs
// within a second; this periodic pass is the safety net for notifications
// the kernel could not deliver (a full socket buffer) and for changes the
// kernel does not announce.
const DefaultFullResyncInterval = time.Minute

// Config describes what a Reconciler manages.
type Config struct {
	// Handle is the namespace the Reconciler programs and watches. The
	// Reconciler does not close it.
	Handle *Handle
	// Families lists the address families managed (unix.AF_INET,
	// unix.AF_INET6); only their tables are read.
	Families []int
	// Networks are the overlay networks (ownership rules, see the package
	// comment).
	Networks []netip.Prefix
	// ExtIndex is the external (underlay) interface. Its link and address
	// changes make the next pass a full one: when an IPv4 link goes down
	// the kernel drops the routes through it without a notification.
	ExtIndex int
	// FullResyncInterval defaults to DefaultFullResyncInterval.
	FullResyncInterval time.Duration
	Log                *slog.Logger
	// OnPass, when set, is called after every pass (metrics).
	OnPass func(PassReport)
}

// Reconciler keeps routes, neighbour and FDB entries as a backend wants
// them. Its methods may be called from several goroutines; passes are
// serialised.
type Reconciler struct {
	h        *Handle
	log      *slog.Logger
	families []int
	owner    owner
	interval time.Duration

	mu       sync.Mutex // serialises passes; guards the fields below
	cache    *cache
	synced   bool // a full pass completed
	lastFull time.Time
	failures map[string]string // object → last logged error
	warned   map[string]string // conflict key → last logged conflict

	closed bool // guarded by mu
	// ixStale says a delta pass left the index half changed: only a
	// pass that rebuilds it (Reconcile) may run next.
	ixStale bool // guarded by mu

	// ix is the wanted state. The pass holding mu replaces it (full and
	// plain passes) or changes it in place (delta passes) under ixMu; the
	// watchers read it under ixMu.
	ixMu    sync.RWMutex
	ix      *index
	dirty   atomic.Bool
	resync  atomic.Bool // the caller asked for a full pass (Resync)
	changed chan struct{}

	ext    extState
	watch  *watcher
	onPass func(PassReport)
}

// NewReconciler starts the kernel subscriptions of cfg.Handle's namespace
// and returns a Reconciler whose first pass is a full one.
func NewReconciler(cfg Config) (*Reconciler, error) {
	if cfg.Handle == nil {
		return nil, errors.New("kernel reconciler needs a Handle")
	}
	if len(cfg.Families) == 0 {
		return nil, errors.New("kernel reconciler needs at least one address family")
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	r := &Reconciler{
		h:        cfg.Handle,
		log:      log,
		families: cfg.Families,
		owner:    owner{networks: cfg.Networks, extIndex: cfg.ExtIndex},
		interval: cfg.FullResyncInterval,
		cache:    newCache(),
		failures: map[string]string{},
		warned:   map[string]string{},
		changed:  make(chan struct{}, 1),
		onPass:   cfg.OnPass,
	}
	if r.interval <= 0 {
		r.interval = DefaultFullResyncInterval
	}
	r.ix = newIndex(State{})
	if cfg.ExtIndex > 0 {
		l, err := r.h.LinkByIndex(cfg.ExtIndex)
		if err != nil {
			return nil, fmt.Errorf("look up external interface #%d: %w", cfg.ExtIndex, err)
		}
		r.ext.set(l.Attrs())
	}
	w, err := startWatcher(r)
	if err != nil {
		return nil, err
	}
	r.watch = w
	return r, nil
}

// Changed fires (coalesced) when the kernel reported a change that
// contradicts the wanted state.
func (r *Reconciler) Changed() <-chan struct{} { return r.changed }

// MarkDirty makes the next pass a full one and signals Changed.
func (r *Reconciler) MarkDirty(reason string) {
	if r.dirty.CompareAndSwap(false, true) {
		r.log.Info("kernel state changed behind our back; resyncing", "reason", reason)
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Resync makes the next pass a full one (backend.Resyncer). Unlike
// MarkDirty it says nothing about the kernel: it is the daemon asking for
// its periodic pass, which must be full whatever the phase of our own
// FullResyncInterval clock.
func (r *Reconciler) Resync() { r.resync.Store(true) }

// Stats returns the netlink request counters of the Handle.
func (r *Reconciler) Stats() Stats { return r.h.Stats() }

// Close stops the subscriptions and waits for a running pass. Kernel
// state is left as it is; later passes fail.
func (r *Reconciler) Close() error {
	if r.watch != nil {
		r.watch.stop()
	}
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

// PrepareFunc builds the wanted state for one pass. full tells whether this
// pass re-reads the kernel, so the backend should also check what it
// manages itself (its devices). An error means the state is partial (for
// example a device could not be created); the rows returned are still
// applied and the next pass is a full one.
type PrepareFunc func(ctx context.Context, full bool) (State, error)

// Reconcile runs one pass: it decides whether the pass is full, lets the
// backend build the wanted state, and applies the difference.
func (r *Reconciler) Reconcile(ctx context.Context, prepare PrepareFunc) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("kernel reconciler is closed")
	}

	// Clear the dirty flag before reading anything: a change that lands
	// while this pass runs marks the next pass full again.
	dirty := r.dirty.Swap(false)
	resync := r.resync.Swap(false)
	report := PassReport{Repair: dirty && r.synced, Writes: map[[2]string]int{}}
	if r.onPass != nil {
		began := time.Now()
		defer func() {
			report.Duration = time.Since(began)
			r.onPass(report)
		}()
	}
	full := dirty || resync || !r.synced || time.Since(r.lastFull) >= r.interval
	adopt := !r.synced
	report.Full = full

	state, prepErr := prepare(ctx, full)
	ix, conflicts := buildIndex(state)
	r.logConflicts(conflicts)
	r.ixMu.Lock()
	r.ix = ix
	r.ixMu.Unlock()
	r.ixStale = false

	var errs []error
	if prepErr != nil {
		errs = append(errs, prepErr)
	}
	if full {
		c, err := r.read(ix, adopt)
		if err != nil {
			// Without a fresh view, applying could undo somebody's
			// correct change; try again on the next pass.
			r.dirty.Store(true)
			return errors.Join(append(errs, err)...)
		}
		r.cache = c
	}

	if full {
		// Adoption of upstream's routes happens once, on the first view of
		// the kernel; later passes only own what we marked.
		r.synced = true
		r.lastFull = time.Now()
	}

	var applyErrs []error
	suspect, nOps := false, 0
	for k := range numKinds {
		ops := planKind(ix, r.cache, k)
		nOps += len(ops)
		if applyErrs, suspect = r.applyKind(ctx, ops, report.Writes, applyErrs, suspect); ctx.Err() != nil {
			break
		}
	}
	report.Errors = len(applyErrs)
	errs = append(errs, applyErrs...)
	if prepErr != nil || suspect {
		// The backend could not check its devices, or an FDB entry was
		// left in a state the cache cannot describe: read the kernel
		// again next time. (Other writes are atomic, so after a failure
		// the cache still tells the truth and the next pass retries just
		// the failed rows.)
		r.dirty.Store(true)
	}
	r.pruneFailures(ix)
	return summarize(errs, nOps)
}

// ErrFullPass is Update's answer when a change cannot be applied on its
// own: call Reconcile with the whole wanted state.
var ErrFullPass = backend.ErrFullPass

// DeltaFunc returns the rows of the leases that changed: gone as the
// previous passes wanted them, came as they are wanted now. A lease that
// changed is in both. An error means the backend cannot tell (Update then
// returns it with ErrFullPass).
type DeltaFunc func() (gone, came State, err error)

// Update applies a change to a few leases without building the whole
// wanted state: it costs O(change) where a pass costs O(peers). It returns
// ErrFullPass, without calling delta, when a pass over everything is due
// (the first one, a kernel change behind our back, the periodic full
// resync, a Resync), and after calling it when the rows do not fit the index as
// claimed (a lease the previous passes did not program as delta says, two
// leases wanting the same object differently).
func (r *Reconciler) Update(ctx context.Context, delta DeltaFunc) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("kernel reconciler is closed")
	}
	if !r.synced || r.ixStale || r.dirty.Load() || r.resync.Load() || time.Since(r.lastFull) >= r.interval {
		return ErrFullPass
	}
	report := PassReport{Delta: true, Writes: map[[2]string]int{}}
	if r.onPass != nil {
		began := time.Now()
		defer func() {
			report.Duration = time.Since(began)
			r.onPass(report)
		}()
	}
	gone, came, err := delta()
	if err != nil {
		return errors.Join(ErrFullPass, err)
	}
	r.ixMu.Lock()
	touched, ok := r.ix.applyDelta(gone, came)
	r.ixMu.Unlock()
	if !ok {
		r.ixStale = true
		return ErrFullPass
	}
	ops := planKeys(r.ix, r.cache, touched)
	errs, suspect := r.apply(ctx, ops, report.Writes)
	report.Errors = len(errs)
	if suspect {
		r.dirty.Store(true)
	}
	return summarize(errs, ops.len())
}

// read dumps the kernel rows we own or want.
func (r *Reconciler) read(ix *index, adopt bool) (*cache, error) {
	c := newCache()
	for _, fam := range r.families {
		routes, err := r.h.RouteList(fam)
		if err != nil {
			return nil, err
		}
		for _, nr := range routes {
			o := observeRoute(nr)
			if !o.Dst.IsValid() {
				continue
			}
			k := o.key()
			_, wanted := ix.routes[k]
			o.Owned = r.owner.ownsRoute(o, ix.devices, adopt)
			if o.Owned || wanted {
				if _, dup := c.routes[k]; dup && !o.Owned {
					continue
				}
				c.routes[k] = o
			}
		}
	}
	if len(ix.devices) == 0 {
		return c, nil
	}
	for _, fam := range r.families {
		neighs, err := r.h.NeighList(0, fam)
		if err != nil {
			return nil, err
		}
		for _, n := range neighs {
			if _, ours := ix.devices[n.LinkIndex]; !ours {
				continue
			}
			ip := AddrFromIP(n.IP, fam == unix.AF_INET)
			mac, err := MACFromBytes(n.HardwareAddr)
			if !ip.IsValid() {
				continue
			}
			k := neighKey{n.LinkIndex, ip}
			perm := n.State&netlink.NUD_PERMANENT != 0
			_, wanted := ix.neighs[k]
			if perm || wanted {
				if err != nil {
					// A permanent entry without a usable MAC: replace it.
					perm = false
				}
				c.neighs[k] = observedNeigh{MAC: mac, Permanent: perm, Owned: n.State&netlink.NUD_PERMANENT != 0}
			}
		}
	}
	fdb, err := r.h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return nil, err
	}
	for _, n := range fdb {
		if _, ours := ix.devices[n.LinkIndex]; !ours || n.Flags&netlink.NTF_SELF == 0 {
			continue
		}
		mac, err := MACFromBytes(n.HardwareAddr)
		dst := AddrFromIP(n.IP, true)
		if err != nil || !dst.IsValid() {
			continue
		}
		k := fdbKey{n.LinkIndex, mac}
		static := n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0
		_, wanted := ix.fdb[k]
		if static || wanted {
			c.fdb[k] = append(c.fdb[k], observedRemote{
				Dst:       dst,
				Permanent: n.State&netlink.NUD_PERMANENT != 0,
				Owned:     static,
			})
		}
	}
	return c, nil
}

// apply runs the writes in order. A failure is recorded for its object
// and does not stop the others.
func (r *Reconciler) apply(ctx context.Context, ops opList, writes map[[2]string]int) (errs []error, suspect bool) {
	for k := range ops {
		errs, suspect = r.applyKind(ctx, ops[k], writes, errs, suspect)
		if ctx.Err() != nil {
			return errs, suspect
		}
	}
	return errs, suspect
}

// applyKind runs the writes of one kind: replaces in batches, the rest one
// by one.
func (r *Reconciler) applyKind(ctx context.Context, ops []op, writes map[[2]string]int, errs []error, suspect bool) ([]error, bool) {
	done := 0
	defer func() {
		if len(ops) > 0 && done > 0 {
			writes[[2]string{ops[0].kind.object(), ops[0].kind.verb()}] += done
		}
	}()
	for rest := ops; len(rest) > 0; {
		if err := ctx.Err(); err != nil {
			return append(errs, err), suspect
		}
		var results []error
		if batchable(rest[0].kind) {
			results = r.h.setBatch(rest[:min(len(rest), maxBatch)])
		} else {
			results = []error{r.h.exec(&rest[0])}
		}
		for i, err := range results {
			o := rest[i]
			if err != nil {
				err = fmt.Errorf("%s: %w", o, err)
				if key := o.objectKey(); r.failures[key] != err.Error() {
					r.log.Warn("kernel update failed; will retry", "op", o.String(), "err", err)
					r.failures[key] = err.Error()
				}
				errs = append(errs, err)
				suspect = suspect || o.kind == opFDBDelPre
				continue
			}
			if len(r.failures) > 0 {
				// Named only when something failed before: building the
				// name of each of 15,000 writes costs more than some writes.
				if key := o.objectKey(); r.failures[key] != "" {
					r.log.Info("kernel update succeeded after earlier failure", "op", o.String())
					delete(r.failures, key)
				}
			}
			r.cache.record(o)
			done++
		}
		rest = rest[len(results):]
	}
	return errs, suspect
}

// pruneFailures forgets errors of objects nobody wants any more, so memory
// stays bounded and a later failure of the same object is logged again.
func (r *Reconciler) pruneFailures(ix *index) {
	if len(r.failures) == 0 {
		return
	}
	live := make(map[string]bool, len(ix.routes)+len(ix.neighs)+len(ix.fdb))
	for k := range ix.routes {
		live[k.String()] = true
	}
	for k := range ix.neighs {
		live[k.String()] = true
	}
	for k, dst := range ix.fdb {
		live[fmt.Sprintf("%s dst %s", k, dst)] = true
	}
	for k := range r.failures {
		if !live[k] {
			delete(r.failures, k)
		}
	}
}

// logConflicts logs each contested object once, and again only when its
// claimants change. buildIndex reports one conflict per object with a
// message that depends on the set of claims alone, not on their order.
func (r *Reconciler) logConflicts(cs []conflict) {
	seen := make(map[string]bool, len(cs))
	for _, c := range cs {
		seen[c.key] = true
		msg := c.kept + " / " + c.lost
		if r.warned[c.key] == msg {
			continue
		}
		r.warned[c.key] = msg
		r.log.Warn("several leases want the same kernel object; keeping the lowest claim, whatever order the leases come in",
			"object", c.key, "kept", c.kept, "ignored", c.lost)
	}
	for k := range r.warned {
		if !seen[k] {
			delete(r.warned, k)
		}
	}
}
