//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
)

// etcd with the v2 API, for the clusters of flannel v0.11 (issue 18). The
// lab's own lab-etcd is built on etcd 3.7, which has no v2 API, so this is
// a second program: etcd's own server command at v3.5 (the last release
// line with --enable-v2), from the nested module tools/etcd2, built into
// bin/ by scripts/etcd2-bin.sh (about 2 minutes cold).
const (
	etcdV2Program = "etcd2"
	etcdV2Hint    = "build it with `make etcd2` (scripts/etcd2-bin.sh)"
	// etcd logs this (at info) once its client listener serves, with
	// "insecurely" or "securely" after it.
	etcdV2ReadyLine = `"msg":"serving client traffic`
)

// FindEtcdV2Binary returns the path of etcd2 (etcd 3.5 with the v2 API): in
// $LAB_BIN_DIR if it is set, otherwise in bin/ at the module root, where
// `make etcd2` puts it. The error says how to build it.
func FindEtcdV2Binary() (string, error) {
	dir := os.Getenv(BinDirEnv)
	where := BinDirEnv + "=" + dir
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
		where = dir
	}
	p := filepath.Join(dir, etcdV2Program)
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s not in %s: %s", etcdV2Program, where, etcdV2Hint)
	}
	return p, nil
}

// RequireEtcdV2Binary sets b.EtcdV2 (FindEtcdV2Binary) or ends the test,
// as RequireKubeBinaries does: a failure when $LAB_BIN_DIR is set (as
// `make test` does, after `make etcd2`), otherwise a skip with the hint.
func RequireEtcdV2Binary(tb testing.TB, b *Binaries) {
	tb.Helper()
	p, err := FindEtcdV2Binary()
	switch {
	case err == nil:
		b.EtcdV2 = p
	case os.Getenv(BinDirEnv) != "":
		tb.Fatalf("etcd with the v2 API: %v", err)
	default:
		tb.Skipf("needs etcd with the v2 API: %v", err)
	}
}

// StartEtcdV2 runs Binaries.EtcdV2 (etcd 3.5) with --enable-v2=true as the
// lab's etcd, in its place: the same fabric namespace and client endpoint
// (EtcdEndpoint), which then serves both the v2 API and v3, as the etcd of
// a v0.11 cluster being migrated does. StopEtcd stops it; only one of
// lab-etcd and etcd2 runs at a time.
//
// Its data lives in Dir/etcd2 (etcd 3.7's data in Dir/etcd cannot be read by
// 3.5) and survives StopEtcd, so a Stop/Start pair is an outage; the v2
// store's event history is rebuilt from the WAL at restart. It logs to
// Dir/etcd.log at info level (the start waits for the line saying it serves
// clients, at most 30 s). extraArgs are etcd flags appended to the command
// line, and later flags win: --enable-v2=false gives a server without the
// v2 API; --cert-file, --key-file, --trusted-ca-file and --client-cert-auth
// give TLS, and --cert-file switches EtcdEndpoint to https. --log-level is
// fixed at info.
func (l *Lab) StartEtcdV2(ctx context.Context, extraArgs ...string) error {
	if l.bin.EtcdV2 == "" {
		return errors.New("start etcd v2: Options.Binaries.EtcdV2 is not set (RequireEtcdV2Binary)")
	}
	if err := l.claimEtcd(extraArgs); err != nil {
		return err
	}
	clientURL := l.EtcdEndpoint()
	peerURL := "http://127.0.0.1:2380"
	argv := append([]string{l.bin.EtcdV2,
		"--name=lab",
		"--data-dir=" + filepath.Join(l.dir, "etcd2"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=lab=" + peerURL,
		"--enable-v2=true",
		// Fast elections, as lab-etcd has: one member is leader in
		// about a second.
		"--heartbeat-interval=50",
		"--election-timeout=500",
		"--logger=zap",
		"--log-outputs=stderr",
	}, extraArgs...)
	argv = append(argv, "--log-level=info")
	return l.runEtcd(ctx, argv, filepath.Join(l.dir, "etcd.log"), etcdV2ReadyLine)
}

// EtcdV2Config is a v2 client configuration for the lab's etcd (started by
// StartEtcdV2) that works from the test process: it dials inside the
// fabric namespace. Add TLS to it for an etcd started with TLS flags.
func (l *Lab) EtcdV2Config() etcdv2.Config {
	return etcdv2.Config{
		Endpoints: []string{l.EtcdEndpoint()},
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return l.DialFabric(ctx, addr)
		},
		DialTimeout:    2 * time.Second,
		RequestTimeout: 10 * time.Second,
	}
}

// EtcdV2 returns a v2 client of the lab's etcd (see EtcdV2Config). It holds
// no more than idle connections; Close drops them.
func (l *Lab) EtcdV2() (*etcdv2.Client, error) {
	return etcdv2.New(l.EtcdV2Config())
}

// isEtcdProgram reports whether argv0 is one of the lab's etcd servers, to
// find the lab's etcd among the processes of a loaded lab.
func isEtcdProgram(argv0 string, b Binaries) bool {
	base := filepath.Base(argv0)
	return base == filepath.Base(b.LabEtcd) || (b.EtcdV2 != "" && base == filepath.Base(b.EtcdV2))
}
