package suite

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Prefix is flanneld's default etcd prefix.
const Prefix = "/coreos.com/network"

// txnBatch is how many puts one preload transaction holds (etcd refuses
// more than 128 operations per transaction by default).
const txnBatch = 100

// leaseTTL is upstream's: every node's key hangs on a 24 h etcd lease.
const leaseTTL = 24 * 60 * 60

// writePeers stores the peers' leases, attached to the etcd lease id,
// batch puts per transaction.
func writePeers(ctx context.Context, cli *clientv3.Client, backend string, peers []Peer, id clientv3.LeaseID, batch int) error {
	for len(peers) > 0 {
		n := min(batch, len(peers))
		ops := make([]clientv3.Op, 0, n)
		for _, p := range peers[:n] {
			v, err := p.Value(backend)
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(Prefix+"/subnets/"+p.Key(), v, clientv3.WithLease(id)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("write leases of fake peers %d to %d: %w", peers[0].Index, peers[n-1].Index, err)
		}
		peers = peers[n:]
	}
	return nil
}

// deletePeers removes the peers' leases in one transaction per batch.
func deletePeers(ctx context.Context, cli *clientv3.Client, peers []Peer, batch int) error {
	for len(peers) > 0 {
		n := min(batch, len(peers))
		ops := make([]clientv3.Op, 0, n)
		for _, p := range peers[:n] {
			ops = append(ops, clientv3.OpDelete(Prefix+"/subnets/"+p.Key()))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("delete leases of fake peers %d to %d: %w", peers[0].Index, peers[n-1].Index, err)
		}
		peers = peers[n:]
	}
	return nil
}
