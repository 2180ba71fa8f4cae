//go:build linux

package suite

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// IdleOptions describe the idle measurement: a daemon with K vxlan peers
// and --ip-masq, left alone for Window.
type IdleOptions struct {
	K      int
	Window time.Duration
	Resync time.Duration // --iptables-resync (default 5 s)
	// DaemonArgs are added after --ip-masq and --iptables-resync;
	// DaemonEnv to the daemon's environment.
	DaemonArgs []string
	DaemonEnv  []string
	Logf       func(format string, args ...any)
}

// idleSettle is how long the daemon is left alone after it is ready and
// before the window opens: startup's rule writes and the echoes of its
// kernel writes are over by then.
const idleSettle = 5 * time.Second

// Idle starts etcd and a vxlan daemon with K peers and --ip-masq on l's
// first host, waits until it is ready and settled, then counts over Window
// every process it starts (the process events connector sees each fork,
// however short-lived) and its CPU time.
func Idle(ctx context.Context, l *lab.Lab, o IdleOptions) (IdleResult, error) {
	if o.Resync <= 0 {
		o.Resync = 5 * time.Second
	}
	res := IdleResult{K: o.K, Window: o.Window, Resync: o.Resync, Tables: 2}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Window <= 0 {
		return res, errors.New("idle window must be positive")
	}
	if o.Resync%time.Second != 0 {
		return res, fmt.Errorf("resync %s: flanneld takes whole seconds", o.Resync)
	}
	hosts := l.Hosts()
	if len(hosts) == 0 {
		return res, errors.New("the lab has no host")
	}
	h := hosts[0]
	if err := l.StartEtcd(ctx); err != nil {
		return res, err
	}
	cli, err := l.Etcd(ctx)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, Prefix+"/config", NetConfig(VXLAN)); err != nil {
		return res, fmt.Errorf("write network config: %w", err)
	}
	grant, err := cli.Grant(ctx, leaseTTL)
	if err != nil {
		return res, fmt.Errorf("grant etcd lease: %w", err)
	}
	peers, err := FakePeers(0, o.K)
	if err != nil {
		return res, err
	}
	if err := writePeers(ctx, cli, VXLAN, peers, grant.ID, txnBatch); err != nil {
		return res, err
	}
	args := append([]string{"--ip-masq", "--iptables-resync=" + strconv.Itoa(int(o.Resync/time.Second))}, o.DaemonArgs...)
	p, err := l.StartFlanneldEnv(h, o.DaemonEnv, args...)
	if err != nil {
		return res, err
	}
	defer p.Stop(5 * time.Second)
	err = poll(ctx, startupTimeout(o.K), 20*time.Millisecond, p, func() (bool, error) {
		_, err := lab.ReadSubnetEnv(h.SubnetFile())
		return err == nil, nil
	})
	if err != nil {
		return res, fmt.Errorf("idle daemon startup: %w", err)
	}
	if !sleep(ctx, idleSettle) {
		return res, ctx.Err()
	}

	fc, err := CountForks(p.Pid)
	if err != nil {
		return res, err
	}
	cpu0, err0 := ReadProcCPU(p.Pid)
	thr0, err1 := ReadThreadsCPU(p.Pid)
	ok := sleep(ctx, o.Window)
	cpu1, err2 := ReadProcCPU(p.Pid)
	thr1, err3 := ReadThreadsCPU(p.Pid)
	res.Forks = fc.Stop()
	if !ok {
		return res, ctx.Err()
	}
	if err := errors.Join(err0, err1, err2, err3); err != nil {
		return res, fmt.Errorf("daemon CPU: %w", err)
	}
	if p.Exited() {
		return res, fmt.Errorf("flanneld exited during the idle window:\n%s", tail(p.Log(), 20))
	}
	res.CPU, res.CPUTicks, res.ChildrenCPU = thr1-thr0, cpu1.Self-cpu0.Self, cpu1.Children-cpu0.Children
	if _, err := p.Stop(5 * time.Second); err != nil {
		return res, fmt.Errorf("stop flanneld: %w", err)
	}
	logf("idle: %d processes in %s, daemon CPU %s", res.Forks.Processes, o.Window, res.CPU)
	return res, nil
}
