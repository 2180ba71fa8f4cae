// Command etcd is etcd's own server command (etcdmain.Main, the code behind
// the released etcd binary) at the v3.5 release pinned in go.mod: the last
// etcd server that serves the v2 API (--enable-v2). The lab runs it as a
// cluster of flannel v0.11's era would run etcd, with both the v2 store and
// the v3 keyspace on one client endpoint.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
