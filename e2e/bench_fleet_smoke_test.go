//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/flannelng/flannel/bench/suite"
	"github.com/flannelng/flannel/pkg/lab"
)

// The benchmark's fleet case, tiny (make bench runs it with 100 to 5,000
// nodes): a join storm of 10 simulated lease sources, an idle fleet of 10
// for 2 s with its two churns, and 3 real daemons started, restarted and
// one restarted alone. What is asserted is what the figures need to mean
// something (every node joined, no overlap, every watcher converged, every
// phase measured), never a speed.
func TestPrivilegedBenchFleetSmoke(t *testing.T) {
	l := lab.NewT(t, lab.Options{Hosts: 3})
	ctx := testCtx(t, 3*time.Minute)
	o := suite.FleetOptions{LabEtcd: l.Binaries().LabEtcd, Window: 2 * time.Second, Churn: 0.2, StormTimeout: time.Minute, Logf: t.Logf}

	s, err := suite.JoinStorm(ctx, o, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(s.Line())
	if s.Joined != 10 || s.Held <= 0 || s.Seen < s.Held || s.Overlaps != 0 || s.Requests["create"] < 10 || s.Server["Txn"] < 10 || s.EtcdCPU <= 0 {
		t.Errorf("storm figures: %+v", s)
	}

	idle, churns, err := suite.IdleFleet(ctx, o, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(idle.Line())
	if idle.Server == nil || idle.Setup <= 0 || idle.EtcdRSS == 0 {
		t.Errorf("idle figures: %+v", idle)
	}
	if len(churns) != 2 {
		t.Fatalf("%d churns, want 2 (attributes unchanged, new VtepMAC)", len(churns))
	}
	for _, c := range churns {
		t.Log(c.Line())
		if c.Restarted != 2 || c.Rejoined <= 0 {
			t.Errorf("churn figures: %+v", c)
		}
	}
	if c := churns[1]; !c.NewMAC || c.Converged <= 0 || c.Unconverged != 0 || c.EventsMax < 2 {
		t.Errorf("new-MAC churn: %+v", c)
	}

	d, err := suite.Daemons(ctx, l, suite.DaemonsOptions{Settle: time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(d.Line())
	if d.N != 3 || d.First <= 0 || d.Restart <= 0 || d.Lone <= 0 || d.CPUFirstMean <= 0 || d.CPURestartMean <= 0 || d.LoneCPU <= 0 {
		t.Errorf("daemon figures: %+v", d)
	}
}
