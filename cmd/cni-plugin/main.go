// Command flannel is the flannel CNI plugin, a drop-in for
// /opt/cni/bin/flannel. It is a "meta-plugin": it combines its own network
// configuration with the node's subnet.env (written by flanneld) into a
// config for another plugin (bridge by default) and delegates the real work
// to it. See README.md in this directory.
package main

import (
	"fmt"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// Set at link time: go build -ldflags "-X main.Version=v1.2.3 -X main.Commit=abc123".
// Program exists because upstream's build scripts also set -X main.Program.
var (
	Program = "flannel"
	Version = "unknown"
	Commit  = "unknown"
)

func about() string {
	return fmt.Sprintf("CNI Plugin %s version %s (%s/%s) commit %s", Program, Version, runtime.GOOS, runtime.GOARCH, Commit)
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, cniversion.All, about())
}
