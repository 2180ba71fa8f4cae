package kernel

import "time"

// PassReport describes one reconcile pass, for metrics.
type PassReport struct {
	// Full is true when the pass read the kernel (dump and diff).
	Full bool
	// Delta is true for a pass over the changed leases only (Update).
	Delta bool
	// Repair is true when a kernel change we did not make (a deleted
	// route, a changed MAC, a vanished device) triggered the pass: its
	// writes repair drift.
	Repair   bool
	Duration time.Duration
	// Writes counts successful kernel writes by object ("route", "neigh",
	// "fdb") and operation ("set", "del").
	Writes map[[2]string]int
	Errors int
}

func (k opKind) object() string {
	switch k {
	case opRouteDel, opRouteSet:
		return "route"
	case opNeighSet, opNeighDel:
		return "neigh"
	default:
		return "fdb"
	}
}

func (k opKind) verb() string {
	switch k {
	case opNeighSet, opFDBSet, opRouteSet:
		return "set"
	default:
		return "del"
	}
}
