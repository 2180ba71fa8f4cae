package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// store is flannel's data in etcd, as the commands read and write it.
type store struct {
	cli *clientv3.Client
	m   *etcdsubnet.Manager
	o   *options
}

func connect(o *options) (*store, error) {
	// With a username, clientv3.New authenticates before it returns and,
	// without a DialTimeout (which etcdsubnet.NewClient does not set), waits
	// for etcd forever. A command must give up: the client left behind
	// dies with the process.
	type result struct {
		cli *clientv3.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		cli, err := etcdsubnet.NewClient(o.Etcd)
		done <- result{cli, err}
	}()
	var cli *clientv3.Client
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		cli = r.cli
	case <-time.After(o.Timeout):
		return nil, fmt.Errorf("connect to etcd %s as %q: no answer within %s", strings.Join(o.Etcd.Endpoints, ","), o.Etcd.Username, o.Timeout)
	}
	m := etcdsubnet.New(cli, etcdsubnet.Options{
		Prefix: o.Prefix, RPCTimeout: o.Timeout,
		// The manager logs etcd outages for a daemon; a command reports
		// its errors itself.
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return &store{cli: cli, m: m, o: o}, nil
}

func (s *store) Close() { s.cli.Close() }

func (s *store) endpoints() string { return strings.Join(s.o.Etcd.Endpoints, ",") }

// entry is one key below <prefix>/subnets/ with its raw value and, when both
// parse, the lease it holds.
type entry struct {
	Key         string // full etcd key
	Value       []byte
	EtcdLease   int64 // 0: no etcd lease (a reservation)
	ModRevision int64
	Lease       subnet.Lease
	Err         error // the key name or the value does not parse
}

// parseEntry decodes one key and value with the daemon's codecs.
func parseEntry(subnetsPrefix, key string, value []byte, etcdLease, modRev int64) entry {
	e := entry{Key: key, Value: value, EtcdLease: etcdLease, ModRevision: modRev}
	name := strings.TrimPrefix(key, subnetsPrefix)
	v4, v6, err := subnet.ParseKey(name)
	if err == nil && strings.Contains(name, "/") {
		err = fmt.Errorf("invalid subnet key %q", name)
	}
	if err != nil {
		e.Err = err
		return e
	}
	e.Lease = subnet.Lease{Subnet: v4, IPv6Subnet: v6}
	if e.Lease.Attrs, err = subnet.DecodeAttrs(value); err != nil {
		e.Err = err
	}
	return e
}

// list reads every key below <prefix>/subnets/ with one range request.
func (s *store) list(ctx context.Context) ([]entry, error) {
	prefix := s.m.SubnetsPrefix()
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	resp, err := s.cli.Get(cctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s on etcd %s: %w", prefix, s.endpoints(), err)
	}
	out := make([]entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, parseEntry(prefix, string(kv.Key), kv.Value, kv.Lease, kv.ModRevision))
	}
	return out, nil
}

// leases returns the entries that parse, as the daemon sees them.
func leasesOf(es []entry) []subnet.Lease {
	var out []subnet.Lease
	for _, e := range es {
		if e.Err == nil {
			out = append(out, e.Lease)
		}
	}
	return out
}

// liveLeases returns the IDs of the etcd leases that exist, with one
// LeaseLeases request.
func (s *store) liveLeases(ctx context.Context) (map[int64]bool, error) {
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	resp, err := s.cli.Leases(cctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd leases on %s: %w", s.endpoints(), err)
	}
	out := make(map[int64]bool, len(resp.Leases))
	for _, l := range resp.Leases {
		out[int64(l.ID)] = true
	}
	return out, nil
}

// ttlRequests bounds the TimeToLive requests in flight.
const ttlRequests = 16

// ttls asks etcd for the remaining TTL of each distinct etcd lease: one
// TimeToLive request per lease (many keys may share one), the only way
// etcd reports a TTL, sent ttlRequests at a time. A lease etcd no longer
// knows gets -1.
func (s *store) ttls(ctx context.Context, es []entry) (map[int64]int64, error) {
	var ids []int64
	keyOf := map[int64]string{}
	for _, e := range es {
		if _, dup := keyOf[e.EtcdLease]; e.EtcdLease == 0 || dup {
			continue
		}
		keyOf[e.EtcdLease] = e.Key
		ids = append(ids, e.EtcdLease)
	}
	type result struct {
		id, ttl int64
		err     error
	}
	results := make(chan result, len(ids))
	sem := make(chan struct{}, ttlRequests)
	for _, id := range ids {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
			defer cancel()
			resp, err := s.cli.TimeToLive(cctx, clientv3.LeaseID(id))
			if err != nil {
				results <- result{id: id, err: err}
				return
			}
			results <- result{id: id, ttl: resp.TTL}
		}()
	}
	out := make(map[int64]int64, len(ids))
	var first error
	for range ids {
		r := <-results
		if r.err != nil {
			if first == nil {
				first = fmt.Errorf("read TTL of etcd lease %x (key %s): %w", r.id, keyOf[r.id], r.err)
			}
			continue
		}
		out[r.id] = r.ttl
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}
