// Package suite holds the phases of the data-plane benchmark (`go run
// ./bench`, `make bench`): how long one flanneld takes to program K fake
// peers' leases, bursts and single lease changes, what it costs when idle,
// pod-to-pod TCP throughput over the overlay, and in kube mode (a real
// kube-apiserver) how long it takes to program K Nodes after its informer
// synced and what Node updates it has no use for cost. Each phase takes a fresh
// lab (pkg/lab) and returns its figures; report.go prints them next to
// upstream's and checks the targets.
//
// Fake peers are leases in etcd (or Node objects with upstream's
// annotations) for machines that do not exist: nothing is ever sent to them, the daemon only programs kernel entries for them, and
// the checks read those entries with netlink dumps inside the lab host's
// namespace.
package suite
