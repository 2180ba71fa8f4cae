package kube

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// describe renders leases as sorted "subnet[+v6] ip mac-ish" lines.
func describe(ls []subnet.Lease) string {
	var out []string
	for _, l := range ls {
		s := l.String() + " " + l.Attrs.PublicIP.String()
		if l.Attrs.PublicIPv6.IsValid() {
			s += "/" + l.Attrs.PublicIPv6.String()
		}
		s += " " + l.Attrs.BackendType
		if len(l.Attrs.BackendData) > 0 {
			s += " " + string(l.Attrs.BackendData)
		}
		if len(l.Attrs.BackendV6Data) > 0 {
			s += " v6:" + string(l.Attrs.BackendV6Data)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func fired(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func peerNode(name, cidr, ip, mac string) *Node {
	return managed(testNode(name, cidr), "vxlan", ip, vxlanData(mac))
}

func TestPeerSource(t *testing.T) {
	fake := newFakeAPI()
	fake.put(peerNode("n0", "10.244.0.0/24", "10.199.0.1", "00:00:00:00:00:00"))
	fake.put(peerNode("n1", "10.244.1.0/24", "10.199.0.2", "00:00:00:00:00:01"))
	fake.put(managed(testNode("n2", "10.244.2.0/24"), "host-gw", "10.199.0.3", "null"))
	fake.put(testNode("n3", "10.244.3.0/24")) // kubelet registered it, no flannel yet
	fake.put(peerNode("n4", "10.244.4.0/24", "10.199.0.300", "00:00:00:00:00:04"))
	m, logs := startManager(t, fake, "n0", cfgV4, Options{})
	ps := m.Peers()

	if _, _, all := ps.Changes(); !all {
		t.Error("Changes before the first TakeAll: want all")
	}
	leases, ok := ps.TakeAll()
	want := `10.244.0.0/24 10.199.0.1 vxlan {"VNI":1,"VtepMAC":"00:00:00:00:00:00"}
10.244.1.0/24 10.199.0.2 vxlan {"VNI":1,"VtepMAC":"00:00:00:00:00:01"}
10.244.2.0/24 10.199.0.3 host-gw`
	if !ok || describe(leases) != want {
		t.Fatalf("TakeAll = %v\n%s\nwant\n%s", ok, describe(leases), want)
	}
	if n := logs.count(`msg="ignoring peer" node=n4 reason="node \"n4\": invalid flannel.alpha.coreos.com/public-ip \"10.199.0.300\""`); n != 1 {
		t.Errorf("n4 logged %d times\n%s", n, logs)
	}
	if logs.count("n3") != 0 {
		t.Errorf("an unmanaged node is logged:\n%s", logs)
	}
	fired(ps.Updated())

	// A new peer: its flannel's PATCH turns the kubelet's Node into a lease.
	n3 := peerNode("n3", "10.244.3.0/24", "10.199.0.4", "00:00:00:00:00:03")
	fake.put(n3)
	synced(t, m, fake, "n3")
	gone, came, all := ps.Changes()
	if !fired(ps.Updated()) || all || len(gone) != 0 || describe(came) != `10.244.3.0/24 10.199.0.4 vxlan {"VNI":1,"VtepMAC":"00:00:00:00:00:03"}` {
		t.Errorf("add: gone %v came %v all %v", gone, came, all)
	}

	// A new MAC replaces the lease: the old one goes, the new one comes.
	fake.put(peerNode("n1", "10.244.1.0/24", "10.199.0.2", "00:00:00:00:00:11"))
	synced(t, m, fake, "n1")
	gone, came, _ = ps.Changes()
	if !fired(ps.Updated()) || !strings.Contains(describe(gone), "00:00:00:00:00:01") || !strings.Contains(describe(came), "00:00:00:00:00:11") {
		t.Errorf("replace: gone %s came %s", describe(gone), describe(came))
	}

	// 10,000 updates of what flannel does not read: conditions, labels,
	// other annotations (a kubelet's heartbeats and images are not even
	// decoded: TestNodeProtobuf). No signal, no change, no work.
	applied := m.peers.applied
	began := time.Now()
	n2 := fake.node("n2")
	for i := range 10000 {
		n2.Labels = map[string]string{"beat": fmt.Sprint(i % 7)}
		n2.Status.Conditions = []NodeCondition{{Type: "Ready", Status: []string{"True", "False", "Unknown"}[i%3], Reason: fmt.Sprint(i)}}
		n2.Annotations["node.alpha.kubernetes.io/ttl"] = fmt.Sprint(i)
		fake.put(n2)
	}
	synced(t, m, fake, "n2")
	t.Logf("10,000 irrelevant updates through the fake API server: %v", time.Since(began))
	if fired(ps.Updated()) {
		t.Error("irrelevant updates fired Updated")
	}
	if gone, came, all := ps.Changes(); len(gone)+len(came) != 0 || all {
		t.Errorf("irrelevant updates: gone %v came %v all %v", gone, came, all)
	}
	if m.peers.applied != applied {
		t.Errorf("irrelevant updates changed the set %d times", m.peers.applied-applied)
	}

	// Keys under our prefix that peers never read (the owner's
	// overwrites), the v6 keys on an IPv4-only network, and the
	// NetworkUnavailable condition reach the handler but change no lease.
	n2 = fake.node("n2")
	n2.Annotations[DefaultPrefix+"/public-ip-overwrite"] = "10.199.9.9"
	n2.Annotations[DefaultPrefix+"/node-public-ip"] = "10.199.9.8"
	n2.Annotations[DefaultPrefix+"/backend-v6-data"] = "null"
	n2.Annotations[DefaultPrefix+"/public-ipv6"] = "fd99::3"
	n2.Status.Conditions = append(n2.Status.Conditions, NodeCondition{Type: "NetworkUnavailable", Status: "False", Reason: "FlannelIsUp"})
	fake.put(n2)
	synced(t, m, fake, "n2")
	if fired(ps.Updated()) || m.peers.applied != applied {
		t.Error("keys peers do not read changed the set")
	}
	if gone, came, all := ps.Changes(); len(gone)+len(came) != 0 || all {
		t.Errorf("keys peers do not read: gone %v came %v all %v", gone, came, all)
	}

	// A bad node that stays bad is not logged again.
	n4 := fake.node("n4")
	n4.Annotations[DefaultPrefix+"/backend-data"] = vxlanData("00:00:00:00:00:44")
	fake.put(n4)
	synced(t, m, fake, "n4")
	if n := logs.count(`msg="ignoring peer" node=n4`); n != 1 {
		t.Errorf("n4 logged %d times", n)
	}

	// Deleted: gone.
	fake.remove("n2")
	synced(t, m, fake, "n2")
	gone, came, _ = ps.Changes()
	if !fired(ps.Updated()) || describe(gone) != "10.244.2.0/24 10.199.0.3 host-gw" || len(came) != 0 {
		t.Errorf("delete: gone %s came %s", describe(gone), describe(came))
	}

	// Losing the managed annotation: gone (upstream keeps its routes).
	n3 = fake.node("n3")
	delete(n3.Annotations, DefaultPrefix+"/kube-subnet-manager")
	fake.put(n3)
	synced(t, m, fake, "n3")
	gone, came, _ = ps.Changes()
	if !fired(ps.Updated()) || !strings.HasPrefix(describe(gone), "10.244.3.0/24") || len(came) != 0 {
		t.Errorf("unmanaged: gone %s came %s", describe(gone), describe(came))
	}
	if logs.count(`msg="dropping peer" node=n3`) != 1 {
		t.Errorf("n3 drop not logged once:\n%s", logs)
	}
	leases, _ = ps.TakeAll()
	want = `10.244.0.0/24 10.199.0.1 vxlan {"VNI":1,"VtepMAC":"00:00:00:00:00:00"}
10.244.1.0/24 10.199.0.2 vxlan {"VNI":1,"VtepMAC":"00:00:00:00:00:11"}`
	if got := describe(leases); got != want {
		t.Errorf("final set:\n%s\nwant\n%s", got, want)
	}
}

// TestPeerSourceFamilies: in dual stack a change of only the v6 keys, or
// only the v4 keys, is a change (upstream needs both, spec 5.2).
func TestPeerSourceFamilies(t *testing.T) {
	fake := newFakeAPI()
	dual := func(name, i, mac4, mac6 string) *Node {
		n := peerNode(name, "10.244."+i+".0/24", "10.199.0."+i, mac4)
		n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "fd00:10:244:"+i+"::/64")
		n.Annotations[DefaultPrefix+"/public-ipv6"] = "fd99::" + i
		n.Annotations[DefaultPrefix+"/backend-v6-data"] = vxlanData(mac6)
		return n
	}
	fake.put(dual("n0", "1", "00:00:00:00:00:01", "00:00:00:00:06:01"))
	fake.put(dual("n1", "2", "00:00:00:00:00:02", "00:00:00:00:06:02"))
	m, _ := startManager(t, fake, "n0", cfgDual, Options{})
	ps := m.Peers()
	ps.TakeAll()

	fake.put(dual("n1", "2", "00:00:00:00:00:02", "00:00:00:00:06:99"))
	synced(t, m, fake, "n1")
	gone, came, _ := ps.Changes()
	if len(gone) != 1 || len(came) != 1 || !strings.Contains(string(came[0].Attrs.BackendV6Data), "06:99") ||
		!strings.Contains(string(gone[0].Attrs.BackendV6Data), "06:02") {
		t.Errorf("v6-only change: gone %s came %s", describe(gone), describe(came))
	}
	fake.put(dual("n1", "2", "00:00:00:00:00:98", "00:00:00:00:06:99"))
	synced(t, m, fake, "n1")
	gone, came, _ = ps.Changes()
	if len(gone) != 1 || len(came) != 1 || !strings.Contains(string(came[0].Attrs.BackendData), "00:98") {
		t.Errorf("v4-only change: gone %s came %s", describe(gone), describe(came))
	}
	// A v4-only peer is kept for IPv4 (upstream drops it on a dual-stack node).
	fake.put(peerNode("n2", "10.244.3.0/24", "10.199.0.3", "00:00:00:00:00:03"))
	synced(t, m, fake, "n2")
	_, came, _ = ps.Changes()
	if describe(came) != `10.244.3.0/24 10.199.0.3 vxlan {"VNI":1,"VtepMAC":"00:00:00:00:00:03"}` {
		t.Errorf("v4-only peer: came %s", describe(came))
	}
}

// TestPeerSourceOutage: a Node deleted while the API server was down, and
// whose delete event was compacted away, is removed by the re-list
// (DeletedFinalStateUnknown); the outage is logged once at its start and
// once at its end.
func TestPeerSourceOutage(t *testing.T) {
	fake := newFakeAPI()
	fake.put(peerNode("n0", "10.244.0.0/24", "10.199.0.1", "00:00:00:00:00:00"))
	fake.put(peerNode("n1", "10.244.1.0/24", "10.199.0.2", "00:00:00:00:00:01"))
	m, logs := startManager(t, fake, "n0", cfgV4, Options{})
	ps := m.Peers()
	ps.TakeAll()
	lists := fake.lists

	fake.setDown(true)
	waitFor(t, "the outage line", func() bool { return logs.count("Kubernetes API server unreachable") == 1 })
	fake.remove("n1")
	fake.put(peerNode("n2", "10.244.2.0/24", "10.199.0.3", "00:00:00:00:00:02"))
	fake.compact()
	time.Sleep(50 * time.Millisecond)
	fake.setDown(false)
	synced(t, m, fake, "n2")
	synced(t, m, fake, "n1")
	if fake.lists == lists {
		t.Error("no re-list: the test did not exercise DeletedFinalStateUnknown")
	}
	leases, _ := ps.TakeAll()
	if got := describe(leases); strings.Contains(got, "10.244.1.0") || !strings.Contains(got, "10.244.2.0") {
		t.Errorf("after the outage:\n%s", got)
	}
	waitFor(t, "the end line", func() bool { return logs.count("Kubernetes API server is reachable again") == 1 })
	if n := logs.count("Kubernetes API server unreachable"); n != 1 {
		t.Errorf("outage logged %d times:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), `server=https://fake:6443`) || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("outage line names neither server nor error:\n%s", logs)
	}
}

// TestPeersRelist: a re-list replaces the set; a Node that is not in it
// was deleted while no watch was open (client-go's informer handed such
// Nodes over as DeletedFinalStateUnknown) and is a removed peer.
func TestPeersRelist(t *testing.T) {
	k, _ := KeysFor(DefaultPrefix)
	p := newPeers(discard(), k, "n0", nil)
	p.setSynced()
	n0 := peerNode("n0", "10.244.0.0/24", "10.199.0.1", "00:00:00:00:00:00")
	n1 := peerNode("n1", "10.244.1.0/24", "10.199.0.2", "00:00:00:00:00:01")
	p.replace(map[string]*Node{"n0": k.compact(n0), "n1": k.compact(n1)})
	p.TakeAll()
	p.replace(map[string]*Node{"n0": k.compact(n0)})
	gone, came, all := p.Changes()
	if all || len(came) != 0 || describe(gone) != `10.244.1.0/24 10.199.0.2 vxlan {"VNI":1,"VtepMAC":"00:00:00:00:00:01"}` {
		t.Errorf("gone %s came %s all %v", describe(gone), describe(came), all)
	}
	if p.node("n1") != nil || p.node("n0") == nil || p.count() != 1 {
		t.Errorf("nodes after the re-list: n0 %v n1 %v, %d", p.node("n0"), p.node("n1"), p.count())
	}
	// The same Nodes again: nothing changes.
	p.replace(map[string]*Node{"n0": k.compact(n0)})
	if gone, came, all := p.Changes(); len(gone)+len(came) != 0 || all {
		t.Errorf("same list: gone %v came %v all %v", gone, came, all)
	}
	// A Node that was never a peer goes without a trace; nil never panics.
	p.upsert(k.compact(testNode("n2")))
	p.replace(map[string]*Node{})
	if leases, _ := p.TakeAll(); len(leases) != 0 || p.count() != 0 {
		t.Errorf("left %s, %d nodes", describe(leases), p.count())
	}
	p.upsert(nil)
	p.remove("nonexistent")
}

func TestPeersOverflow(t *testing.T) {
	k, _ := KeysFor(DefaultPrefix)
	p := newPeers(discard(), k, "n0", nil)
	p.setSynced()
	p.TakeAll()
	for i := range subnet.MaxPendingLeases + 10 {
		p.upsert(peerNode(fmt.Sprintf("n%d", i), fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), "10.199.0.2", "00:00:00:00:00:01"))
	}
	if _, _, all := p.Changes(); !all {
		t.Error("more than subnet.MaxPendingLeases changes: want all")
	}
	if l, _ := p.TakeAll(); len(l) != subnet.MaxPendingLeases+10 {
		t.Errorf("TakeAll: %d leases", len(l))
	}
	p.remove("n0")
	if gone, came, all := p.Changes(); all || len(gone) != 1 || len(came) != 0 {
		t.Errorf("after TakeAll: gone %d came %d all %v", len(gone), len(came), all)
	}
	// Before the sync, consumers must take all.
	q := newPeers(discard(), k, "n0", nil)
	if _, synced := q.TakeAll(); synced {
		t.Error("synced before the first list")
	}
	if _, _, all := q.Changes(); !all {
		t.Error("Changes before sync: want all")
	}
}

func TestCompact(t *testing.T) {
	k, _ := KeysFor(DefaultPrefix)
	n := peerNode("n1", "10.244.1.0/24", "10.199.0.2", "00:00:00:00:00:01")
	n.UID, n.ResourceVersion = "u1", "7"
	n.Labels = map[string]string{"a": "b"}
	n.Annotations["other.io/x"] = "y"
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n.Status.Conditions = []NodeCondition{
		{Type: "Ready", Status: "True"},
		{Type: "NetworkUnavailable", Status: "False", Reason: "FlannelIsUp"},
	}
	c := k.compact(n)
	if c.Name != "n1" || c.UID != "u1" || c.ResourceVersion != "7" || len(c.Labels) != 0 || len(c.ManagedFields) != 0 ||
		len(c.Annotations) != 4 || c.Annotations["other.io/x"] != "" ||
		networkCondition(c) != "False/FlannelIsUp" || len(c.Status.Conditions) != 1 ||
		!slices.Equal(c.Spec.PodCIDRs, n.Spec.PodCIDRs) || c.Spec.PodCIDR != n.Spec.PodCIDR {
		t.Errorf("compact = %+v", c)
	}
	// Idempotent.
	if !sameView(c, k.compact(c)) {
		t.Error("compact is not idempotent")
	}
}

// TestListPages: a list comes in pages of listPage Nodes, all of which
// make the set.
func TestListPages(t *testing.T) {
	fake := newFakeAPI()
	for i := range 2*listPage + 1 {
		fake.put(peerNode(fmt.Sprintf("n%04d", i), fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256), "10.199.0.2", "00:00:00:00:00:01"))
	}
	m, logs := startManager(t, fake, "n0000", cfgV4, Options{})
	if leases, _ := m.Peers().TakeAll(); len(leases) != 2*listPage+1 || fake.lists != 3 {
		t.Errorf("%d leases from %d requests", len(leases), fake.lists)
	}
	if !strings.Contains(logs.String(), "nodes=1001 peers=1001") {
		t.Errorf("sync line:\n%s", logs)
	}
}
