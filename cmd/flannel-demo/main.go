// Command flannel-demo runs a local multi-node flannel cluster in network
// namespaces: a real etcd, our flanneld on every node, pods created through
// our CNI plugin, then prints the lease table and a ping matrix. With --kube
// the leases come from Kubernetes instead: a real kube-apiserver on that
// etcd, one Node per host with its podCIDR, flanneld --kube-subnet-mgr, and
// the Nodes' flannel annotations in place of the etcd lease table. It
// removes everything afterwards unless --keep is given (see
// `flannel-lab down`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type options struct {
	binDir  string
	dir     string
	hosts   int
	pods    int
	backend string
	keep    bool
	kube    bool
}

// healthzPort is where every demo flanneld serves /healthz, /readyz and
// /metrics.
const healthzPort = 8471

// leaseSource is what differs between the etcd and the kube demo once the
// daemons run: the lease table and the --keep hints.
type leaseSource struct {
	show  func(ctx context.Context, out io.Writer) error
	hints []string
}

func main() {
	var o options
	fs := flag.NewFlagSet("flannel-demo", flag.ContinueOnError)
	fs.StringVar(&o.binDir, "bin", "bin", "directory holding flanneld, flannel (CNI plugin), lab-etcd and, for --kube, kube-apiserver and kubectl")
	fs.StringVar(&o.dir, "dir", "", "working directory (logs, subnet files, etcd data); default: a temp dir")
	fs.IntVar(&o.hosts, "hosts", 3, "number of nodes")
	fs.IntVar(&o.pods, "pods", 2, "pods per node")
	fs.StringVar(&o.backend, "backend", "vxlan", "backend type: vxlan, host-gw, wireguard, ...")
	fs.BoolVar(&o.keep, "keep", false, "leave the cluster running (remove it with `flannel-lab down --dir DIR`)")
	fs.BoolVar(&o.kube, "kube", false, "kube mode: leases from Node objects of a real kube-apiserver (flanneld --kube-subnet-mgr)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the demo creates network namespaces: run it as root")
	}
	if o.hosts < 2 || o.pods < 1 {
		return errors.New("need --hosts >= 2 and --pods >= 1")
	}
	abs, err := filepath.Abs(o.binDir)
	if err != nil {
		return err
	}
	bin := lab.Binaries{Flanneld: filepath.Join(abs, "flanneld"), LabEtcd: filepath.Join(abs, "lab-etcd"), CNIPlugin: filepath.Join(abs, "flannel")}
	for _, p := range []string{bin.Flanneld, bin.LabEtcd, bin.CNIPlugin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (run `make build` first)", err)
		}
	}
	if o.kube {
		if bin.KubeAPIServer, bin.Kubectl, err = kubeBinaries(abs); err != nil {
			return err
		}
	}
	if o.keep && o.dir == "" {
		o.dir = "/tmp/flannel-demo"
	}
	if o.dir != "" {
		if err := os.MkdirAll(o.dir, 0o755); err != nil {
			return err
		}
	}
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	l, err := lab.New(ctx, lab.Options{Hosts: o.hosts, Dir: o.dir, Binaries: bin, Detached: o.keep})
	if err != nil {
		return err
	}
	defer func() {
		if o.keep && err == nil {
			return
		}
		if err != nil {
			for _, h := range l.Hosts() {
				if b, rerr := os.ReadFile(filepath.Join(h.Dir, "flanneld.log")); rerr == nil {
					fmt.Fprintf(out, "--- %s flanneld.log (tail)\n%s\n", h.Name, tail(string(b), 15))
				}
			}
		}
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
		step("removed every namespace and process of the demo")
	}()
	step("lab %s: %d nodes on a fabric bridge (namespaces %s-*)", l.Prefix(), o.hosts, l.Prefix())

	if err := l.StartEtcd(ctx); err != nil {
		return err
	}
	netConfig := fmt.Sprintf(`{"Network":"10.244.0.0/16","Backend":{"Type":%q}}`, o.backend)
	var src leaseSource
	if o.kube {
		src, err = startKube(ctx, l, netConfig, step)
	} else {
		src, err = startEtcd(ctx, l, netConfig, step)
	}
	if err != nil {
		return err
	}
	for _, h := range l.Hosts() {
		if err := l.WaitFor(ctx, 60*time.Second, "subnet.env on "+h.Name, func() error {
			_, err := subnet.ReadEnvFile(h.SubnetFile())
			return err
		}); err != nil {
			return err
		}
	}
	// Every daemon knowing every lease before the first ping keeps the
	// matrix from racing the last node's announcement.
	if err := waitLeases(ctx, l, o.hosts); err != nil {
		return err
	}
	step("flanneld ready on every node, each knowing all %d leases", o.hosts)

	var pods []*lab.Pod
	for _, h := range l.Hosts() {
		for i := 1; i <= o.pods; i++ {
			p, err := l.AddPod(ctx, h, fmt.Sprintf("p%d", i))
			if err != nil {
				return fmt.Errorf("add pod on %s: %w", h.Name, err)
			}
			pods = append(pods, p)
		}
	}
	step("%d pods created through the flannel CNI plugin (bridge + host-local)", len(pods))

	if err := src.show(ctx, out); err != nil {
		return err
	}
	failed := pingMatrix(ctx, out, l, pods)
	if failed > 0 {
		return fmt.Errorf("%d of %d pings failed", failed, len(pods)*(len(pods)-1))
	}
	step("all %d pod pairs reach each other", len(pods)*(len(pods)-1))

	if o.keep {
		fmt.Fprintf(out, "\nThe cluster keeps running. Explore it:\n")
		h := l.Hosts()[0]
		fmt.Fprintf(out, "  ip netns exec %s ip -d link show flannel.1     # the vxlan device of %s\n", h.NS, h.Name)
		fmt.Fprintf(out, "  ip netns exec %s ip route; ip netns exec %s bridge fdb show dev flannel.1\n", h.NS, h.NS)
		fmt.Fprintf(out, "  ip netns exec %s ping %s                      # from pod %s to pod %s\n", pods[0].NS, pods[len(pods)-1].IP, pods[0].Name+"@"+pods[0].Host.Name, pods[len(pods)-1].Name+"@"+pods[len(pods)-1].Host.Name)
		fmt.Fprintf(out, "  cat %s/*/flanneld.log                            # daemon logs\n", l.Dir())
		for _, s := range src.hints {
			fmt.Fprintf(out, "  %s\n", s)
		}
		fmt.Fprintf(out, "Remove it with: make demo-down   (or bin/flannel-lab down --dir %s)\n", l.Dir())
	}
	return nil
}

// Every node needs its own wireguard key file: a real node keeps it in its
// own /run/flannel, the lab's hosts share one file system.
const wgKeyEnv = "WIREGUARD_KEY_FILE"

func wgKeyFile(h *lab.Host) string { return filepath.Join(h.Dir, "wgkey") }

// startEtcd writes the network config to etcd and starts flanneld in etcd
// mode on every host.
func startEtcd(ctx context.Context, l *lab.Lab, netConfig string, step func(string, ...any)) (leaseSource, error) {
	cli, err := l.Etcd(ctx)
	if err != nil {
		return leaseSource{}, err
	}
	if _, err := cli.Put(ctx, "/coreos.com/network/config", netConfig); err != nil {
		return leaseSource{}, fmt.Errorf("write network config: %w", err)
	}
	step("etcd at %s; /coreos.com/network/config = %s", l.EtcdEndpoint(), netConfig)
	for _, h := range l.Hosts() {
		if _, err := l.StartFlanneldEnv(h, []string{wgKeyEnv + "=" + wgKeyFile(h)}, "--ip-masq", "--healthz-port="+strconv.Itoa(healthzPort)); err != nil {
			return leaseSource{}, err
		}
	}
	return leaseSource{show: func(ctx context.Context, out io.Writer) error { return printLeases(ctx, out, cli) }}, nil
}

// waitLeases waits until every host's flanneld counts n leases, its own
// included (the flannel_leases gauge of its /metrics).
func waitLeases(ctx context.Context, l *lab.Lab, n int) error {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return l.DialFabric(ctx, addr) }}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	for _, h := range l.Hosts() {
		url := fmt.Sprintf("http://%s/metrics", net.JoinHostPort(h.IP.String(), strconv.Itoa(healthzPort)))
		err := l.WaitFor(ctx, 30*time.Second, fmt.Sprintf("%d leases known on %s", n, h.Name), func() error {
			got, err := gauge(ctx, c, url, "flannel_leases")
			if err != nil {
				return err
			}
			if got != float64(n) {
				return fmt.Errorf("flannel_leases is %v", got)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// gauge reads one unlabelled sample from a Prometheus text exposition.
func gauge(ctx context.Context, c *http.Client, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", url, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s sample", url, name)
}

func printLeases(ctx context.Context, out io.Writer, cli *clientv3.Client) error {
	resp, err := cli.Get(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("read leases: %w", err)
	}
	fmt.Fprintf(out, "\nLeases in etcd (/coreos.com/network/subnets/):\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SUBNET\tPUBLIC IP\tBACKEND\tVTEP MAC\tTTL")
	for _, kv := range resp.Kvs {
		key := strings.TrimPrefix(string(kv.Key), "/coreos.com/network/subnets/")
		v4, _, err := subnet.ParseKey(key)
		if err != nil {
			continue
		}
		a, err := subnet.DecodeAttrs(kv.Value)
		if err != nil {
			continue
		}
		mac := "-"
		if vx, err := subnet.DecodeVXLANData(a.BackendData); err == nil {
			mac = vx.VtepMAC()
		}
		ttl := "reservation"
		if kv.Lease != 0 {
			if t, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				ttl = (time.Duration(t.TTL) * time.Second).String()
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", v4, a.PublicIP, a.BackendType, mac, ttl)
	}
	tw.Flush()
	fmt.Fprintln(out)
	return nil
}

// pingMatrix pings every pod from every other pod (one echo each) and
// prints the matrix; it returns the number of failures.
func pingMatrix(ctx context.Context, out io.Writer, l *lab.Lab, pods []*lab.Pod) int {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Host.Name + "/" + p.Name
	}
	type result struct {
		i, j int
		ok   bool
	}
	results := make(chan result, len(pods)*len(pods))
	sem := make(chan struct{}, 8)
	for i := range pods {
		for j := range pods {
			if i == j {
				continue
			}
			go func(i, j int) {
				sem <- struct{}{}
				defer func() { <-sem }()
				err := l.Ping(ctx, pods[i].NS, pods[j].IP, 1)
				results <- result{i, j, err == nil}
			}(i, j)
		}
	}
	grid := make([][]string, len(pods))
	for i := range grid {
		grid[i] = make([]string, len(pods))
		grid[i][i] = "-"
	}
	failed := 0
	for n := 0; n < len(pods)*(len(pods)-1); n++ {
		r := <-results
		if r.ok {
			grid[r.i][r.j] = "ok"
		} else {
			grid[r.i][r.j] = "FAIL"
			failed++
		}
	}
	fmt.Fprintf(out, "Ping matrix (row pings column):\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  \t%s\n", strings.Join(names, "\t"))
	for i := range pods {
		fmt.Fprintf(tw, "  %s %s\t%s\n", names[i], pods[i].IP, strings.Join(grid[i], "\t"))
	}
	tw.Flush()
	fmt.Fprintln(out)
	return failed
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
