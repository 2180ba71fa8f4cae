package suite

import "time"

// ScaleResult holds the figures of one run. Times count from the moment
// the daemon is started.
type ScaleResult struct {
	Backend string
	K       int

	Env        time.Duration // subnet.env exists
	Programmed time.Duration // every peer's neighbour, FDB and route entries exist
	CPU        time.Duration // daemon utime+stime when programmed
	RSSReady   uint64        // VmHWM when programmed, bytes
	RSSAnon    uint64        // RssAnon when programmed (heap, stacks)
	RSSFile    uint64        // RssFile when programmed (executable pages touched)
	RSSPeak    uint64        // VmHWM at the end of the run, bytes

	Burst    int
	BurstAdd time.Duration // Burst leases added in one transaction → all their entries exist
	BurstDel time.Duration // Burst leases deleted in one transaction → all their entries gone

	Latencies []time.Duration // single lease added → its route exists
	P50, P99  time.Duration
	// PutP50 and PutP99 are the etcd put round trips of those changes
	// (part of each latency), PassMean the daemon's mean reconcile pass
	// during them (from its /metrics), which tell where the time goes.
	PutP50, PutP99 time.Duration
	PassMean       time.Duration
}

// IdleResult holds what an idle daemon cost.
type IdleResult struct {
	K      int
	Window time.Duration
	Resync time.Duration
	Tables int // packet filter tables the rule keeper reads each period: nat (masquerade) and filter (forward rules)

	Forks ForkCount // processes the daemon (and its children) started during Window

	CPU         time.Duration // daemon threads' run time during Window (schedstat, ns precision)
	CPUTicks    time.Duration // the same from /proc/<pid>/stat utime+stime (10 ms ticks), as a cross-check
	ChildrenCPU time.Duration // CPU of the children reaped during Window
}

// PerMinute is the process start rate.
func (r IdleResult) PerMinute() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Forks.Processes) / r.Window.Minutes()
}

// PerTablePeriod is processes per table per resync period.
func (r IdleResult) PerTablePeriod() float64 {
	periods := float64(r.Window) / float64(r.Resync)
	if periods <= 0 || r.Tables == 0 {
		return 0
	}
	return float64(r.Forks.Processes) / periods / float64(r.Tables)
}

// Allowed is the most processes the target (at most one per table per
// resync period) permits in the window: a window of n whole periods can
// catch n+1 resyncs of each table, depending on where it starts.
func (r IdleResult) Allowed() int {
	if r.Resync <= 0 {
		return 0
	}
	return r.Tables * (int(r.Window/r.Resync) + 1)
}

// CPUShare is the daemon's CPU use as a fraction of one core.
func (r IdleResult) CPUShare() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.CPU) / float64(r.Window)
}

// ThroughputResult holds bits per second of one TCP stream (iperf3,
// received side) over each path between the lab's first two hosts, the
// best of ThroughputOptions.Rounds runs.
type ThroughputResult struct {
	Backend  string
	Underlay float64 // host eth0 → host eth0
	// Reference is a vxlan device made by hand (ip link add ... type vxlan
	// remote ...) between the two hosts: what kernel vxlan gives without
	// flanneld, veth or bridge in the path.
	Reference float64
	Tunnel    float64 // host → host over flanneld's flannel.1 devices: the same path as Reference
	Overlay   float64 // pod → pod through flanneld's overlay (veth, cni0, flannel.1 on each side)
}

// ForkCount is what a ForkCounter saw.
type ForkCount struct {
	Processes int            // descendants started
	ByCommand map[string]int // by command line ("?" when it exited before it could be read)
	Err       error          // events were lost, or counting stopped early
}

// KubeResult holds the figures of one kube-mode run: K Nodes with leases,
// then irrelevant Node updates.
type KubeResult struct {
	K       int
	Created time.Duration // the K Nodes created (bounded concurrency), before the daemon starts

	Synced time.Duration // daemon started → its informer synced (its log line's time)
	// Programmed counts from the informer's sync to every peer's
	// neighbour, FDB and route entries existing (kernel dumps), and
	// DaemonProgrammed to the daemon's own "Data plane programmed" line.
	Programmed, DaemonProgrammed time.Duration
	CPU                          time.Duration // daemon utime+stime when programmed
	RSSReady, RSSPeak            uint64        // VmHWM when programmed, at the end of the run
	RSSAnon, RSSFile             uint64        // RssAnon and RssFile when programmed

	Updates     int           // irrelevant Node updates sent
	Heartbeats  int           // of them, status heartbeats (the rest: label changes)
	Rate        float64       // updates sent per second (the pace asked for, or what the API server took)
	UpdatesTook time.Duration // first update sent → the daemon handled the last one
	UpdateCPU   time.Duration // daemon threads' run time in that window (schedstat, ns)
	UpdateTicks time.Duration // the same from /proc/<pid>/stat (10 ms ticks)
	Passes      float64       // reconcile passes in that window, all kinds (/metrics)
}
