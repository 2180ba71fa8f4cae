// Package etcdv2 is a client of etcd's v2 keys API (/v2/keys), the API
// flannel v0.11 keeps its config and leases in.
//
// It exists for the clusters this project is the way off v0.11 for (issue
// 18): a daemon that joins a v0.11 cluster has to read and write the v2
// store exactly as v0.11 does, and flannelctl copies that store into the v3
// keyspace. The v2 store is separate from the v3 keyspace; etcd serves it
// only up to 3.5, with --enable-v2. "spec N" below is a section of the
// project's etcd v2 contract, shared/spec/etcd-v2.md.
//
// # Why not the official client
//
// etcd's own v2 client (go.etcd.io/etcd/client/v2 v2.305.36) builds with
// this module's go.mod, but only because version selection lifts its
// api/v3 and client/pkg/v3 from 3.5 to our 3.7, a pairing etcd never
// tested; it is a deprecated module that etcd 3.6 removed, and it brings
// github.com/json-iterator/go and github.com/modern-go/reflect2. The v2
// keys API is a handful of HTTP requests, so this package speaks it itself
// with net/http and encoding/json, and can do
// what that client did not:
//   - every request but a long poll has a timeout (Config.RequestTimeout),
//     and a long poll ends with its context, so a caller can bound it and
//     poll again from the same cursor (spec 7);
//   - writes that are not idempotent (create, compare-and-swap, conditional
//     delete) fail over to the next endpoint only when the connection could
//     not be opened, so a request is never applied twice; v0.11's client
//     tried creates once and other requests on any transport error or 5xx;
//   - a server without the v2 API (a plain "404 page not found") is
//     reported as ErrNoV2API, not as invalid JSON.
//
// # Wire format
//
// Requests are the ones v0.11's vendored client sends (spec 2.2): query
// parameters and form fields in url.Values order (sorted), so
//
//	GET  /v2/keys/coreos.com/network/subnets?quorum=true&recursive=true&sorted=false
//	PUT  /v2/keys/coreos.com/network/subnets/10.244.82.0-24?prevExist=false   ttl=86400&value=...
//	GET  /v2/keys/coreos.com/network/subnets?recursive=true&wait=true&waitIndex=8
//
// A TTL of zero sends no ttl field: the key has no expiry (a reservation).
// The X-Etcd-Index header of every answer is in Response.Index; an error
// answer is an *Error with etcd's errorCode (100 key not found, 101 compare
// failed, 105 node exists, 401 event index cleared, ...) and its index.
//
// # Watches and history
//
// Watch is one long poll: it returns the first event at or after
// afterIndex+1. etcd keeps the last 1000 events of the whole v2 store; an
// older index answers 401 (IsIndexCleared), after which a watcher lists
// again (Get recursive) and continues from that answer's Response.Index.
//
// The subpackage etcdv2test writes config and leases as flannel v0.11 nodes
// do, for tests that need v0.11 peers without v0.11 binaries.
package etcdv2
