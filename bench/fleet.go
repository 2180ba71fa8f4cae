//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/flannelng/flannel/bench/suite"
	"github.com/flannelng/flannel/pkg/lab"
)

// fleetOptions are the fleet case's flags (issue 19: etcd's view of many
// nodes).
type fleetOptions struct {
	on           bool
	storms       []int
	idleNs       []int
	window       time.Duration
	churn        float64
	poll         bool
	daemons      int
	stormTimeout time.Duration
}

func (f *fleetOptions) register(fs *flag.FlagSet) {
	f.storms, f.idleNs = []int{100, 1000}, []int{1000, 5000}
	fs.BoolVar(&f.on, "fleet", true, "run the fleet case: simulated lease sources and real daemons against one etcd (false: skip it)")
	fs.Func("fleet-storms", "join storm sizes, comma-separated (default 100,1000; empty: none)", intList(&f.storms))
	fs.Func("fleet-idle-ns", "idle fleet sizes, comma-separated (default 1000,5000; empty: none)", intList(&f.idleNs))
	fs.DurationVar(&f.window, "fleet-idle", 2*time.Minute, "idle fleets' idle window (0: no idle fleets)")
	fs.Float64Var(&f.churn, "fleet-churn", 0.1, "share of each idle fleet restarted at once after its window (0: no churn)")
	fs.BoolVar(&f.poll, "fleet-poll", false, "idle nodes read the config every 5 s, as before issue 19, instead of watching it (for comparison)")
	fs.IntVar(&f.daemons, "fleet-daemons", 100, "real flanneld processes started at once, then restarted at once (0: skip)")
	fs.DurationVar(&f.stormTimeout, "fleet-storm-timeout", 10*time.Minute, "bound of each join storm")
}

// intList parses "100,1000" into *dst; an empty value means none.
func intList(dst *[]int) func(string) error {
	return func(v string) error {
		var out []int
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return fmt.Errorf("%q is not a positive count", s)
			}
			out = append(out, n)
		}
		*dst = out
		return nil
	}
}

func (f *fleetOptions) check() error {
	switch {
	case f.window < 0:
		return fmt.Errorf("--fleet-idle %s: must not be negative", f.window)
	case f.churn < 0 || f.churn > 1:
		return fmt.Errorf("--fleet-churn %g: want 0 to 1", f.churn)
	case f.daemons < 0 || f.daemons > 1000:
		return fmt.Errorf("--fleet-daemons %d: want 0 to 1000 (the lab's limit)", f.daemons)
	case f.stormTimeout <= 0:
		return fmt.Errorf("--fleet-storm-timeout %s: must be positive", f.stormTimeout)
	}
	return nil
}

// runFleet runs the fleet's cases and prints each figure as it comes. It
// returns the figures and the names of the cases that failed.
// dir, when set, keeps the real daemons' lab (logs) under dir/fleet-daemons;
// profileDir, when set, gets a CPU profile of the simulated nodes (this
// process) for each simulated case, and of each real daemon.
func runFleet(ctx context.Context, f fleetOptions, dir, profileDir string, bin lab.Binaries, out io.Writer, logf func(string, ...any)) (suite.FleetResults, []string) {
	var res suite.FleetResults
	var failed []string
	if !f.on {
		return res, nil
	}
	o := suite.FleetOptions{LabEtcd: bin.LabEtcd, StormTimeout: f.stormTimeout, Window: f.window, Churn: f.churn, Poll: f.poll, Logf: logf}
	// The machine may be shared: each case says how busy it was when it
	// started.
	load := func(name string) { fmt.Fprintf(out, "%s: load average %s before it\n", name, loadAverage()) }
	// profile runs fn with this process's CPU profile in profileDir/name.pprof.
	profile := func(name string, fn func()) {
		if profileDir == "" {
			fn()
			return
		}
		pf, err := os.Create(filepath.Join(profileDir, name+".pprof"))
		if err == nil {
			err = pprof.StartCPUProfile(pf)
		}
		if err != nil {
			logf("fleet: no profile of %s: %v", name, err)
			fn()
			return
		}
		fn()
		pprof.StopCPUProfile()
		pf.Close()
	}
	fail := func(name string, err error) {
		fmt.Fprintf(out, "%s: FAILED: %v\n", name, err)
		failed = append(failed, name)
	}
	// Each storm twice: the allocation protocol alone, then the daemon's
	// whole start-up with its watchers.
	for _, n := range f.storms {
		for _, acquireOnly := range []bool{true, false} {
			if ctx.Err() != nil {
				break
			}
			name := fmt.Sprintf("fleet-storm-%d", n)
			if acquireOnly {
				name += "-acquire"
			}
			load(name)
			so := o
			so.AcquireOnly = acquireOnly
			var r suite.StormResult
			var err error
			profile(name, func() { r, err = suite.JoinStorm(ctx, so, n) })
			if err != nil {
				fail(name, err)
				continue
			}
			res.Storms = append(res.Storms, r)
			fmt.Fprintln(out, r.Line())
		}
	}
	if f.daemons > 0 && ctx.Err() == nil {
		load(fmt.Sprintf("fleet real daemons N=%d", f.daemons))
		r, err := fleetDaemons(ctx, f.daemons, dir, profileDir, bin, logf)
		if err != nil {
			fail(fmt.Sprintf("fleet-daemons-%d", f.daemons), err)
		} else {
			res.Daemons = append(res.Daemons, r)
			fmt.Fprintln(out, r.Line())
		}
	}
	for _, n := range f.idleNs {
		if f.window == 0 || ctx.Err() != nil {
			break
		}
		load(fmt.Sprintf("fleet idle N=%d", n))
		var r suite.FleetIdleResult
		var churns []suite.ChurnResult
		var err error
		profile(fmt.Sprintf("fleet-idle-%d", n), func() { r, churns, err = suite.IdleFleet(ctx, o, n) })
		if r.Window > 0 && r.Server != nil {
			res.Idle = append(res.Idle, r)
			fmt.Fprintln(out, r.Line())
		}
		for _, c := range churns {
			res.Churn = append(res.Churn, c)
			fmt.Fprintln(out, c.Line())
		}
		if err != nil {
			fail(fmt.Sprintf("fleet-idle-%d", n), err)
		}
	}
	return res, failed
}

// fleetDaemons builds a lab of n hosts (about a second per ten hosts) and
// runs the real daemons' case in it.
func fleetDaemons(ctx context.Context, n int, dir, profileDir string, bin lab.Binaries, logf func(string, ...any)) (suite.DaemonsResult, error) {
	lo := lab.Options{Hosts: n, Binaries: lab.Binaries{Flanneld: bin.Flanneld, LabEtcd: bin.LabEtcd}, Logf: func(string, ...any) {}}
	if dir != "" {
		lo.Dir = filepath.Join(dir, "fleet-daemons")
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	l, err := lab.New(lctx, lo)
	cancel()
	if err != nil {
		return suite.DaemonsResult{}, err
	}
	r, err := suite.Daemons(ctx, l, suite.DaemonsOptions{ProfileDir: profileDir, Logf: logf})
	if cerr := l.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return r, err
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}
