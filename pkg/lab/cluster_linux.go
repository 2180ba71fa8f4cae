//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdCluster is a multi-member etcd cluster in the lab. Every member runs
// in a node namespace of its own on the fabric (an external node), so one
// member can be killed, restarted, or cut off from the fabric
// (Disconnect) while the others carry on.
type EtcdCluster struct {
	l       *Lab
	Members []*EtcdMember
}

// EtcdMember is one lab-etcd of an EtcdCluster.
type EtcdMember struct {
	Name      string // e1, e2, ...
	Node      *Host  // the external node it runs in; its log is Node.Dir/etcd.log
	ClientURL string // http://<node IP>:2379
	PeerURL   string // http://<node IP>:2380

	argv []string
	mu   sync.Mutex
	proc *Process
}

// Process is the member's current (or last) lab-etcd process.
func (m *EtcdMember) Process() *Process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// StartEtcdCluster adds n external nodes and runs one lab-etcd member in
// each, forming a new n-member cluster, and waits (bounded) until every
// member serves clients. extraArgs go to every member's command line.
// Members keep their data in Dir/<node>/etcd, so Restart after Kill
// rejoins with the member's own log.
func (l *Lab) StartEtcdCluster(ctx context.Context, n int, extraArgs ...string) (*EtcdCluster, error) {
	if l.bin.LabEtcd == "" {
		return nil, errors.New("start etcd cluster: Options.Binaries.LabEtcd is not set")
	}
	if n < 1 || n > 9 {
		return nil, fmt.Errorf("start etcd cluster: %d members; want 1 to 9", n)
	}
	c := &EtcdCluster{l: l}
	var initial []string
	for i := 1; i <= n; i++ {
		node, err := l.AddExternal(ctx)
		if err != nil {
			return nil, fmt.Errorf("start etcd cluster: %w", err)
		}
		m := &EtcdMember{
			Name:      fmt.Sprintf("e%d", i),
			Node:      node,
			ClientURL: "http://" + netip.AddrPortFrom(node.IP, etcdClientPort).String(),
			PeerURL:   "http://" + netip.AddrPortFrom(node.IP, etcdClientPort+1).String(),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.argv = append([]string{l.bin.LabEtcd,
			"--name=" + m.Name,
			"--data-dir=" + filepath.Join(m.Node.Dir, "etcd"),
			"--listen-client-urls=" + m.ClientURL,
			"--advertise-client-urls=" + m.ClientURL,
			"--listen-peer-urls=" + m.PeerURL,
			"--initial-advertise-peer-urls=" + m.PeerURL,
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-state=new",
		}, extraArgs...)
	}
	// All members start before any waits: a member reports ready only
	// once a quorum has elected a leader.
	for _, m := range c.Members {
		if err := c.start(m); err != nil {
			return nil, err
		}
	}
	for _, m := range c.Members {
		if err := c.waitReady(ctx, m); err != nil {
			return nil, err
		}
	}
	l.logf("lab %s: etcd cluster ready at %s", l.prefix, c.EndpointList())
	return c, nil
}

func (c *EtcdCluster) start(m *EtcdMember) error {
	p, err := c.l.StartProcess(m.Node.NS, filepath.Join(m.Node.Dir, "etcd.log"), nil, m.argv...)
	if err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()
	return nil
}

func (c *EtcdCluster) waitReady(ctx context.Context, m *EtcdMember) error {
	p := m.Process()
	err := WaitFor(ctx, etcdStartTimeout, "etcd member "+m.Name+" ready", func() error {
		if strings.Contains(p.Log(), etcdReadyLine+"\n") {
			return nil
		}
		if p.Exited() {
			code, _ := p.Wait(0)
			return Permanent(fmt.Errorf("exited with code %d:\n%s", code, tail(p.Log(), 20)))
		}
		return errors.New("no ready line yet")
	})
	if err != nil {
		_, _ = p.Stop(stopGrace)
		return fmt.Errorf("%w:\n%s", err, tail(p.Log(), 20))
	}
	return nil
}

// Endpoints are the members' client URLs.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// EndpointList is Endpoints joined with commas, as --etcd-endpoints takes
// them.
func (c *EtcdCluster) EndpointList() string { return strings.Join(c.Endpoints(), ",") }

// Config is a client configuration for every member that works from the
// test process (connections are opened inside the fabric namespace).
func (c *EtcdCluster) Config() clientv3.Config {
	cfg := c.l.EtcdConfig()
	cfg.Endpoints = c.Endpoints()
	return cfg
}

// Client returns a client of every member; the lab closes it on Close.
func (c *EtcdCluster) Client(ctx context.Context) (*clientv3.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(c.Config())
	if err != nil {
		return nil, fmt.Errorf("etcd cluster client: %w", err)
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.l.closed {
		_ = cli.Close()
		return nil, errors.New("lab is closed")
	}
	c.l.clients = append(c.l.clients, cli)
	return cli, nil
}

// Leader asks the members that answer which of them leads, and returns
// that member. It fails if no answering member knows a leader.
func (c *EtcdCluster) Leader(ctx context.Context, cli *clientv3.Client) (*EtcdMember, error) {
	var errs []error
	for _, m := range c.Members {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		if st.Leader == 0 {
			errs = append(errs, fmt.Errorf("%s: no leader", m.Name))
			continue
		}
		if st.Leader == st.Header.MemberId {
			return m, nil
		}
	}
	return nil, fmt.Errorf("etcd cluster leader: %w", errors.Join(errs...))
}

// Kill SIGKILLs a member (its data stays for Restart).
func (c *EtcdCluster) Kill(m *EtcdMember) error {
	if err := m.Process().Kill(); err != nil {
		return fmt.Errorf("kill etcd member %s: %w", m.Name, err)
	}
	return nil
}

// Restart starts a stopped member again with its data directory and waits
// until it serves clients.
func (c *EtcdCluster) Restart(ctx context.Context, m *EtcdMember) error {
	if p := m.Process(); p != nil && !p.Exited() {
		return fmt.Errorf("restart etcd member %s: still running as pid %d", m.Name, p.Pid)
	}
	if err := c.start(m); err != nil {
		return err
	}
	return c.waitReady(ctx, m)
}

// Disconnect cuts node h off the fabric: the fabric end of its veth goes
// down, so everything it sends or is sent is dropped without a reset, as
// in a network partition. Reconnect undoes it.
func (l *Lab) Disconnect(h *Host) error { return l.setFabricPort(h, false) }

// Reconnect puts a node cut off by Disconnect back on the fabric.
func (l *Lab) Reconnect(h *Host) error { return l.setFabricPort(h, true) }

func (l *Lab) setFabricPort(h *Host, up bool) error {
	return withHandle(l.fabricNS, func(fh *netlink.Handle) error {
		link, err := fh.LinkByName(h.veth)
		if err != nil {
			return fmt.Errorf("find %s (fabric port of %s): %w", h.veth, h.Name, err)
		}
		if up {
			err = fh.LinkSetUp(link)
		} else {
			err = fh.LinkSetDown(link)
		}
		if err != nil {
			return fmt.Errorf("set %s (fabric port of %s) up=%t: %w", h.veth, h.Name, up, err)
		}
		return nil
	})
}
