// Package alloc is upstream's "alloc" backend: it only leases a subnet and
// writes subnet.env; it programs no data path. Operators use it to hand out
// subnets to something else (and the daemon's tests use it to exercise
// leasing alone).
package alloc

import (
	"context"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/subnet"
)

// New returns the alloc backend.
func New(cfg backend.Config) (backend.Backend, error) { return &allocBackend{cfg: cfg}, nil }

type allocBackend struct{ cfg backend.Config }

// Prepare advertises only the public addresses: upstream's alloc leases
// carry no BackendType.
func (b *allocBackend) Prepare(context.Context, *subnet.LeaseAttrs) (subnet.LeaseAttrs, error) {
	a := subnet.LeaseAttrs{}
	if b.cfg.EnableIPv4 {
		a.PublicIP = b.cfg.Ext.ExtAddr
	}
	if b.cfg.EnableIPv6 {
		a.PublicIPv6 = b.cfg.Ext.ExtV6Addr
	}
	return a, nil
}

func (b *allocBackend) Configure(context.Context, subnet.Lease) (backend.Network, error) {
	return &network{mtu: b.cfg.Ext.MTU, changed: make(chan struct{})}, nil
}

type network struct {
	mtu     int
	changed chan struct{}
}

func (n *network) MTU() int                                        { return n.mtu }
func (n *network) Reconcile(context.Context, []subnet.Lease) error { return nil }
func (n *network) Changed() <-chan struct{}                        { return n.changed }
func (n *network) Close() error                                    { return nil }
