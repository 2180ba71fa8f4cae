package vxlan

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend/internal/netlab"
	"github.com/flannelng/flannel/internal/testns"
	"github.com/flannelng/flannel/subnet"
)

// fakePeer builds the i-th synthetic vxlan lease: subnet 10.<100+i/256>.<i%256>.0/24
// inside 10.0.0.0/8, public IP 172.31.<1+i/250>.<1+i%250> on the lab's
// underlay /16, and a MAC derived from i.
func fakePeer(i int) subnet.Lease {
	return subnet.Lease{
		Subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)),
		Attrs: subnet.LeaseAttrs{
			PublicIP:    netip.MustParseAddr(fmt.Sprintf("172.31.%d.%d", 1+i/250, 1+i%250)),
			BackendType: "vxlan",
			BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":"02:00:00:01:%02x:%02x"}`, i>>8, i&0xff)),
		},
	}
}

func fakePeers(n int) []subnet.Lease {
	ls := make([]subnet.Lease, n)
	for i := range ls {
		ls[i] = fakePeer(i)
	}
	return ls
}

// BenchmarkPrivilegedVXLAN5000Peers programs 5,000 synthetic vxlan peers
// (15,000 kernel objects) into a fresh namespace and reports, per
// iteration: the initial full pass, adding one peer, adding 100 peers (both
// as passes over all peers), adding one peer through the delta path
// (Update), and a forced full pass (dump + diff) over the unchanged set,
// with the netlink requests each made. Run it alone: go test -run XXX -bench 5000Peers -benchtime 1x
func BenchmarkPrivilegedVXLAN5000Peers(b *testing.B) {
	testns.RequireRoot(b)
	const base = 5000
	all := fakePeers(base + 102)
	var initial, add1, add100, delta1, full time.Duration
	var initialReq, add1Req, add100Req, delta1Req, fullReq uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		lab := netlab.New(b, netlab.Options{Hosts: 1})
		lab.Network = netip.MustParsePrefix("10.0.0.0/8")
		n := startNode(b, lab, lab.Hosts[0], plainVXLAN, false, nil)
		setupWrites := n.stats().Writes
		b.StartTimer()

		measure := func(peers []subnet.Lease, d *time.Duration, req *uint64) {
			before := n.stats()
			t0 := time.Now()
			n.reconcile(b, peers)
			*d += time.Since(t0)
			after := n.stats()
			*req += after.Reads + after.Writes - before.Reads - before.Writes
		}
		measure(all[:base], &initial, &initialReq)
		b.StopTimer()
		settle() // let the echoes of 15,000 writes drain
		b.StartTimer()
		measure(all[:base+1], &add1, &add1Req)
		measure(all[:base+101], &add100, &add100Req)
		// One more peer through the delta path the daemon uses between
		// passes over all peers.
		before, t0 := n.stats(), time.Now()
		if err := n.nw.Update(context.Background(), nil, all[base+101:base+102]); err != nil {
			b.Fatalf("delta: %v", err)
		}
		delta1 += time.Since(t0)
		after := n.stats()
		delta1Req += after.Reads + after.Writes - before.Reads - before.Writes
		n.nw.rec.MarkDirty("benchmark")
		measure(all[:base+102], &full, &fullReq)
		b.StopTimer()
		if w := n.stats().Writes - setupWrites; w != uint64(3*(base+102)) {
			b.Fatalf("writes = %d, want %d", w, 3*(base+102))
		}
		_ = n.nw.Close()
		b.StartTimer()
	}
	N := float64(b.N)
	b.ReportMetric(float64(initial.Milliseconds())/N, "initial-ms")
	b.ReportMetric(float64(initialReq)/N, "initial-requests")
	b.ReportMetric(float64(add1.Microseconds())/N, "add1-us")
	b.ReportMetric(float64(add1Req)/N, "add1-requests")
	b.ReportMetric(float64(add100.Microseconds())/N/1000, "add100-ms")
	b.ReportMetric(float64(add100Req)/N, "add100-requests")
	b.ReportMetric(float64(full.Microseconds())/N/1000, "fullpass-ms")
	b.ReportMetric(float64(fullReq)/N, "fullpass-requests")
	b.ReportMetric(float64(delta1.Microseconds())/N, "delta1-us")
	b.ReportMetric(float64(delta1Req)/N, "delta1-requests")
}
