package suite

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The fleet case (issue 19) looks at flannel from etcd's side: many nodes,
// one etcd server. Simulated nodes are the real lease source
// (subnet/etcd's Manager, each with its own client and connection, as a
// daemon has) driven the way the daemon drives it, with no data plane:
// GetConfig, Start, Previous, Acquire, Peers().Run, Keep, and the daemon's
// own config watch (daemon.WatchConfig). Real daemons are flanneld
// processes in lab hosts.

// RequestCounts are etcd requests by kind: the lease source's request kinds
// (get, list, grant, create, update, renew, ...) on the client side, or
// gRPC methods (Range, Txn, Watch, LeaseKeepAlive, ...) as etcd counts the
// messages it received.
type RequestCounts map[string]int64

// Total is the sum over every kind.
func (c RequestCounts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Sub is c − before, kind by kind, without the kinds that did not change.
func (c RequestCounts) Sub(before RequestCounts) RequestCounts {
	out := RequestCounts{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// Without is c without the given kinds.
func (c RequestCounts) Without(kinds ...string) RequestCounts {
	out := RequestCounts{}
	for k, v := range c {
		if !slices.Contains(kinds, k) {
			out[k] = v
		}
	}
	return out
}

// String is "12,345 (Range 1,000, Txn 2,345, ...)", kinds by name.
func (c RequestCounts) String() string {
	if len(c) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + thousands(c[k])
	}
	return thousands(c.Total()) + " (" + strings.Join(parts, ", ") + ")"
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// ParseGRPCReceived reads etcd's /metrics and returns the gRPC messages
// it received by method (grpc_server_msg_received_total): one per unary
// request, one per message on a stream (each watch created or cancelled,
// each lease keepalive).
func ParseGRPCReceived(b []byte) (RequestCounts, error) {
	out := RequestCounts{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	const name = "grpc_server_msg_received_total{"
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		method := ""
		for _, l := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(l, `grpc_method="`); ok {
				method = strings.TrimSuffix(v, `"`)
			}
		}
		if method == "" {
			return nil, fmt.Errorf("metrics line %q: no grpc_method", line)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		if f != 0 {
			out[method] += int64(f)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// keepaliveMethod is the lease keepalive stream's gRPC method: the idle
// target counts requests beyond it.
const keepaliveMethod = "LeaseKeepAlive"

// StormResult is one join storm: N simulated nodes started at once
// against an etcd holding only the network config.
type StormResult struct {
	N           int
	AcquireOnly bool // the nodes stopped after Acquire (FleetOptions.AcquireOnly)
	Joined      int  // nodes that held a lease when the storm ended
	// Held is the time from the start until every node held its lease
	// (the daemon writes subnet.env then); zero when not all did within
	// the bound. HeldP50 is the median node's.
	Held, HeldP50 time.Duration
	// Seen is the time until every node's peer watcher held all N
	// leases.
	Seen      time.Duration
	Overlaps  int // pairs of leases that overlap; the guarantee is none
	LostRaces int // "lease race lost, retrying": transactions that lost
	// OtherRetries are the other failed attempts of Acquire (an error,
	// a full network).
	OtherRetries int
	Requests     RequestCounts // the lease sources' requests (Options.OnRequest), by kind
	Failed       RequestCounts // those that failed, by kind and error
	Server       RequestCounts // etcd's received gRPC messages during the storm
	EtcdCPU      time.Duration // etcd's utime+stime during the storm
	// NodesCPU is the simulated nodes' CPU (this process's) during the
	// storm: clients, decoding listings and every join event.
	NodesCPU time.Duration
	// Steps say when the median node and the last one had read the
	// config (its client connected), listed the leases, held its lease.
	Steps []Phase
}

// Line prints one storm.
func (r StormResult) Line() string {
	held := fmt.Sprintf("only %d of %d hold subnets when the storm's bound ran out (median joiner %s)", r.Joined, r.N, FormatDuration(r.HeldP50))
	if r.Held > 0 {
		held = fmt.Sprintf("all hold subnets after %s (median node %s)", FormatDuration(r.Held), FormatDuration(r.HeldP50))
		if r.Seen > 0 {
			held += fmt.Sprintf(", every watcher holds all %d leases after %s", r.N, FormatDuration(r.Seen))
		}
	}
	name := fmt.Sprintf("join storm N=%d", r.N)
	if r.AcquireOnly {
		name += " (acquire only, no watchers)"
	}
	return fmt.Sprintf("%s: %s; %d overlaps; %s lost races, %d other retries; lease source requests %s, failed %s; etcd received %s; CPU: etcd %s, the nodes %s; steps (median/last node): %s",
		name, held, r.Overlaps, thousands(int64(r.LostRaces)), r.OtherRetries, r.Requests, r.Failed, r.Server, FormatDuration(r.EtcdCPU), FormatDuration(r.NodesCPU),
		phasesString(r.Steps))
}

// FleetIdleResult is what N idle simulated nodes cost etcd.
type FleetIdleResult struct {
	N      int
	Poll   bool // the nodes read the config every 5 s (the daemon before issue 19)
	Window time.Duration
	Setup  time.Duration // bringing the fleet up, before the window
	// Requests and Server are counted over Window: the lease sources'
	// requests, and the gRPC messages etcd received.
	Requests RequestCounts
	Server   RequestCounts
	EtcdCPU  time.Duration // etcd's utime+stime over Window
	EtcdRSS  uint64        // etcd's resident set at the end of Window
	NodesCPU time.Duration // the simulated nodes' CPU (this process's) over Window
	// The lease watcher's periodic re-list (every RelistEvery, give or
	// take a tenth: one listing of all N leases) first comes 9 minutes
	// after a node starts, outside any short window, so the simulated
	// nodes run without it and it is priced apart: ListCPU is etcd's CPU
	// for one listing of the N leases (mean of ListSamples).
	RelistEvery time.Duration
	ListCPU     time.Duration
	ListSamples int
}

func perNodeMinute(n int64, nodes int, window time.Duration) float64 {
	if nodes == 0 || window <= 0 {
		return 0
	}
	return float64(n) / float64(nodes) / window.Minutes()
}

// PerNodeMinute is what the idle target counts: the messages etcd
// received beyond the lease keepalive stream, per node per minute.
func (r FleetIdleResult) PerNodeMinute() float64 {
	return perNodeMinute(r.Server.Without(keepaliveMethod).Total(), r.N, r.Window)
}

// RelistPerNodeMinute is the periodic re-list's share of the idle
// requests: one listing per node every RelistEvery.
func (r FleetIdleResult) RelistPerNodeMinute() float64 {
	if r.RelistEvery <= 0 {
		return 0
	}
	return 1 / r.RelistEvery.Minutes()
}

// SteadyPerNodeMinute is what an idle node asks of etcd in the long run,
// beyond the lease keepalives: the window's requests and the re-list.
func (r FleetIdleResult) SteadyPerNodeMinute() float64 {
	return r.PerNodeMinute() + r.RelistPerNodeMinute()
}

// RelistCPUShare is the re-lists' etcd CPU in the long run, as a share of
// one core: N listings every RelistEvery.
func (r FleetIdleResult) RelistCPUShare() float64 {
	if r.RelistEvery <= 0 {
		return 0
	}
	return float64(r.N) * float64(r.ListCPU) / float64(r.RelistEvery)
}

// ClientPerNodeMinute is the lease sources' own count of their requests,
// per node per minute.
func (r FleetIdleResult) ClientPerNodeMinute() float64 {
	return perNodeMinute(r.Requests.Total(), r.N, r.Window)
}

// EtcdCPUShare is etcd's CPU over the window as a share of one core.
func (r FleetIdleResult) EtcdCPUShare() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.EtcdCPU) / float64(r.Window)
}

// Line prints one idle fleet.
func (r FleetIdleResult) Line() string {
	how := "config watched"
	if r.Poll {
		how = "config read every 5 s (before issue 19)"
	}
	return fmt.Sprintf("idle fleet N=%d, %s, window %s (fleet up in %s): etcd received %.2f requests per node per minute beyond lease keepalives (%s), "+
		"the lease sources counted %.2f (%s); etcd CPU %s = %.1f%% of a core, RSS %s; the nodes' CPU %s; "+
		"plus the periodic re-list (every %s, not in the window): %.2f per node per minute, %s of etcd CPU per listing of %d leases = %.1f%% of a core; "+
		"in the long run %.2f requests per node per minute",
		r.N, how, FormatDuration(r.Window), FormatDuration(r.Setup), r.PerNodeMinute(), r.Server, r.ClientPerNodeMinute(), r.Requests,
		FormatDuration(r.EtcdCPU), 100*r.EtcdCPUShare(), FormatMiB(r.EtcdRSS), FormatDuration(r.NodesCPU),
		r.RelistEvery, r.RelistPerNodeMinute(), FormatDuration(r.ListCPU), r.N, 100*r.RelistCPUShare(), r.SteadyPerNodeMinute())
}

// ChurnResult is a tenth (Restarted) of an idle fleet restarting at once.
type ChurnResult struct {
	N, Restarted int
	// NewMAC: the restarted nodes came back with a new VtepMAC (their
	// device was re-created), so each one rewrites its lease; otherwise
	// they came back with their attributes unchanged (a rolling update
	// of the daemon), which writes nothing.
	NewMAC bool
	// Rejoined is the time from the restart until every restarted node
	// held its lease again; zero when Unrejoined of them had not within
	// the bound (5 minutes).
	Rejoined   time.Duration
	Unrejoined int
	// Converged is the time until every other node's peer watcher held
	// every restarted node's new lease (NewMAC only; zero otherwise, or
	// when not all converged within the bound, see Unconverged).
	Converged   time.Duration
	Unconverged int
	// Events are the lease changes each other node's consumer took from
	// its watcher (came plus gone), Passes the notifications it handled:
	// mean and most over the other nodes.
	EventsMean, PassesMean float64
	EventsMax, PassesMax   int64
	Requests               RequestCounts
	Failed                 RequestCounts // failed requests by kind and error
	Server                 RequestCounts
	EtcdCPU, NodesCPU      time.Duration
}

// Line prints one churn.
func (r ChurnResult) Line() string {
	what := "attributes unchanged"
	conv := "nothing to converge on"
	if r.NewMAC {
		what = "new VtepMAC"
		conv = "every other node's watcher converged after " + FormatDuration(r.Converged)
		if r.Unconverged > 0 {
			conv = fmt.Sprintf("%d other nodes had not converged", r.Unconverged)
		}
	}
	back := "all held their leases again after " + FormatDuration(r.Rejoined)
	if r.Unrejoined > 0 {
		back = fmt.Sprintf("%d of them had not held their leases again after 5 minutes", r.Unrejoined)
		if r.NewMAC {
			conv = "convergence not measured"
		}
	}
	return fmt.Sprintf("churn N=%d, %d restarted at once (%s): %s; %s; "+
		"each other node took %.1f lease events (most %d) in %.1f passes (most %d); lease source requests %s, failed %s; etcd received %s; CPU: etcd %s, the nodes %s",
		r.N, r.Restarted, what, back, conv, r.EventsMean, r.EventsMax, r.PassesMean, r.PassesMax,
		r.Requests, r.Failed, r.Server, FormatDuration(r.EtcdCPU), FormatDuration(r.NodesCPU))
}

// DaemonsResult is N real flanneld processes started at once, twice:
// into an empty etcd (each allocates), then again with their leases in
// etcd (no allocation), and one of them restarted alone.
type DaemonsResult struct {
	N int
	// Spawn and SpawnRestart are how long starting the N processes took
	// (`ip netns exec` each; times count from the first start).
	Spawn, SpawnRestart time.Duration
	// Own and OwnRestart are each daemon's own start-up in the storm,
	// from its "Starting flanneld" line to its "Wrote subnet file" line:
	// median and most. They leave out the spawning, which on a busy
	// machine is most of a storm.
	OwnFirst, OwnRestart Phase
	// First and Restart are the times from the first start until every
	// subnet.env was written (rewritten), and ReadyFirst and
	// ReadyRestart until every daemon logged "flannel is ready".
	First, Restart           time.Duration
	ReadyFirst, ReadyRestart time.Duration
	// CPU per daemon (utime+stime from /proc/<pid>/stat once the storm
	// settled, with its reaped children: ip, iptables): mean and most.
	CPUFirstMean, CPUFirstMax     time.Duration
	CPURestartMean, CPURestartMax time.Duration
	// Lone is one daemon restarted alone afterwards: subnet.env time and
	// CPU, the start-up cost without the storm.
	Lone, LoneCPU time.Duration
	// The reaped children's part of the mean CPU (iptables, ip).
	ChildrenFirst, ChildrenRestart, ChildrenLone time.Duration
	// etcd's CPU and received messages during each storm.
	EtcdCPUFirst, EtcdCPURestart time.Duration
	ServerFirst, ServerRestart   RequestCounts
	// Where each storm's time went, from the daemons' logs.
	PhasesFirst, PhasesRestart []Phase
}

// Phase is one step of the daemons' start-up in a storm: when the median
// daemon and the last one logged it, from the storm's start (the first
// process started).
type Phase struct {
	Name         string
	Median, Last time.Duration
	N            int // daemons that logged it
}

// readyLine is what flanneld logs after its first full data-plane pass.
const readyLine = "flannel is ready"

// daemonPhases are the start-up steps the daemon logs, in order.
var daemonPhases = []struct {
	name  string
	marks []string // the log line's text (any of them)
}{
	{"process up", []string{`msg="Starting flanneld"`}},
	{"config read", []string{"Found network config"}},
	{"lease held", []string{"Allocated lease (", "Found lease ("}},
	// The traffic rules come between the lease and subnet.env: the
	// iptables variant is chosen by running both variants' save
	// commands, then the other mode's rules are removed and ours
	// applied.
	{"iptables chosen", []string{"Using iptables variant"}},
	{"rules cleaned", []string{`msg="Starting flannel in`}},
	{"subnet.env", []string{"Wrote subnet file"}},
	{"ready", []string{readyLine}},
}

// DaemonPhases reads the daemons' logs of one run (slog text lines with
// time=) and says when the median and the last daemon reached each
// step, from start.
func DaemonPhases(logs []string, start time.Time) []Phase {
	out := make([]Phase, len(daemonPhases))
	for j, ph := range daemonPhases {
		var at []time.Duration
		for _, log := range logs {
			for _, line := range strings.Split(log, "\n") {
				if !slices.ContainsFunc(ph.marks, func(m string) bool { return strings.Contains(line, m) }) {
					continue
				}
				if t, ok := logLineTime(line); ok {
					at = append(at, t.Sub(start))
					break
				}
			}
		}
		out[j] = Phase{Name: ph.name, N: len(at), Median: Percentile(at, 0.5), Last: Percentile(at, 1)}
	}
	return out
}

// logLineTime is the time= field of a slog text line.
func logLineTime(line string) (time.Time, bool) {
	_, rest, ok := strings.Cut(line, "time=")
	if !ok {
		return time.Time{}, false
	}
	v, _, _ := strings.Cut(rest, " ")
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

func phasesString(ps []Phase) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%s %s/%s", p.Name, FormatDuration(p.Median), FormatDuration(p.Last))
	}
	return strings.Join(parts, ", ")
}

// OwnStartup returns each daemon's own start-up (see DaemonsResult.Own)
// from one storm's logs: median and most, and how many daemons logged
// both lines.
func OwnStartup(logs []string) Phase {
	var ds []time.Duration
	for _, log := range logs {
		var up, env time.Time
		for _, line := range strings.Split(log, "\n") {
			switch {
			case up.IsZero() && strings.Contains(line, `msg="Starting flanneld"`):
				up, _ = logLineTime(line)
			case env.IsZero() && strings.Contains(line, "Wrote subnet file"):
				env, _ = logLineTime(line)
			}
		}
		if !up.IsZero() && !env.IsZero() {
			ds = append(ds, env.Sub(up))
		}
	}
	return Phase{Name: "own start-up", N: len(ds), Median: Percentile(ds, 0.5), Last: Percentile(ds, 1)}
}

// Ratio is First / Restart; the target is at most 1.1.
func (r DaemonsResult) Ratio() float64 {
	if r.Restart <= 0 {
		return 0
	}
	return float64(r.First) / float64(r.Restart)
}

// Line prints the real daemons' figures.
func (r DaemonsResult) Line() string {
	return fmt.Sprintf("real daemons N=%d (vxlan, started in %s): every subnet.env written after %s (all ready %s); restarted with their leases in etcd (started in %s): rewritten after %s (all ready %s); "+
		"ratio %.2f; each daemon's own start-up (its first log line to subnet.env, median/most): %s/%s first, %s/%s restart; "+
		"CPU per daemon with its children: first start %s (most %s; children %s), restart storm %s (most %s; children %s), one daemon restarted alone %s (children %s; subnet.env %s); "+
		"etcd CPU %s / %s, etcd received %s / %s; steps (median/last daemon from the first start): first start: %s; restart storm: %s",
		r.N, FormatDuration(r.Spawn), FormatDuration(r.First), FormatDuration(r.ReadyFirst), FormatDuration(r.SpawnRestart), FormatDuration(r.Restart), FormatDuration(r.ReadyRestart),
		r.Ratio(), FormatDuration(r.OwnFirst.Median), FormatDuration(r.OwnFirst.Last), FormatDuration(r.OwnRestart.Median), FormatDuration(r.OwnRestart.Last), FormatDuration(r.CPUFirstMean), FormatDuration(r.CPUFirstMax), FormatDuration(r.ChildrenFirst),
		FormatDuration(r.CPURestartMean), FormatDuration(r.CPURestartMax), FormatDuration(r.ChildrenRestart),
		FormatDuration(r.LoneCPU), FormatDuration(r.ChildrenLone), FormatDuration(r.Lone), FormatDuration(r.EtcdCPUFirst), FormatDuration(r.EtcdCPURestart), r.ServerFirst, r.ServerRestart,
		phasesString(r.PhasesFirst), phasesString(r.PhasesRestart))
}

// FleetResults are the fleet case's figures.
type FleetResults struct {
	Storms  []StormResult
	Idle    []FleetIdleResult
	Churn   []ChurnResult
	Daemons []DaemonsResult
}

// FleetTargets checks issue 19's fleet goals: real daemons' first start
// within 1.1× their restart storm, 1,000 simulated joiners within 5 s with
// no overlap (the allocation protocol: the acquire-only storm when there
// is one), and at most one etcd request per idle node per minute beyond
// the lease keepalive stream (every watching fleet measured).
func FleetTargets(r FleetResults) []Target {
	var ts []Target
	t := Target{Name: "100 real daemons: first start <= 1.1x restart storm", Got: "not measured"}
	for _, d := range r.Daemons {
		if d.N == 100 && d.Restart > 0 {
			t.Measured, t.Met = true, d.First > 0 && d.Ratio() <= 1.1
			t.Got = fmt.Sprintf("%.2fx (%s vs %s)", d.Ratio(), FormatDuration(d.First), FormatDuration(d.Restart))
		}
	}
	ts = append(ts, t)
	t = Target{Name: "1,000 simulated joiners hold subnets within 5 s, 0 overlaps", Got: "not measured"}
	acquireOnly := slices.ContainsFunc(r.Storms, func(s StormResult) bool { return s.N == 1000 && s.AcquireOnly })
	for _, s := range r.Storms {
		if s.N != 1000 || s.AcquireOnly != acquireOnly {
			continue
		}
		t.Measured = true
		t.Met = s.Held > 0 && s.Held <= 5*time.Second && s.Overlaps == 0
		if s.Held > 0 {
			t.Got = fmt.Sprintf("%s, %d overlaps", FormatDuration(s.Held), s.Overlaps)
		} else {
			t.Got = fmt.Sprintf("%d of 1,000 joined, %d overlaps", s.Joined, s.Overlaps)
		}
		if s.AcquireOnly {
			t.Got += " (acquire only)"
		}
	}
	ts = append(ts, t)
	t = Target{Name: "idle: <= 1 etcd request per node per minute beyond keepalives", Got: "not measured"}
	var worst *FleetIdleResult
	for i := range r.Idle {
		if r.Idle[i].Poll {
			continue
		}
		if worst == nil || r.Idle[i].SteadyPerNodeMinute() > worst.SteadyPerNodeMinute() {
			worst = &r.Idle[i]
		}
	}
	if worst != nil {
		t.Measured, t.Met = true, worst.SteadyPerNodeMinute() <= 1
		t.Got = fmt.Sprintf("%.2f (worst: N=%d; %.2f of it the periodic re-list)", worst.SteadyPerNodeMinute(), worst.N, worst.RelistPerNodeMinute())
	}
	return append(ts, t)
}
