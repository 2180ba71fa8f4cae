// Package kube is the Kubernetes lease source (flanneld --kube-subnet-mgr):
// a subnet.Manager whose network config is a file (the kube-flannel-cfg
// ConfigMap), whose subnets are our Node's spec.podCIDRs, and whose lease
// attributes are annotations on our Node, read by every other node from
// one list and watch of all Nodes. The keys, value formats, patch bodies and
// condition text are upstream flannel v0.28.9's, byte for byte, so that our
// nodes and upstream nodes run in one cluster (spec: kube-subnet-manager.md).
//
// It keeps upstream's contract and fixes what goes wrong with it
// (spec section 8):
//
//   - No podCIDR yet (#728, #1224): Acquire waits on the watched Node with
//     one line, "waiting for spec.podCIDR on node X", and takes the podCIDR
//     the moment node IPAM sets it. Upstream exits and crash-loops.
//   - A podCIDR outside Network is refused before anything is published:
//     upstream first announces the node to every peer, then exits.
//   - A Node without annotations works (#818: upstream panics on the nil map).
//   - Our annotations are written in one PATCH of nodes/<n>/status with only
//     the keys that differ, and none when nothing does (upstream rewrites
//     public-ip-overwrite on every start). The only write is that PATCH;
//     the reads are nodes list/watch and pods get: exactly upstream's
//     ClusterRole. Keep puts our annotations back when someone removes
//     them, and follows our Node through a deletion.
//   - Previous finds vxlan's MAC under the normalised prefix (upstream uses
//     the raw one, so a prefix like example.com/fl loses the MAC).
//   - The Node watch never blocks (#719): each event converts a Node into
//     a lease under a lock and sets a coalesced signal; the peer source
//     hands over the whole set or what changed, like the etcd Watcher.
//     compact keeps only name, uid, resourceVersion, our annotations,
//     podCIDRs and the NetworkUnavailable condition, so 5,000 Nodes cost
//     about a MB and a kubelet heartbeat compares equal and reaches nobody.
//   - The watch is ours, not client-go's informer (nodewatch.go): one
//     goroutine lists the Nodes in pages, then watches from the list's
//     resourceVersion with bookmarks, decoding each event from the stream
//     (stream.go) and applying it where it is read. The informer's
//     reflector, DeltaFIFO and processor handed every event between three
//     goroutines, which cost more CPU than the event itself: a kubelet
//     heartbeat costs the daemon about half as much now (docs/benchmarks.md).
//     It re-lists on 410 Gone, resumes a broken watch from the last
//     resourceVersion with back-off, and stops at Close.
//   - Any change of either family's keys is a change (upstream, dual stack,
//     needs a v4 and a v6 key to change at once: #1795). A Node that loses
//     the managed annotation, or is deleted (also while the watch was down:
//     the re-list replaces the set), is a removed peer (#2554). A family that is
//     missing or invalid is left out instead of dropping the node, and
//     nothing on a Node can panic the daemon.
//   - The node name comes from NODE_NAME, else one GET of our pod, retried
//     while the API server cannot be reached (kubernetes#60161).
//   - An API server outage is one line at its start, naming the server and
//     the error, and one at its end with its length; the retries go to
//     Debug. Upstream's outages are silent.
//   - NetworkUnavailable=False is set by Ready, which the daemon calls after
//     the data plane is programmed (#1431), and not again when it already
//     says so (its lastTransitionTime keeps its meaning).
//
// Size: the client is a REST client on a scheme of three types of our own
// (types.go, with a hand-written protobuf decoder that skips what flannel
// does not read), not client-go's typed clientset nor k8s.io/api/core/v1,
// which would add 22 MB and 4.5 MB to flanneld, nor its tools/cache.
package kube
