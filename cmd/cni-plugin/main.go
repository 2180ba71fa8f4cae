// Command flannel is the flannel CNI plugin, a drop-in for
// /opt/cni/bin/flannel. It is a "meta-plugin": it combines its own network
// configuration with the node's subnet.env (written by flanneld) into a
// config for another plugin (bridge by default) and delegates the real work
// to it. See README.md in this directory.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/flannelng/flannel/pkg/version"
)

// Program and Commit are upstream's link-time variables, kept because
// upstream's build scripts set them (-X main.Program=flannel -X
// main.Commit=abc123). The version itself is pkg/version's, as in every
// binary of this repository.
var (
	Program = "flannel"
	Commit  = ""
)

func about() string {
	commit := Commit
	if commit == "" {
		commit = version.Revision()
	}
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("CNI Plugin %s version %s (%s/%s) commit %s", Program, version.Get(), runtime.GOOS, runtime.GOARCH, commit)
}

func main() {
	// Runtimes execute a plugin without arguments (the CNI spec passes
	// everything in CNI_* variables and stdin), so an argument can only
	// come from a person. The CNI VERSION command is a different thing:
	// CNI_COMMAND=VERSION prints the spec versions the plugin supports.
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println(version.Get())
		return
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, cniversion.All, about())
}
