//go:build !linux

// Command bench needs Linux network namespaces; elsewhere it only says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: the benchmark runs in network namespace labs and needs Linux")
	os.Exit(1)
}
