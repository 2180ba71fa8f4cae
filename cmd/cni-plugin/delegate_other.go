//go:build !linux

package main

import (
	"fmt"
	"net/netip"
	"runtime"
)

// buildDelegate: upstream's Windows rules (win-bridge, ipMasqNetwork, a
// flat host-local subnet) are not implemented; refuse clearly rather than
// render a Linux config that a Windows delegate would misread.
func buildDelegate(n *netConf, env *subnetEnv) (map[string]any, error) {
	if err := validateDelegate(n.Delegate); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("flannel CNI plugin: building the delegate config is not implemented on %s", runtime.GOOS)
}

// staleBridge: no bridge delegate off Linux.
func staleBridge(map[string]any, *subnetEnv, func(string) ([]netip.Prefix, error)) string { return "" }

func bridgeAddrs(string) ([]netip.Prefix, error) { return nil, nil }
