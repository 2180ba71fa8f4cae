package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Notification sockets get a large buffer: our own first pass on a big
// cluster echoes tens of thousands of messages, and an overflow ends the
// subscription (it is then restarted, and the next pass is a full one).
const notifyBufferSize = 8 << 20

// notifyQueue is the depth of the queue between netlink's reader and our
// handler. The socket buffer above absorbs bursts; a deep queue of parsed
// notifications (a parsed route is ~400 bytes) only adds resident memory.
const notifyQueue = 64

const (
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 5 * time.Second
	stopTimeout    = 5 * time.Second
)

// extState remembers the external interface's last known state, so that
// only real changes (up/down, carrier, MTU) trigger a full pass.
type extState struct {
	mu      sync.Mutex
	known   bool
	up      bool
	running bool
	mtu     int
	addrs   map[netip.Prefix]bool
}

func (e *extState) set(a *netlink.LinkAttrs) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.known, e.up, e.running, e.mtu = true, a.Flags&net.FlagUp != 0, a.RawFlags&unix.IFF_RUNNING != 0, a.MTU
}

// update records a and reports what changed.
func (e *extState) update(a *netlink.LinkAttrs) (changed bool, oldMTU int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	up, running := a.Flags&net.FlagUp != 0, a.RawFlags&unix.IFF_RUNNING != 0
	changed = !e.known || up != e.up || running != e.running || a.MTU != e.mtu
	oldMTU = e.mtu
	e.known, e.up, e.running, e.mtu = true, up, running, a.MTU
	return changed, oldMTU
}

// addr records an address event and reports whether it is news.
func (e *extState) addr(p netip.Prefix, added bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.addrs == nil {
		e.addrs = map[netip.Prefix]bool{}
	}
	if added == e.addrs[p] {
		return false
	}
	if added {
		e.addrs[p] = true
	} else {
		delete(e.addrs, p)
	}
	return true
}

type watcher struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (w *watcher) stop() {
	w.cancel()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopTimeout):
	}
}

// subOptions are the options common to netlink's Subscribe functions.
type subOptions struct {
	ns      *netns.NsHandle
	onError func(error)
	rcvbuf  int
}

func startWatcher(r *Reconciler) (*watcher, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel}
	var ns *netns.NsHandle
	if r.h.ns.IsOpen() {
		h := r.h.ns
		ns = &h
	}
	err := errors.Join(
		runSub(ctx, w, r, ns, "link", func(ch chan netlink.LinkUpdate, done chan struct{}, o subOptions) error {
			return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
				Namespace: o.ns, ErrorCallback: o.onError, ReceiveBufferSize: o.rcvbuf, ReceiveBufferForceSize: o.rcvbuf > 0})
		}, r.onLink),
		runSub(ctx, w, r, ns, "address", func(ch chan netlink.AddrUpdate, done chan struct{}, o subOptions) error {
			return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
				Namespace: o.ns, ErrorCallback: o.onError, ReceiveBufferSize: o.rcvbuf, ReceiveBufferForceSize: o.rcvbuf > 0})
		}, r.onAddr),
		runSub(ctx, w, r, ns, "route", func(ch chan netlink.RouteUpdate, done chan struct{}, o subOptions) error {
			return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
				Namespace: o.ns, ErrorCallback: o.onError, ReceiveBufferSize: o.rcvbuf, ReceiveBufferForceSize: o.rcvbuf > 0})
		}, r.onRoute),
		runSub(ctx, w, r, ns, "neighbour", func(ch chan netlink.NeighUpdate, done chan struct{}, o subOptions) error {
			return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
				Namespace: o.ns, ErrorCallback: o.onError, ReceiveBufferSize: o.rcvbuf, ReceiveBufferForceSize: o.rcvbuf > 0})
		}, r.onNeigh),
	)
	if err != nil {
		w.stop()
		return nil, err
	}
	return w, nil
}

// runSub subscribes once (so that a failure shows at start) and then
// consumes notifications on a goroutine, subscribing again with back-off
// whenever the kernel ends the subscription (netlink's Subscribe functions
// give up on the first receive error, e.g. ENOBUFS after an overflow).
func runSub[T any](ctx context.Context, w *watcher, r *Reconciler, ns *netns.NsHandle, name string,
	subscribe func(chan T, chan struct{}, subOptions) error, handle func(T)) error {

	start := func() (chan T, chan struct{}, error) {
		onError := func(err error) {
			if ctx.Err() != nil || errors.Is(err, netlink.ErrDumpInterrupted) {
				return
			}
			r.MarkDirty(fmt.Sprintf("%s notifications lost: %v", name, err))
		}
		ch, done := make(chan T, notifyQueue), make(chan struct{})
		err := subscribe(ch, done, subOptions{ns: ns, onError: onError, rcvbuf: notifyBufferSize})
		if err != nil {
			// Without CAP_NET_ADMIN the forced buffer size fails; the
			// default size still works for small clusters.
			close(done)
			ch, done = make(chan T, notifyQueue), make(chan struct{})
			err = subscribe(ch, done, subOptions{ns: ns, onError: onError})
		}
		if err != nil {
			close(done)
			return nil, nil, fmt.Errorf("subscribe to %s notifications: %w", name, err)
		}
		return ch, done, nil
	}

	ch, done, err := start()
	if err != nil {
		return err
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		backoff := resubscribeMin
		loggedErr := ""
		for {
			if ch != nil {
				consume(ctx, ch, handle)
				close(done)
				for range ch {
					// Let netlink's reader goroutine finish.
				}
				if ctx.Err() != nil {
					return
				}
				r.MarkDirty(name + " notification subscription ended")
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			ch, done, err = start()
			if err != nil {
				if err.Error() != loggedErr {
					r.log.Warn("kernel notifications unavailable; will retry", "err", err)
					loggedErr = err.Error()
				}
				ch = nil
				backoff = min(2*backoff, resubscribeMax)
				continue
			}
			if loggedErr != "" {
				r.log.Info("kernel notifications restored", "kind", name)
				loggedErr = ""
			}
			backoff = resubscribeMin
		}
	}()
	return nil
}

// consume handles notifications until the subscription ends or ctx is
// cancelled.
func consume[T any](ctx context.Context, ch chan T, handle func(T)) {
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			handle(u)
		}
	}
}

func (r *Reconciler) managesFamily(a netip.Addr) bool {
	fam := unix.AF_INET6
	if a.Is4() {
		fam = unix.AF_INET
	}
	return slices.Contains(r.families, fam)
}

func (r *Reconciler) onRoute(u netlink.RouteUpdate) {
	if u.Table != unix.RT_TABLE_MAIN || u.Flags&unix.RTM_F_CLONED != 0 {
		return
	}
	o := observeRoute(u.Route)
	if !o.Dst.IsValid() || !r.managesFamily(o.Dst.Addr()) {
		return
	}
	r.ixMu.RLock()
	defer r.ixMu.RUnlock()
	ix := r.ix
	want, wanted := ix.routes[o.key()]
	switch u.Type {
	case unix.RTM_DELROUTE:
		if wanted && o.matches(want) {
			r.MarkDirty("route " + o.Route.String() + " deleted")
		}
	case unix.RTM_NEWROUTE:
		if wanted {
			if !o.matches(want) {
				r.MarkDirty("route " + o.Dst.String() + " changed")
			}
		} else if r.owner.ownsRoute(o, ix.devices, false) {
			r.MarkDirty("unexpected route " + o.Route.String())
		}
	}
}

func (r *Reconciler) onNeigh(u netlink.NeighUpdate) {
	r.ixMu.RLock()
	defer r.ixMu.RUnlock()
	ix := r.ix
	if _, ours := ix.devices[u.LinkIndex]; !ours {
		return
	}
	deleted := u.Type == unix.RTM_DELNEIGH
	mac, macErr := MACFromBytes(u.HardwareAddr)
	if u.Family == unix.AF_BRIDGE {
		if u.Flags&netlink.NTF_SELF == 0 || macErr != nil {
			return
		}
		dst := AddrFromIP(u.IP, true)
		k := fdbKey{u.LinkIndex, mac}
		want, wanted := ix.fdb[k]
		static := u.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0
		switch {
		case deleted && wanted && dst == want:
			r.MarkDirty(k.String() + " deleted")
		case !deleted && wanted && (dst != want || u.State&netlink.NUD_PERMANENT == 0):
			r.MarkDirty(k.String() + " changed")
		case !deleted && !wanted && static:
			r.MarkDirty("unexpected " + k.String())
		}
		return
	}
	ip := AddrFromIP(u.IP, u.Family == unix.AF_INET)
	if !ip.IsValid() {
		return
	}
	k := neighKey{u.LinkIndex, ip}
	want, wanted := ix.neighs[k]
	perm := u.State&netlink.NUD_PERMANENT != 0
	switch {
	case deleted && wanted:
		r.MarkDirty(k.String() + " deleted")
	case !deleted && wanted && (!perm || macErr != nil || mac != want):
		r.MarkDirty(k.String() + " changed")
	case !deleted && !wanted && perm:
		r.MarkDirty("unexpected " + k.String())
	}
}

func (r *Reconciler) onLink(u netlink.LinkUpdate) {
	a := u.Link.Attrs()
	r.ixMu.RLock()
	defer r.ixMu.RUnlock()
	ix := r.ix
	if u.Header.Type == unix.RTM_DELLINK {
		if d, ours := ix.devices[a.Index]; ours {
			r.MarkDirty("interface " + d.Name + " deleted")
		}
		if a.Index == r.owner.extIndex {
			r.MarkDirty("external interface " + a.Name + " deleted")
		}
		return
	}
	if d, ours := ix.devices[a.Index]; ours {
		mac, _ := MACFromBytes(a.HardwareAddr)
		if a.Name != d.Name || mac != d.MAC || (d.MTU > 0 && a.MTU != d.MTU) || a.Flags&net.FlagUp == 0 {
			r.MarkDirty("interface " + d.Name + " changed")
		}
	} else if idx, named := ix.names[a.Name]; named && idx != a.Index {
		r.MarkDirty("interface " + a.Name + " recreated")
	}
	if a.Index == r.owner.extIndex && r.owner.extIndex > 0 {
		if changed, oldMTU := r.ext.update(a); changed {
			if oldMTU != 0 && oldMTU != a.MTU {
				r.log.Warn("external interface MTU changed; the tunnel MTU stays as computed at start until flanneld restarts",
					"interface", a.Name, "old", oldMTU, "new", a.MTU)
			}
			r.MarkDirty("external interface " + a.Name + " changed state")
		}
	}
}

func (r *Reconciler) onAddr(u netlink.AddrUpdate) {
	p := PrefixFromIPNet(&u.LinkAddress)
	if !p.IsValid() {
		return
	}
	r.ixMu.RLock()
	defer r.ixMu.RUnlock()
	ix := r.ix
	if d, ours := ix.devices[u.LinkIndex]; ours {
		want := slices.Contains(d.Addrs, p)
		switch {
		case !u.NewAddr && want:
			r.MarkDirty("address " + p.String() + " deleted from " + d.Name)
		case u.NewAddr && !want && !p.Addr().IsLinkLocalUnicast():
			r.MarkDirty("unexpected address " + p.String() + " on " + d.Name)
		}
	}
	if u.LinkIndex == r.owner.extIndex && r.owner.extIndex > 0 && !p.Addr().IsLinkLocalUnicast() {
		// An IPv4 address removal silently drops the routes through it;
		// an addition may make a peer directly reachable.
		if r.ext.addr(p, u.NewAddr) {
			r.MarkDirty("external interface address " + p.String() + " changed")
		}
	}
}
