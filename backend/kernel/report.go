package kernel

import "github.com/flannelng/flannel/backend"

// PassReport is the backend contract's report of one pass: the kernel
// reconciler fills it in, the daemon's metrics read it without depending
// on this package.
type PassReport = backend.PassReport

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
