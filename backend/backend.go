// Package backend defines what a data-plane backend (vxlan, host-gw, udp)
// provides to the daemon, and the registry the daemon builds from the
// backends it links. There are no init-time side effects: cmd/flanneld names
// the backends it wants.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// ExternalInterface is the underlay interface chosen for inter-host traffic.
type ExternalInterface struct {
	Name  string
	Index int
	MTU   int

	IfaceAddr   netip.Addr // IPv4 address on the interface (invalid if none)
	IfaceV6Addr netip.Addr // IPv6 address on the interface (invalid if none)
	ExtAddr     netip.Addr // public IPv4 other nodes use to reach us
	ExtV6Addr   netip.Addr // public IPv6
}

// Config is what a backend is built from.
type Config struct {
	EnableIPv4  bool
	EnableIPv6  bool
	Network     netip.Prefix // IPv4 overlay network
	IPv6Network netip.Prefix
	// Raw is the "Backend" object of the network config, as written by the
	// operator (keys are matched case-insensitively, as upstream does).
	Raw json.RawMessage
	Ext ExternalInterface
	// NetnsPath names the network namespace to program (a /var/run/netns or
	// /proc/PID/ns/net path). Empty means the daemon's own namespace; tests
	// set it to drive a backend inside a lab namespace without switching
	// the test's threads.
	NetnsPath string
	Log       *slog.Logger
	// FullResync is the longest time between full passes (kernel dump
	// and diff) when nobody asks for one (see Resyncer); zero means the
	// kernel package's default.
	FullResync time.Duration
	// OnPass, when set, sees a report of every kernel reconcile pass
	// (metrics).
	OnPass func(PassReport)
}

// Backend is one data-plane implementation.
type Backend interface {
	// Prepare readies local devices before our lease is known and returns
	// the attributes to advertise in the lease. prev is our lease's
	// attributes as etcd last stored them (nil for a new node), so that a
	// device which must be recreated gets the MAC peers already have.
	Prepare(ctx context.Context, prev *subnet.LeaseAttrs) (subnet.LeaseAttrs, error)
	// Configure finishes local setup once our lease is held (device
	// address, link up) and returns the running network.
	Configure(ctx context.Context, own subnet.Lease) (Network, error)
}

// Network is the running data plane of one backend.
type Network interface {
	// MTU is the MTU pods should use (written as FLANNEL_MTU).
	MTU() int
	// Reconcile brings the kernel in line with the state wanted for the
	// given remote leases (our own lease excluded) and changes only what
	// differs. It is safe to call again and again; an error for one peer
	// does not stop the others from being programmed.
	Reconcile(ctx context.Context, peers []subnet.Lease) error
	// Changed fires when the kernel reports a change to objects the
	// network owns (a deleted route, neighbour, FDB entry or device), so
	// the daemon runs Reconcile soon.
	Changed() <-chan struct{}
	// Close stops kernel subscriptions. It does not remove kernel state: a
	// restart must not drop traffic.
	Close() error
}

// Incremental is implemented by Networks that can apply a change to a few
// leases without a pass over all peers: at 5,000 peers a pass costs
// milliseconds, a change to one lease microseconds.
type Incremental interface {
	// Update applies a change: gone are leases as last handed to
	// Reconcile or Update (deleted or replaced since), came are the
	// current versions of new or replaced ones. It returns
	// ErrFullPass, having changed nothing it cannot repair, when
	// the caller must run Reconcile with all peers instead.
	Update(ctx context.Context, gone, came []subnet.Lease) error
}

// Resyncer is implemented by Networks that, between full passes (a kernel
// dump and diff), compare against their cached view of the kernel
// (package kernel). Resync makes the next Reconcile a full pass. The
// daemon calls it before its pass every --reconcile-period, so that pass
// is a full one whatever the phase of the Network's own FullResync clock.
type Resyncer interface {
	Resync()
}

// ErrFullPass is Incremental.Update's answer when a change cannot be
// applied on its own: call Reconcile with all peers instead.
var ErrFullPass = errors.New("kernel: this change needs a pass over the whole wanted state")

// PassReport describes one reconcile pass, for metrics.
type PassReport struct {
	// Full is true when the pass read the kernel (dump and diff).
	Full bool
	// Delta is true for a pass over the changed leases only (Update).
	Delta bool
	// Repair is true when a kernel change we did not make (a deleted
	// route, a changed MAC, a vanished device) triggered the pass: its
	// writes repair drift.
	Repair   bool
	Duration time.Duration
	// Writes counts successful kernel writes by object ("route", "neigh",
	// "fdb") and operation ("set", "del").
	Writes map[[2]string]int
	Errors int
}

// Factory builds a backend.
type Factory func(Config) (Backend, error)

// Registry maps lower-case backend type names to factories.
type Registry map[string]Factory

// Known lists the registered type names, sorted.
func (r Registry) Known() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the factory for a Backend.Type value (case-insensitive).
func (r Registry) Lookup(typ string) (Factory, error) {
	f, ok := r[strings.ToLower(typ)]
	if !ok {
		return nil, fmt.Errorf("unknown backend type %q in Backend.Type (known types: %s)", typ, strings.Join(r.Known(), ", "))
	}
	return f, nil
}
