package kernel

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
)

// Two leases claiming one kernel object (cloned machines with the same
// VtepMAC, two leases for one subnet) reach a full pass in the order of the
// lease source's map, which changes from pass to pass. The winner must
// not: an FDB entry that moves between two hosts on every pass breaks
// traffic to both. And the conflict is logged once, not on every pass.
func TestContestedObjectStableWinner(t *testing.T) {
	// Three leases, all with VtepMAC macB (cloned machines), and a fourth
	// with its own MAC but the subnet of the first.
	leases := []State{
		{Routes: []Route{vxRoute("10.5.2.0/24", 5)}, Neighs: []Neigh{{5, addr("10.5.2.0"), macB}}, FDB: []FDB{{5, macB, addr("172.31.0.9")}}},
		{Routes: []Route{vxRoute("10.5.3.0/24", 5)}, Neighs: []Neigh{{5, addr("10.5.3.0"), macB}}, FDB: []FDB{{5, macB, addr("172.31.0.2")}}},
		{Routes: []Route{vxRoute("10.5.4.0/24", 5)}, Neighs: []Neigh{{5, addr("10.5.4.0"), macB}}, FDB: []FDB{{5, macB, addr("172.31.0.5")}}},
		{Routes: []Route{vxRoute("10.5.2.0/24", 5)}, Neighs: []Neigh{{5, addr("10.5.2.0"), macA}}, FDB: []FDB{{5, macA, addr("172.31.0.7")}}},
	}
	var logs bytes.Buffer
	r := &Reconciler{log: slog.New(slog.NewTextHandler(&logs, nil)), warned: map[string]string{}}
	rnd := rand.New(rand.NewPCG(1, 19))
	var first *index
	for pass := range 50 {
		rnd.Shuffle(len(leases), func(i, j int) { leases[i], leases[j] = leases[j], leases[i] })
		ix, conflicts := buildIndex(joinStates(leases...))
		r.logConflicts(conflicts)
		if first == nil {
			first = ix
			continue
		}
		if got, want := ix.fdb[fdbKey{5, macB}], first.fdb[fdbKey{5, macB}]; got != want {
			t.Fatalf("pass %d: FDB entry for %s goes to %s, the first pass sent it to %s", pass, macB, got, want)
		}
		if got, want := ix.neighs[neighKey{5, addr("10.5.2.0")}], first.neighs[neighKey{5, addr("10.5.2.0")}]; got != want {
			t.Fatalf("pass %d: neighbour 10.5.2.0 is %s, the first pass made it %s", pass, got, want)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Errorf("%d warnings over 50 passes, want one per contested object (2):\n%s", n, logs.String())
	}
}
