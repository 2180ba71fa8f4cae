// Command flanneld is a flannel-compatible overlay network daemon: it leases
// a subnet in etcd, programs the vxlan or host-gw data plane for every other
// node's lease, writes subnet.env and keeps the masquerade rules.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	c, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		os.Exit(exitCode(err))
	}
	if c.Version {
		fmt.Println(version)
		return
	}
	level := slog.LevelInfo
	if c.Verbosity >= 4 {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process with the default action
	}()
	if err := run(ctx, c, log); err != nil {
		log.Error(err.Error())
		os.Exit(1)
	}
}
