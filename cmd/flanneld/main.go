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
	"runtime/pprof"
	"syscall"

	buildversion "github.com/flannelng/flannel/pkg/version"
)

// version is this binary's version: the Makefile stamps git describe into
// pkg/version (-X github.com/flannelng/flannel/pkg/version.Version=...).
var version = buildversion.Get()

func main() {
	c, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		os.Exit(exitCode(err))
	}
	if c.Version {
		fmt.Println(version)
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(c.Verbosity), ReplaceAttr: levelNames}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process with the default action
	}()
	stopProfile := startCPUProfile(os.Getenv("FLANNELD_CPUPROFILE"), log)
	err = run(ctx, c, log)
	stopProfile()
	if code := runExitStatus(ctx.Err() != nil, err); code != 0 {
		log.Error(err.Error())
		os.Exit(code)
	} else if err != nil {
		log.Info("Exiting cleanly after a signal", "interrupted", err.Error())
	}
}

// runExitStatus is flanneld's exit status after run. A signal (SIGINT,
// SIGTERM) is a clean stop, status 0 as upstream's, even when something
// failed because the signal cut it short (a lease re-acquire, a backend
// waiting for the kernel): systemd and the kubelet read any other status
// as a crash. daemon.Run already returns nil then; this keeps the rule
// where the process exits, whatever run returns.
func runExitStatus(signalled bool, err error) int {
	if err == nil || signalled {
		return 0
	}
	return 1
}

// startCPUProfile writes a CPU profile of the whole run to path, for the
// benchmark suite (bench/, `make bench --profile`). It is an environment
// variable and not a flag on purpose: operators never need it, and
// upstream's flag set stays as it is. The profile is complete once the
// daemon exits (SIGTERM); the returned func stops it.
func startCPUProfile(path string, log *slog.Logger) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		log.Warn("No CPU profile", "FLANNELD_CPUPROFILE", path, "err", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
