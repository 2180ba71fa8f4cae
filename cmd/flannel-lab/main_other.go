//go:build !linux

// Command flannel-lab needs Linux network namespaces; elsewhere it only says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "flannel-lab: network namespace labs need Linux")
	os.Exit(1)
}
