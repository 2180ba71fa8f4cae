//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/flannelng/flannel/bench/suite"
	"github.com/flannelng/flannel/pkg/lab"
)

// The benchmark suite's K=100 case runs end to end (etcd preload, daemon
// startup, a burst added and removed, single changes) and reports sane
// figures. Speed is the benchmark's business (make bench): no timing is
// asserted here.
func TestPrivilegedBenchSmoke(t *testing.T) {
	l := lab.NewT(t, lab.Options{Hosts: 1})
	ctx := testCtx(t, 90*time.Second)
	r, err := suite.Scale(ctx, l, suite.ScaleOptions{Backend: suite.VXLAN, K: 100, Burst: 100, Changes: 20, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(suite.Header())
	t.Log(r.Line())
	if r.Programmed <= 0 || r.Env <= 0 || r.BurstAdd <= 0 || r.BurstDel <= 0 {
		t.Errorf("missing times: %+v", r)
	}
	if r.CPU <= 0 || r.RSSReady == 0 || r.RSSPeak < r.RSSReady {
		t.Errorf("daemon CPU %s, RSS %d then %d", r.CPU, r.RSSReady, r.RSSPeak)
	}
	if len(r.Latencies) != 20 || r.P50 <= 0 || r.P99 < r.P50 || r.PutP50 <= 0 {
		t.Errorf("changes: %d latencies, p50 %s p99 %s, put p50 %s", len(r.Latencies), r.P50, r.P99, r.PutP50)
	}
}

// The benchmark's kube case, small: 100 Nodes with leases, then 200 Node
// updates flannel has no use for (status heartbeats, label changes),
// against a real kube-apiserver with the manifest's RBAC. Every peer must
// be programmed and the updates must not reach the reconciler: zero
// passes is a property of the informer's filter, not a speed, so it is
// asserted. No timing is.
func TestPrivilegedBenchSmokeKube(t *testing.T) {
	lab.SkipUnlessPrivileged(t)
	bins := lab.BuildBinaries(t)
	lab.RequireKubeBinaries(t, &bins)
	l := lab.NewT(t, lab.Options{Hosts: 1, Binaries: bins})
	ctx := testCtx(t, 3*time.Minute)
	r, err := suite.Kube(ctx, l, suite.KubeOptions{K: 100, Updates: 200, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Line())
	if r.Synced <= 0 || r.Programmed <= 0 || r.DaemonProgrammed <= 0 || r.CPU <= 0 || r.RSSReady == 0 || r.RSSPeak < r.RSSReady {
		t.Errorf("start-up figures: %+v", r)
	}
	if r.Updates != 200 || r.Heartbeats != 180 || r.UpdatesTook <= 0 {
		t.Errorf("updates: %d sent, %d heartbeats, took %s", r.Updates, r.Heartbeats, r.UpdatesTook)
	}
	if r.Passes != 0 {
		t.Errorf("%.0f reconcile passes for 200 Node updates flannel has no use for, want 0", r.Passes)
	}
}
