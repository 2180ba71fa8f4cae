// Package etcdv2 is the lease source in etcd's v2 store (subnet.Manager):
// how our flanneld runs as one node of a flannel v0.11 cluster
// (--etcd-api=v2), and the v2 half of the migration mode that moves such a
// cluster to the v3 keyspace (--etcd-api=both, package subnet/dual). Issue
// 18; "spec N" below is a section of shared/spec/etcd-v2.md.
//
// v0.11 nodes read and write the v2 store only, so everything they can see
// is written as they write it (spec 1-3): <prefix>/config, one key
// <prefix>/subnets/A.B.C.D-LEN per lease with ttl=86400 (a reservation has
// none and keeps none), v0.11's value bytes (EncodeV011; FormatCurrent in
// the migration mode), creates with prevExist=false, reuse and renewal as an
// unconditional set. Its bugs are not kept (spec 7):
//   - nothing we write wedges a v0.11 watcher: only A.B.C.D-LEN keys with
//     JSON values below <prefix>/subnets, no conditional delete (Retract
//     lets a claim expire through a compare-and-swap with ttl=1 instead);
//   - our watcher skips an event it cannot read, advancing its cursor, and
//     bounds every long poll (Options.PollTimeout);
//   - the previous subnet is reused only when no lease overlaps it (v0.11
//     overwrote the holder's key), lost create races are retried for as
//     long as it takes (v0.11 gave up after 10);
//   - a deleted or expired own key is re-created with the same subnet
//     (v0.11 exited).
//
// The v2 store is not the v3 keyspace: its index is its own counter,
// unrelated to v3 revisions, and it keeps only the last 1000 events of
// the whole store, so a watcher that falls behind lists again.
package etcdv2
