//go:build linux

package suite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// DaemonsOptions describe the real daemons' case.
type DaemonsOptions struct {
	// Timeout bounds each storm (default 5 minutes).
	Timeout time.Duration
	// Settle is how long the daemons are left alone after the last one
	// is ready, before their CPU is read (default 5 s): the join events
	// of the last joiners reach every daemon in it.
	Settle     time.Duration
	DaemonArgs []string
	// ProfileDir, when set, gets each daemon's CPU profile of each
	// storm: fleet-<first|restart|alone>-<host>.pprof.
	ProfileDir string
	Logf       func(format string, args ...any)
}

// Daemons runs flanneld (vxlan) in every host of l at once, into an etcd
// holding only the network config, until every subnet.env is written and
// every daemon is ready; then stops them all (SIGTERM) and starts them
// again at once with their leases in etcd, where no allocation happens;
// then restarts one alone. l must have hosts and no running etcd; l.Close
// removes the rest.
func Daemons(ctx context.Context, l *lab.Lab, o DaemonsOptions) (DaemonsResult, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Settle <= 0 {
		o.Settle = 5 * time.Second
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	hosts := l.Hosts()
	res := DaemonsResult{N: len(hosts)}
	if len(hosts) == 0 {
		return res, errors.New("the lab has no host")
	}
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
	etcdPid := 0
	for _, p := range l.Processes() {
		if len(p.Argv) > 0 && p.Argv[0] == l.Binaries().LabEtcd && !p.Exited() {
			etcdPid = p.Pid
		}
	}
	if etcdPid == 0 {
		return res, errors.New("the lab's etcd process is not among its processes")
	}
	etcdCPU := func() time.Duration { c, _ := ReadProcCPU(etcdPid); return c.Self }
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return l.DialFabric(ctx, addr)
	}}}
	defer hc.CloseIdleConnections()
	received := func() (RequestCounts, error) { return scrapeReceived(ctx, hc, l.EtcdEndpoint()) }

	procs := make([]*lab.Process, len(hosts))
	// storm starts every daemon at once and waits until every subnet.env
	// is newer than before (absent counts as old) and every daemon is
	// ready; it returns both times, from the first start.
	var stormStart time.Time
	storm := func(which []int, run string) (env, ready time.Duration, err error) {
		before := make([]os.FileInfo, len(hosts))
		for _, i := range which {
			before[i], _ = os.Stat(hosts[i].SubnetFile())
		}
		start := time.Now()
		stormStart = start
		for _, i := range which {
			var env []string
			if o.ProfileDir != "" {
				env = append(env, "FLANNELD_CPUPROFILE="+filepath.Join(o.ProfileDir, "fleet-"+run+"-"+hosts[i].Name+".pprof"))
			}
			if procs[i], err = l.StartFlanneldEnv(hosts[i], env, o.DaemonArgs...); err != nil {
				return 0, 0, err
			}
		}
		switch run {
		case "first":
			res.Spawn = time.Since(start)
		case "restart":
			res.SpawnRestart = time.Since(start)
		}
		pending := append([]int(nil), which...)
		for len(pending) > 0 {
			rest := pending[:0]
			for _, i := range pending {
				st, err := os.Stat(hosts[i].SubnetFile())
				if err != nil || (before[i] != nil && os.SameFile(st, before[i]) && !st.ModTime().After(before[i].ModTime())) {
					rest = append(rest, i)
				}
			}
			pending = rest
			if err := stormCheck(ctx, start, o.Timeout, hosts, procs, pending, "subnet.env"); err != nil {
				return 0, 0, err
			}
		}
		env = time.Since(start)
		pending = append([]int(nil), which...)
		for len(pending) > 0 {
			rest := pending[:0]
			for _, i := range pending {
				if !strings.Contains(procs[i].Log(), readyLine) {
					rest = append(rest, i)
				}
			}
			pending = rest
			if err := stormCheck(ctx, start, o.Timeout, hosts, procs, pending, readyLine); err != nil {
				return 0, 0, err
			}
		}
		return env, time.Since(start), nil
	}
	// cpuOf also keeps the children's share of the mean (ip, iptables).
	var children time.Duration
	cpuOf := func(which []int) (mean, most time.Duration) {
		var sum, kids time.Duration
		for _, i := range which {
			c, _ := ReadProcCPU(procs[i].Pid)
			sum += c.Self + c.Children
			kids += c.Children
			most = max(most, c.Self+c.Children)
		}
		children = kids / time.Duration(len(which))
		return sum / time.Duration(len(which)), most
	}
	stop := func(which []int) error {
		for _, i := range which {
			_ = procs[i].Signal(syscall.SIGTERM)
		}
		for _, i := range which {
			if code, err := procs[i].Wait(30 * time.Second); err != nil || code != 0 {
				return fmt.Errorf("flanneld on %s: exit %d, %v:\n%s", hosts[i].Name, code, err, tail(procs[i].Log(), 10))
			}
		}
		return nil
	}
	all := make([]int, len(hosts))
	for i := range all {
		all[i] = i
	}
	// measure runs one storm with etcd's CPU and requests around it.
	logs := func() []string {
		out := make([]string, len(procs))
		for i, p := range procs {
			out[i] = p.Log()
		}
		return out
	}
	measure := func(which []int, run, name string) (env, ready, cpuMean, cpuMost, ecpu time.Duration, srv RequestCounts, err error) {
		srv0, err := received()
		if err != nil {
			return
		}
		e0 := etcdCPU()
		if env, ready, err = storm(which, run); err != nil {
			return
		}
		logf("fleet daemons, %s: every subnet.env after %s, all ready after %s; settling %s", name, FormatDuration(env), FormatDuration(ready), FormatDuration(o.Settle))
		if !sleepCtx(ctx, o.Settle) {
			err = ctx.Err()
			return
		}
		ecpu = etcdCPU() - e0
		srv1, err := received()
		if err != nil {
			return
		}
		srv = srv1.Sub(srv0)
		cpuMean, cpuMost = cpuOf(which)
		return
	}

	if res.First, res.ReadyFirst, res.CPUFirstMean, res.CPUFirstMax, res.EtcdCPUFirst, res.ServerFirst, err = measure(all, "first", "first start"); err != nil {
		return res, err
	}
	res.ChildrenFirst = children
	res.PhasesFirst, res.OwnFirst = DaemonPhases(logs(), stormStart), OwnStartup(logs())
	if err := stop(all); err != nil {
		return res, err
	}
	if res.Restart, res.ReadyRestart, res.CPURestartMean, res.CPURestartMax, res.EtcdCPURestart, res.ServerRestart, err = measure(all, "restart", "restart storm"); err != nil {
		return res, err
	}
	res.ChildrenRestart = children
	res.PhasesRestart, res.OwnRestart = DaemonPhases(logs(), stormStart), OwnStartup(logs())
	if err := stop([]int{0}); err != nil {
		return res, err
	}
	if res.Lone, _, res.LoneCPU, _, _, _, err = measure([]int{0}, "alone", "one daemon restarted alone"); err != nil {
		return res, err
	}
	res.ChildrenLone = children
	return res, stop(all)
}

// stormCheck fails when the bound ran out or a pending daemon exited, and
// otherwise waits one poll.
func stormCheck(ctx context.Context, start time.Time, bound time.Duration, hosts []*lab.Host, procs []*lab.Process, pending []int, what string) error {
	if len(pending) == 0 {
		return nil
	}
	for _, i := range pending {
		if procs[i].Exited() {
			return fmt.Errorf("flanneld on %s exited before %s:\n%s", hosts[i].Name, what, tail(procs[i].Log(), 20))
		}
	}
	if time.Since(start) > bound {
		return fmt.Errorf("%d daemons without %s after %s (first: %s)", len(pending), what, bound, hosts[pending[0]].Name)
	}
	if !sleepCtx(ctx, 20*time.Millisecond) {
		return ctx.Err()
	}
	return nil
}
