package suite

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Upstream is one figure set measured with upstream flanneld on this
// machine's lab by the author of the "Performance" issue: one node, K peer
// leases already in etcd, times from daemon start.
type Upstream struct {
	Programmed, CPU, Env time.Duration
	RSS                  string // a range, as reported
}

// UpstreamScale holds upstream's startup figures by backend and K.
var UpstreamScale = map[string]map[int]Upstream{
	VXLAN: {
		1000: {Programmed: 1800 * time.Millisecond, CPU: time.Second, Env: 1100 * time.Millisecond, RSS: "44-49MiB"},
		5000: {Programmed: 7 * time.Second, CPU: 3900 * time.Millisecond, Env: 3300 * time.Millisecond, RSS: "50-64MiB"},
	},
	HostGW: {
		1000: {Programmed: 2800 * time.Millisecond, CPU: 2200 * time.Millisecond, Env: 1100 * time.Millisecond, RSS: "44-49MiB"},
		5000: {Programmed: 34 * time.Second, CPU: 35 * time.Second, Env: 3300 * time.Millisecond, RSS: "50-64MiB"},
	},
}

// UpstreamBurst is upstream's time to program 100 added leases.
var UpstreamBurst = map[string]time.Duration{VXLAN: 130 * time.Millisecond, HostGW: 1250 * time.Millisecond}

// IPBatchFloor is `ip -batch` writing 15,000 vxlan objects (5,000 peers)
// on this machine: the kernel's own cost, a floor for any daemon.
const IPBatchFloor = 1200 * time.Millisecond

// Header names the columns of Line.
func Header() string {
	return fmt.Sprintf("%-8s %6s %8s %10s %7s %18s %8s %8s %17s  %s",
		"backend", "K", "env", "programmed", "cpu", "rss ready/peak", "add", "del", "change p50/p99", "upstream (programmed, cpu, env, rss; add100)")
}

// Line prints one run.
func (r ScaleResult) Line() string {
	up := "-"
	if u, ok := UpstreamScale[r.Backend][r.K]; ok {
		up = fmt.Sprintf("%s, cpu %s, env %s, %s", FormatDuration(u.Programmed), FormatDuration(u.CPU), FormatDuration(u.Env), u.RSS)
	}
	if b, ok := UpstreamBurst[r.Backend]; ok && r.Burst == 100 {
		up += "; add100 " + FormatDuration(b)
	}
	change := "-"
	if len(r.Latencies) > 0 {
		change = fmt.Sprintf("%s/%s", FormatDuration(r.P50), FormatDuration(r.P99))
	}
	burst := func(d time.Duration) string {
		if r.Burst == 0 {
			return "-"
		}
		return FormatDuration(d)
	}
	return fmt.Sprintf("%-8s %6d %8s %10s %7s %18s %8s %8s %17s  %s",
		r.Backend, r.K, FormatDuration(r.Env), FormatDuration(r.Programmed), FormatDuration(r.CPU),
		strings.TrimSuffix(FormatMiB(r.RSSReady), "MiB")+"/"+FormatMiB(r.RSSPeak),
		burst(r.BurstAdd), burst(r.BurstDel), change, up)
}

// Summary is the best figure of several runs of one case, with the spread.
type Summary struct {
	Backend            string
	K, Runs            int
	Env, Programmed    Spread[time.Duration]
	CPU                Spread[time.Duration]
	RSSPeak            Spread[uint64]
	BurstAdd, BurstDel Spread[time.Duration]
	P50, P99           Spread[time.Duration]
	PutP50, PutP99     Spread[time.Duration]
	PassMean           Spread[time.Duration]
	Burst, Changes     int
}

// Summarize groups runs by backend and K, in the order first seen.
func Summarize(rs []ScaleResult) []Summary {
	var out []Summary
	idx := map[[2]string]int{}
	for _, r := range rs {
		key := [2]string{r.Backend, fmt.Sprint(r.K)}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, Summary{Backend: r.Backend, K: r.K, Burst: r.Burst})
		}
		s := &out[i]
		s.Runs++
		s.Env.Add(r.Env)
		s.Programmed.Add(r.Programmed)
		s.CPU.Add(r.CPU)
		s.RSSPeak.Add(r.RSSPeak)
		if r.Burst > 0 {
			s.BurstAdd.Add(r.BurstAdd)
			s.BurstDel.Add(r.BurstDel)
		}
		if len(r.Latencies) > 0 {
			s.P50.Add(r.P50)
			s.P99.Add(r.P99)
			s.PutP50.Add(r.PutP50)
			s.PutP99.Add(r.PutP99)
			if r.PassMean > 0 {
				s.PassMean.Add(r.PassMean)
			}
			s.Changes = max(s.Changes, len(r.Latencies))
		}
	}
	return out
}

func spreadD(s Spread[time.Duration]) string {
	if s.N == 0 {
		return "-"
	}
	if s.N == 1 {
		return FormatDuration(s.Best)
	}
	return fmt.Sprintf("%s (%s–%s)", FormatDuration(s.Best), FormatDuration(s.Best), FormatDuration(s.Worst))
}

// Line prints the best figures, each with its range over the runs.
func (s Summary) Line() string {
	rss := FormatMiB(s.RSSPeak.Best)
	if s.RSSPeak.N > 1 {
		rss = fmt.Sprintf("%s (%s–%s)", rss, FormatMiB(s.RSSPeak.Best), FormatMiB(s.RSSPeak.Worst))
	}
	return fmt.Sprintf("%s K=%d, best of %d: env %s, programmed %s, cpu %s, peak rss %s, add%d %s, del%d %s, change p50 %s p99 %s (etcd put p50 %s p99 %s, mean reconcile pass %s)",
		s.Backend, s.K, s.Runs, spreadD(s.Env), spreadD(s.Programmed), spreadD(s.CPU), rss,
		s.Burst, spreadD(s.BurstAdd), s.Burst, spreadD(s.BurstDel), spreadD(s.P50), spreadD(s.P99), spreadD(s.PutP50), spreadD(s.PutP99), spreadD(s.PassMean))
}

// IdleLine prints the idle measurement.
func (r IdleResult) Line() string {
	var cmds []string
	for c, n := range r.Forks.ByCommand {
		cmds = append(cmds, fmt.Sprintf("%d× %s", n, c))
	}
	slices.Sort(cmds)
	s := fmt.Sprintf("idle (vxlan, K=%d, --ip-masq, resync %s, %s): %d processes started (%.1f/min, %.2f per table per period; %s); daemon CPU %s = %.3f%% of a core (ticks: %s), children CPU %s",
		r.K, r.Resync, r.Window, r.Forks.Processes, r.PerMinute(), r.PerTablePeriod(), strings.Join(cmds, ", "),
		FormatDuration(r.CPU), 100*r.CPUShare(), FormatDuration(r.CPUTicks), FormatDuration(r.ChildrenCPU))
	if r.Forks.Err != nil {
		s += fmt.Sprintf(" [counting: %v]", r.Forks.Err)
	}
	return s
}

// Ratio is flanneld's tunnel over the hand-made one: the same path, so
// anything below 1 is flanneld's doing (an MTU, an offload turned off).
func (r ThroughputResult) Ratio() float64 {
	if r.Reference == 0 {
		return 0
	}
	return r.Tunnel / r.Reference
}

// PodRatio is pod to pod over the hand-made tunnel; the pod path adds a
// veth pair and the cni0 bridge on each side.
func (r ThroughputResult) PodRatio() float64 {
	if r.Reference == 0 {
		return 0
	}
	return r.Overlay / r.Reference
}

// Line prints the throughput comparison.
func (r ThroughputResult) Line() string {
	return fmt.Sprintf("tcp, one stream: underlay %.2f Gbit/s, kernel vxlan by hand %.2f Gbit/s, %s flannel.1 host to host %.2f Gbit/s (%.0f%%), pod to pod %.2f Gbit/s (%.0f%%)",
		r.Underlay/1e9, r.Reference/1e9, r.Backend, r.Tunnel/1e9, 100*r.Ratio(), r.Overlay/1e9, 100*r.PodRatio())
}

// Target is one goal of the issue with the figure measured for it.
type Target struct {
	Name     string
	Got      string // "not measured" when the run did not cover it
	Met      bool
	Measured bool
}

// Status is met, MISSED or not measured.
func (t Target) Status() string {
	switch {
	case !t.Measured:
		return "not measured"
	case t.Met:
		return "met"
	default:
		return "MISSED"
	}
}

// Targets checks the goals against the best figures of each case
// (startup goals at K=5,000; the others at every K up to 5,000, worst case;
// kube mode at K=5,000 with 10,000 updates, where a pass in any run misses).
func Targets(sums []Summary, idle []IdleResult, tp []ThroughputResult, kube []KubeResult) []Target {
	find := func(backend string, k int) *Summary {
		for i := range sums {
			if sums[i].Backend == backend && sums[i].K == k {
				return &sums[i]
			}
		}
		return nil
	}
	var ts []Target
	dur := func(name string, s *Summary, get func(*Summary) Spread[time.Duration], limit time.Duration) {
		t := Target{Name: name, Got: "not measured"}
		if s != nil && get(s).N > 0 {
			v := get(s).Best
			t.Measured, t.Met, t.Got = true, v <= limit, FormatDuration(v)
		}
		ts = append(ts, t)
	}
	vx, hg := find(VXLAN, 5000), find(HostGW, 5000)
	dur("vxlan K=5,000: all programmed within 1.5 s", vx, func(s *Summary) Spread[time.Duration] { return s.Programmed }, 1500*time.Millisecond)
	dur("vxlan K=5,000: daemon CPU < 1 s", vx, func(s *Summary) Spread[time.Duration] { return s.CPU }, time.Second)
	dur("host-gw K=5,000: all programmed within 1 s", hg, func(s *Summary) Spread[time.Duration] { return s.Programmed }, time.Second)
	for _, b := range []string{VXLAN, HostGW} {
		dur(b+" K=5,000: subnet.env within 0.5 s", find(b, 5000), func(s *Summary) Spread[time.Duration] { return s.Env }, 500*time.Millisecond)
	}

	// Worst case over K <= 5,000.
	worst := func(name string, limit float64, unit func(float64) string, get func(*Summary) (float64, bool)) {
		t := Target{Name: name, Got: "not measured"}
		var at string
		var w float64
		for i := range sums {
			s := &sums[i]
			if s.K > 5000 {
				continue
			}
			v, ok := get(s)
			if !ok {
				continue
			}
			if !t.Measured || v > w {
				w, at = v, fmt.Sprintf("%s K=%d", s.Backend, s.K)
			}
			t.Measured = true
		}
		if t.Measured {
			t.Met, t.Got = w <= limit, fmt.Sprintf("%s (worst: %s)", unit(w), at)
		}
		ts = append(ts, t)
	}
	durUnit := func(v float64) string { return FormatDuration(time.Duration(v)) }
	worst("peak RSS < 30 MiB (K <= 5,000)", 30<<20, func(v float64) string { return FormatMiB(uint64(v)) }, func(s *Summary) (float64, bool) {
		return float64(s.RSSPeak.Best), s.RSSPeak.N > 0
	})
	worst("100 added leases programmed within 50 ms", float64(50*time.Millisecond), durUnit, func(s *Summary) (float64, bool) {
		return float64(s.BurstAdd.Best), s.BurstAdd.N > 0 && s.Burst == 100
	})
	worst("single lease change to kernel p99 < 10 ms", float64(10*time.Millisecond), durUnit, func(s *Summary) (float64, bool) {
		return float64(s.P99.Best), s.P99.N > 0
	})

	t := Target{Name: "idle firewall keeper <= 1 process per table per resync period", Got: "not measured"}
	if len(idle) > 0 {
		best := slices.MinFunc(idle, func(a, b IdleResult) int { return cmp.Compare(a.PerTablePeriod(), b.PerTablePeriod()) })
		t.Measured, t.Met = true, best.Forks.Processes <= best.Allowed() && best.Forks.Err == nil
		t.Got = fmt.Sprintf("%.2f (%d processes in %s, %d tables, period %s; at most %d allowed)",
			best.PerTablePeriod(), best.Forks.Processes, best.Window, best.Tables, best.Resync, best.Allowed())
	}
	ts = append(ts, t)
	t = Target{Name: "idle daemon CPU < 0.1% of a core", Got: "not measured"}
	if len(idle) > 0 {
		best := slices.MinFunc(idle, func(a, b IdleResult) int { return cmp.Compare(a.CPUShare(), b.CPUShare()) })
		t.Measured, t.Met, t.Got = true, best.CPUShare() < 0.001, fmt.Sprintf("%.3f%%", 100*best.CPUShare())
	}
	ts = append(ts, t)
	t = Target{Name: "overlay TCP throughput equal to kernel vxlan (flannel.1 >= 90% of by hand)", Got: "not measured"}
	if len(tp) > 0 {
		best := slices.MaxFunc(tp, func(a, b ThroughputResult) int { return cmp.Compare(a.Ratio(), b.Ratio()) })
		t.Measured, t.Met = true, best.Ratio() >= 0.9
		t.Got = fmt.Sprintf("%.0f%% (%.2f of %.2f Gbit/s; pod to pod %.0f%%)", 100*best.Ratio(), best.Tunnel/1e9, best.Reference/1e9, 100*best.PodRatio())
	}
	ts = append(ts, t)
	return append(ts, kubeTargets(kube)...)
}

// kubeTargets are the goals of kube mode: start-up at K=5,000 (best run),
// and for 10,000 irrelevant Node updates no reconcile pass in any run and
// little CPU (best run).
func kubeTargets(rs []KubeResult) []Target {
	var startup, cpu Spread[time.Duration]
	var passes Spread[float64]
	for _, r := range rs {
		if r.K != 5000 {
			continue
		}
		startup.Add(r.Programmed)
		if r.Updates == 10000 {
			cpu.Add(r.UpdateCPU)
			passes.Add(r.Passes)
		}
	}
	start := Target{Name: "kube K=5,000: programmed within 1.5 s of informer sync", Got: "not measured"}
	if startup.N > 0 {
		start.Measured, start.Met, start.Got = true, startup.Best <= 1500*time.Millisecond, spreadD(startup)
	}
	zero := Target{Name: "kube: 0 reconcile passes for 10,000 irrelevant updates", Got: "not measured"}
	if passes.N > 0 {
		zero.Measured, zero.Met, zero.Got = true, passes.Worst == 0, fmt.Sprintf("%.0f (worst of %d runs)", passes.Worst, passes.N)
	}
	c := Target{Name: "kube: daemon CPU < 1 s for 10,000 irrelevant updates", Got: "not measured"}
	if cpu.N > 0 {
		c.Measured, c.Met, c.Got = true, cpu.Best < time.Second, spreadD(cpu)
	}
	return []Target{start, zero, c}
}

// Line prints one kube-mode run.
func (r KubeResult) Line() string {
	return fmt.Sprintf("kube vxlan K=%d: %d Nodes created in %s; informer synced %s after start; all programmed %s after the sync (daemon's log: %s), cpu %s, rss %s/%s; "+
		"%d updates (%d status heartbeats, %d label changes) at %.0f/s, handled in %s: daemon CPU %s (ticks %s), %.0f reconcile passes",
		r.K, r.K, FormatDuration(r.Created), FormatDuration(r.Synced), FormatDuration(r.Programmed), FormatDuration(r.DaemonProgrammed),
		FormatDuration(r.CPU), strings.TrimSuffix(FormatMiB(r.RSSReady), "MiB"), FormatMiB(r.RSSPeak),
		r.Updates, r.Heartbeats, r.Updates-r.Heartbeats, r.Rate, FormatDuration(r.UpdatesTook), FormatDuration(r.UpdateCPU), FormatDuration(r.UpdateTicks), r.Passes)
}
