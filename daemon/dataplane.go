package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/pkg/metrics"
	"github.com/flannelng/flannel/subnet"
)

// dataPlane feeds the backend from the lease watcher. A pass over all
// peers (the desired state, rebuilt from scratch) runs at start, on kernel
// drift and periodically; a lease change in between goes through the
// backend's delta path when it has one, so that one lease changing among
// 5,000 costs what one lease costs. The delta path declines (and a pass
// over all peers runs instead) whenever it cannot be sure to end up where
// that pass would.
//
// Not safe for concurrent use: the daemon's main loop owns it.
type dataPlane struct {
	w      subnet.PeerSource
	nw     backend.Network
	inc    backend.Incremental // nil: every change is a pass over all peers
	own    subnet.Lease
	filter *subnet.PeerFilter
	cfg    *subnet.Config
	mx     *metrics.Metrics
	log    *slog.Logger

	lastCount int // peers programmed at the last full pass
	// programmed is the peers handed to the backend, by full passes and
	// deltas alike; onCount (optional) hears of each new value.
	programmed int
	onCount    func(n int)
	peerLog    *peerLog
	// The lease gauges' counts, kept up to date by deltas: leases other
	// than ours, and those of them that hold a subnet of the range.
	others, othersInRange int
}

func newDataPlane(w subnet.PeerSource, nw backend.Network, own subnet.Lease,
	cfg *subnet.Config, mx *metrics.Metrics, log *slog.Logger) *dataPlane {
	d := &dataPlane{w: w, nw: nw, own: own, filter: subnet.NewPeerFilter(cfg, own, log),
		cfg: cfg, mx: mx, log: log, lastCount: -1, programmed: -1, peerLog: newPeerLog(log)}
	d.inc, _ = nw.(backend.Incremental)
	return d
}

// full reconciles against every peer. It reports whether the watcher had
// its first listing (nothing is programmed before that).
func (d *dataPlane) full(ctx context.Context) (synced bool, err error) {
	all, synced := d.w.TakeAll()
	if !synced {
		return false, nil
	}
	all = d.withoutOwn(all)
	d.others, d.othersInRange = 0, 0
	d.count(all, 1)
	peers := d.filter.Filter(all)
	if len(peers) != d.lastCount {
		if d.lastCount >= 0 {
			d.log.Info("Peers changed", "peers", len(peers))
		}
		d.lastCount = len(peers)
	}
	d.peerLog.full(peers)
	d.setProgrammed(len(peers))
	return true, d.nw.Reconcile(ctx, peers)
}

// periodic is the pass every --reconcile-period: over every peer, and a
// full one that re-reads the kernel. The Network is told so (when it
// caches the kernel between full passes): its own resync clock, though
// set to the same period, is out of phase with our ticker, and a tick
// that came a moment before that clock thought a full pass due gave a
// cheap pass, so the kernel was re-read every second period only.
func (d *dataPlane) periodic(ctx context.Context) error {
	if r, ok := d.nw.(backend.Resyncer); ok {
		r.Resync()
	}
	_, err := d.full(ctx)
	return err
}

// changed applies what the watcher reports changed: through the delta
// path when it can, else as a pass over all peers.
func (d *dataPlane) changed(ctx context.Context) error {
	if d.inc != nil {
		gone, came, all := d.w.Changes()
		if !all {
			gone, came = d.withoutOwn(gone), d.withoutOwn(came)
			d.count(gone, -1)
			d.count(came, 1)
			if gone, came, ok := d.filter.Delta(gone, came); ok {
				err := d.inc.Update(ctx, gone, came)
				if !errors.Is(err, backend.ErrFullPass) {
					// Applied (an error is retried by the next pass, as
					// after a full pass): a changed lease is in both.
					d.peerLog.delta(gone, came)
					d.setProgrammed(d.programmed + len(came) - len(gone))
					return err
				}
				d.log.Debug("lease change needs a pass over all peers", "err", err)
			}
		}
	}
	_, err := d.full(ctx)
	return err
}

// setProgrammed records the number of peers handed to the backend.
func (d *dataPlane) setProgrammed(n int) {
	if n == d.programmed {
		return
	}
	d.programmed = n
	if d.onCount != nil {
		d.onCount(n)
	}
}

// count adds (sign 1) or removes (-1) leases other than ours to the lease
// gauges and publishes them: all leases in etcd, ours included, and the
// IPv4 subnets of the range no lease holds.
func (d *dataPlane) count(ls []subnet.Lease, sign int) {
	cfg := d.cfg
	for _, l := range ls {
		d.others += sign
		if cfg.EnableIPv4 && l.Subnet.IsValid() && l.Subnet.Bits() == cfg.SubnetLen && cfg.Network.Contains(l.Subnet.Addr()) {
			d.othersInRange += sign
		}
	}
	d.mx.Leases.Set(float64(d.others + 1))
	if cfg.EnableIPv4 {
		d.mx.SubnetsFree.Set(float64(max(int64(cfg.SubnetCount(false))-int64(d.othersInRange+1), 0)))
	}
}

// withoutOwn drops our own lease (in place). A lease's key is made of its
// subnets, so comparing those compares keys, without building 5,000 key
// strings per pass.
func (d *dataPlane) withoutOwn(ls []subnet.Lease) []subnet.Lease {
	out := ls[:0]
	for _, l := range ls {
		if l.Subnet != d.own.Subnet || l.IPv6Subnet != d.own.IPv6Subnet {
			out = append(out, l)
		}
	}
	return out
}
