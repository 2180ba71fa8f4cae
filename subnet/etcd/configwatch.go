package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flannelng/flannel/subnet"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"
)

// The daemon used to read <prefix>/config every 5 s to notice a changed
// config: 12 requests per node per minute, 1,000 per second for etcd at
// 5,000 nodes (issue 19). A watch on the key costs etcd nothing while the
// config does not change.
//
// That poll was also what noticed an etcd outage on an idle node, and an
// etcd watch does not: the client re-establishes a broken watch by itself,
// silently, however long etcd is gone. So the watch here ends on the
// signals that mean etcd may be gone, and each end is followed by a read
// of the key through rpc, which logs the outage's start (the read fails)
// and its end (a read succeeds) exactly as any other request does:
//   - WithRequireLeader: the member ends the watch when it loses its
//     leader;
//   - the client connection not READY for connGrace: the gRPC keepalive
//     (NewClient: every few seconds on a silent connection) turns a dead
//     or cut-off etcd into a closed transport, and a stopped etcd closes
//     it at once. A connection back within connGrace costs nothing: the
//     client resumes the watch where it was. An overloaded etcd that
//     misses keepalives drops every client's connection at once
//     (measured with 5,000 nodes, docs/benchmarks.md), and a read by each
//     on every drop would add to its load.
//
// The read is also where the watch starts again: from the read's revision,
// so a change made while no watch ran is the read's value, and one made
// after it is the watch's first event. None is lost.
var _ subnet.ConfigWatcher = (*Manager)(nil)

// WatchConfig calls changed with the config's raw text each time it
// differs from the last one delivered (at first: running), and with the
// error that makes it invalid, if any. A deleted config is not reported.
// It returns nil when ctx ends; it retries everything else with back-off.
func (m *Manager) WatchConfig(ctx context.Context, running []byte, changed func(raw []byte, err error)) error {
	cw := &configWatch{m: m, last: string(running), changed: changed, grace: connGrace}
	cw.run(ctx, 0)
	return nil
}

// configWatch is one WatchConfig.
type configWatch struct {
	m       *Manager
	last    string // the text last delivered
	changed func([]byte, error)
	grace   time.Duration // connGrace; tests change it
}

// connGrace is how long the client connection may be down before the
// watch is ended and the key read (which logs an outage): longer than a
// reconnect to a live etcd (NewClient's back-off is at most 2 s).
const connGrace = 5 * time.Second

// configWatchBackoff bounds the wait between two reads after a watch
// ended. During an outage each read itself waits for the connection
// (RPCTimeout), so etcd's return is noticed at once when a read is
// waiting, and within this bound when none is.
const configWatchBackoff = 2 * time.Second

// run reads and watches until ctx ends. A non-zero rev skips the first
// read and watches from rev+1 (tests: a watch from a compacted revision).
func (cw *configWatch) run(ctx context.Context, rev int64) {
	m := cw.m
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if rev == 0 {
			var err error
			if rev, err = cw.read(ctx); err != nil {
				// rpc logged an outage; a config that cannot be
				// parsed was delivered. Try again.
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, configWatchBackoff)
				continue
			}
		}
		began := time.Now()
		why := cw.follow(ctx, rev)
		rev = 0
		if ctx.Err() != nil {
			return
		}
		m.log.Debug("etcd watch for "+m.ConfigKey()+" ended, reading the key again", "reason", why)
		if time.Since(began) > 10*time.Second {
			// A watch that held for a while was healthy: start the
			// back-off afresh.
			backoff = 100 * time.Millisecond
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, configWatchBackoff)
	}
}

// read gets the config through rpc (which logs an outage's start and
// end), delivers it when it changed, and returns the revision to watch
// after. A missing key is revision to watch from, not an error.
func (cw *configWatch) read(ctx context.Context) (int64, error) {
	m := cw.m
	var resp *clientv3.GetResponse
	err := m.rpc(ctx, "get "+m.ConfigKey(), func(ctx context.Context) (err error) {
		resp, err = m.cli.Get(ctx, m.ConfigKey())
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) > 0 {
		cw.deliver(resp.Kvs[0].Value)
	}
	return resp.Header.Revision, nil
}

// deliver passes raw on when it differs from the last text delivered.
func (cw *configWatch) deliver(raw []byte) {
	if string(raw) == cw.last {
		return
	}
	cw.last = string(raw)
	_, err := subnet.ParseConfig(raw)
	if err != nil {
		err = fmt.Errorf("network config at %s: %w", cw.m.ConfigKey(), err)
	}
	cw.changed(raw, err)
}

// follow watches the key from rev+1 and delivers what is put there until
// the watch ends (ErrNoLeader, compaction, the client connection lost) or
// ctx does. It says why it ended.
func (cw *configWatch) follow(ctx context.Context, rev int64) string {
	m := cw.m
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan struct{})
	go func() {
		connDown(wctx, m.cli, cw.grace)
		close(lost)
	}()
	events := m.cli.Watch(clientv3.WithRequireLeader(wctx), m.ConfigKey(), clientv3.WithRev(rev+1))
	for {
		select {
		case <-ctx.Done():
			return "cancelled"
		case <-lost:
			if ctx.Err() != nil {
				return "cancelled"
			}
			return "connection to etcd down for " + cw.grace.String()
		case resp, ok := <-events:
			switch {
			case !ok:
				return "watch closed"
			case resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted):
				m.log.Info("etcd watch fell behind compaction horizon, reading the key again", "key", m.ConfigKey(), "compactRevision", resp.CompactRevision)
				return "compacted"
			case resp.Err() != nil:
				return resp.Err().Error()
			case resp.Canceled:
				return "watch cancelled by etcd"
			}
			for _, ev := range resp.Events {
				// A deleted config is not reported, as GetConfig's
				// "not found" was not: the daemon keeps its config.
				if ev.Type == clientv3.EventTypePut {
					cw.deliver(ev.Kv.Value)
				}
			}
		}
	}
}

// connDown returns when the client's connection, once READY, has not
// been READY again for grace (etcd stopped, or the gRPC keepalive found it
// dead), or when ctx ends. While the connection stays up it costs etcd
// nothing.
func connDown(ctx context.Context, cli *clientv3.Client, grace time.Duration) {
	conn := cli.ActiveConnection()
	if conn == nil {
		<-ctx.Done()
		return
	}
	s := conn.GetState()
	ready := s == connectivity.Ready
	for {
		if ready && s != connectivity.Ready {
			if s == connectivity.Shutdown {
				return
			}
			// Down: give the client grace to reconnect.
			gctx, cancel := context.WithTimeout(ctx, grace)
			for s != connectivity.Ready && conn.WaitForStateChange(gctx, s) {
				s = conn.GetState()
			}
			cancel()
			if ctx.Err() != nil || s != connectivity.Ready {
				return
			}
		}
		if !conn.WaitForStateChange(ctx, s) {
			return
		}
		s = conn.GetState()
		ready = ready || s == connectivity.Ready
	}
}
