package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// annotationPrefix is flanneld's default --kube-annotation-prefix, as the
// keys appear on a Node.
const annotationPrefix = "flannel.alpha.coreos.com/"

// kubeBinaries finds kube-apiserver and kubectl in binDir, where
// `make kube-bins` puts them next to our programs, else where the lab's
// tests find them (lab.FindKubeBinaries: $LAB_BIN_DIR or bin/ of the module).
func kubeBinaries(binDir string) (apiserver, kubectl string, err error) {
	apiserver, kubectl = filepath.Join(binDir, "kube-apiserver"), filepath.Join(binDir, "kubectl")
	if isExecutable(apiserver) && isExecutable(kubectl) {
		return apiserver, kubectl, nil
	}
	apiserver, kubectl, err = lab.FindKubeBinaries()
	if err != nil {
		return "", "", fmt.Errorf("--kube needs kube-apiserver and kubectl: not in %s; %w", binDir, err)
	}
	return apiserver, kubectl, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// podCIDR is host i's (1-based) podCIDR, as node IPAM would assign it.
func podCIDR(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }

// startKube runs a kube-apiserver on the lab's etcd, creates one Node per
// host with its podCIDR (and no annotations, as a fresh Node may have), and
// starts flanneld in kube mode on every host with the ServiceAccount and
// RBAC of dist/kube-flannel.yml.
func startKube(ctx context.Context, l *lab.Lab, netConfig string, step func(string, ...any)) (leaseSource, error) {
	if err := l.StartKubeAPIServer(ctx); err != nil {
		return leaseSource{}, err
	}
	step("kube-apiserver at %s, storing in the lab's etcd at %s", l.KubeAPIServerURL(), l.EtcdEndpoint())
	k, err := l.Kube(ctx)
	if err != nil {
		return leaseSource{}, err
	}
	var names, cidrs []string
	for i, h := range l.Hosts() {
		if err := k.CreateNode(ctx, h.Name, []string{podCIDR(i + 1)}, nil); err != nil {
			return leaseSource{}, fmt.Errorf("create node %s: %w", h.Name, err)
		}
		names, cidrs = append(names, h.Name), append(cidrs, podCIDR(i+1))
	}
	step("Nodes %s created with spec.podCIDR %s (as node IPAM sets them)", strings.Join(names, ", "), strings.Join(cidrs, ", "))
	for _, h := range l.Hosts() {
		if _, err := l.StartFlanneldKube(h, map[string]string{wgKeyEnv: wgKeyFile(h)}, netConfig, "--ip-masq", "--healthz-port="+strconv.Itoa(healthzPort)); err != nil {
			return leaseSource{}, err
		}
	}
	step("flanneld --kube-subnet-mgr on every node as ServiceAccount kube-flannel/flannel; net-conf.json = %s", netConfig)
	src := leaseSource{show: func(ctx context.Context, out io.Writer) error { return printNodes(ctx, out, l, k) }}
	if ak, err := l.KubeconfigForAdmin(); err == nil {
		src.hints = append(src.hints, fmt.Sprintf("ip netns exec %s %s --kubeconfig %s get node %s -o yaml   # a Node and its annotations",
			l.FabricNS(), l.Binaries().Kubectl, ak.Path, l.Hosts()[0].Name))
	}
	return src, nil
}

// printNodes shows what kube mode is about: each Node's podCIDR and the
// subnet.env flanneld made of it, then the annotations and the condition
// flanneld wrote on each Node.
func printNodes(ctx context.Context, out io.Writer, l *lab.Lab, k *lab.KubeClient) error {
	// A daemon sets the condition just after it is ready, so it may be a
	// moment behind subnet.env.
	var nodes []*lab.KubeNode
	err := l.WaitFor(ctx, 30*time.Second, "NetworkUnavailable on every Node", func() error {
		nodes = nodes[:0]
		for _, h := range l.Hosts() {
			n, err := k.GetNode(ctx, h.Name)
			if err != nil {
				return fmt.Errorf("read node %s: %w", h.Name, err)
			}
			if _, ok := n.Condition("NetworkUnavailable"); !ok {
				return fmt.Errorf("node %s has no NetworkUnavailable condition yet", h.Name)
			}
			nodes = append(nodes, n)
		}
		return nil
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\nspec.podCIDR (set by node IPAM) -> subnet.env (written by flanneld):\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tSPEC.PODCIDR\tFLANNEL_SUBNET\tFLANNEL_MTU")
	var errs []error
	for i, h := range l.Hosts() {
		env, err := lab.ReadSubnetEnv(h.SubnetFile())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s/%d\t%d\n", h.Name, nodes[i].PodCIDR, env.Gateway, env.Subnet.Bits(), env.MTU)
	}
	tw.Flush()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nNode annotations and condition written by flanneld (kubectl get node NAME -o yaml):\n")
	for _, n := range nodes {
		fmt.Fprintf(out, "  %s:\n", n.Name)
		keys := make([]string, 0, len(n.Annotations))
		for key := range n.Annotations {
			if strings.HasPrefix(key, annotationPrefix) {
				keys = append(keys, key)
			}
		}
		sort.Strings(keys)
		for _, key := range keys {
			fmt.Fprintf(out, "    %s = %s\n", key, n.Annotations[key])
		}
		c, _ := n.Condition("NetworkUnavailable")
		fmt.Fprintf(out, "    condition NetworkUnavailable = %s (%s: %s)\n", c.Status, c.Reason, c.Message)
	}
	fmt.Fprintln(out)
	return nil
}
