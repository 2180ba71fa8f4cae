//go:build linux

// Package e2e runs flanneld processes in lab hosts (network namespaces)
// against a real etcd and checks what users see: leases, subnet.env,
// health, kernel state and pod traffic.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newLab builds a lab with etcd running and the network config written.
func newLab(t *testing.T, hosts int, netConfig string) (*lab.Lab, *clientv3.Client) {
	t.Helper()
	return newLabOpts(t, lab.Options{Hosts: hosts}, netConfig)
}

// newLabOpts is newLab with lab options (IPv6 underlay, ...).
func newLabOpts(t *testing.T, o lab.Options, netConfig string) (*lab.Lab, *clientv3.Client) {
	t.Helper()
	l := lab.NewT(t, o)
	ctx := testCtx(t, 60*time.Second)
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	cli, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if netConfig != "" {
		if _, err := cli.Put(ctx, "/coreos.com/network/config", netConfig); err != nil {
			t.Fatal(err)
		}
	}
	return l, cli
}

// waitEnv waits until h's subnet.env exists and parses.
func waitEnv(t *testing.T, l *lab.Lab, h *lab.Host, p *lab.Process, timeout time.Duration) subnet.Env {
	t.Helper()
	var env subnet.Env
	err := l.WaitFor(context.Background(), timeout, "subnet.env on "+h.Name, func() error {
		if p != nil && p.Exited() {
			return fmt.Errorf("flanneld exited:\n%s", p.Log())
		}
		e, err := subnet.ReadEnvFile(h.SubnetFile())
		if err != nil {
			return err
		}
		env = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// leases returns the lease keys and values under prefix.
func leases(t *testing.T, cli *clientv3.Client, prefix string) map[string]*clientv3.GetResponse {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*clientv3.GetResponse{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = &clientv3.GetResponse{Kvs: resp.Kvs[:0:0]}
		out[string(kv.Key)].Kvs = append(out[string(kv.Key)].Kvs, kv)
	}
	return out
}

// httpGet fetches url from inside the fabric namespace.
func httpGet(l *lab.Lab, url string) (int, string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return l.DialFabric(ctx, addr) },
	}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func fileMode(t *testing.T, path string) os.FileMode {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func contains(s string, subs ...string) error {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return fmt.Errorf("missing %q", x)
		}
	}
	return nil
}
