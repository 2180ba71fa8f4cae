// Package dual holds the lease sources that span etcd's two keyspaces, for
// clusters on their way off flannel v0.11 (issue 18; "spec" below is
// shared/spec/etcd-v2.md):
//
//   - Auto (--etcd-api=auto, the default) runs like v3 mode when the v3
//     keyspace has the network config, and joins a v0.11 cluster in v2
//     mode, with one warning, when only the v2 store has it;
//   - Both (--etcd-api=both) is the migration mode of spec 8.1: the config
//     from v3 else v2, peers from the union of both keyspaces, and our own
//     lease claimed and kept in both, v2 first, since v0.11 nodes lock on
//     the v2 store alone.
//
// The single-keyspace sources are subnet/etcd (v3) and subnet/etcdv2.
package dual

import (
	"context"
	"net/netip"

	"github.com/flannelng/flannel/subnet"
)

// V3 is what the modes need of the v3 source (subnet/etcd.Manager).
type V3 interface {
	subnet.Manager
	// List reads every v3 lease once.
	List(ctx context.Context) ([]subnet.Lease, int64, error)
	// ClaimSubnet makes want our v3 lease: our key adopted, a free one
	// created; held by another node → an error wrapping etcd.ErrTaken.
	ClaimSubnet(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, want netip.Prefix) (subnet.Lease, error)
}

// V2 is what the modes need of the v2 source (subnet/etcdv2.Manager).
type V2 interface {
	subnet.Manager
	// AcquireSubnet claims exactly want in the v2 store; held by another
	// node → an error wrapping etcdv2.ErrTaken.
	AcquireSubnet(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, want netip.Prefix) (subnet.Lease, error)
	// Retract gives our v2 claim up without wedging v0.11 watchers.
	Retract(ctx context.Context, own subnet.Lease) error
	// KeepCopy keeps our v2 copy alive next to the v3 lease (spec 8.1
	// "Renewal").
	KeepCopy(ctx context.Context, cfg *subnet.Config, own subnet.Lease) error
}
