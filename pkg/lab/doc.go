// Package lab builds a throw-away cluster of simulated nodes out of network
// namespaces for end-to-end tests, benchmarks and the demo.
//
// A lab has one fabric namespace holding a Linux bridge (the underlay switch,
// which also carries etcd's address) and one namespace per host, wired to the
// fabric with a veth pair whose host end is eth0. flanneld runs as a real
// process inside each host namespace; pods are further namespaces wired into
// a bridge cni0 inside their host, either by hand or through the flannel CNI
// plugin.
//
// Nothing is ever added to the root network namespace: every namespace the lab
// makes starts with a per-lab prefix (fl<6 hex>-...), and Close removes them
// all. See README.md in this directory.
//
// The lab is Linux-only and needs root; NewT skips the test otherwise.
package lab
