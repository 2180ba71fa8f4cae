// Package suite holds the phases of the data-plane benchmark (`go run
// ./bench`, `make bench`): how long one flanneld takes to program K fake
// peers' leases, bursts and single lease changes, what it costs when idle,
// and pod-to-pod TCP throughput over the overlay. Each phase takes a fresh
// lab (pkg/lab) and returns its figures; report.go prints them next to
// upstream's and checks the targets.
//
// Fake peers are leases in etcd for machines that do not exist: nothing is
// ever sent to them, the daemon only programs kernel entries for them, and
// the checks read those entries with netlink dumps inside the lab host's
// namespace.
package suite
