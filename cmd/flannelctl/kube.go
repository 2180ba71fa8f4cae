package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flannelng/flannel/subnet/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// In kube mode (flanneld --kube-subnet-mgr) a node's lease is its Node:
// the subnets are spec.podCIDR(s), the rest are annotations under the
// prefix. `flannelctl leases --kubeconfig` lists them with the daemon's own
// reading (subnet/kube), so a row it calls unusable is one peers skip.

// nodeLister is the one call the command makes.
type nodeLister interface {
	List(ctx context.Context, opts metav1.ListOptions) (*kube.NodeList, error)
}

// nodeCodecs know subnet/kube's Node and NodeList (the fields flannel
// reads) and the meta types (Status for errors). Not client-go's typed
// core/v1 client: it links the scheme of every API group and needs some
// twenty more modules (OpenAPI, go-restful) for one LIST; this is the REST
// client it would use, with only these types.
var nodeCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	kube.AddToScheme(s)
	return serializer.NewCodecFactory(s)
}()

// restNodes lists Nodes over a REST client for /api/v1.
type restNodes struct{ c rest.Interface }

func (r restNodes) List(ctx context.Context, opts metav1.ListOptions) (*kube.NodeList, error) {
	l := &kube.NodeList{}
	err := r.c.Get().Resource("nodes").VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(l)
	return l, err
}

// nodePage is how many Nodes one request asks for: a large cluster's
// list comes in pages instead of one answer of several hundred MB.
const nodePage = 500

// maxNodePages bounds the paging loop (500 × 1000 Nodes is far beyond any
// cluster's size) against a server that keeps returning a continue token.
const maxNodePages = 1000

// kubeNodes returns the Node client for a kubeconfig file, with client-go's
// kubeconfig handling (clientcmd: contexts, TLS files, tokens, exec
// plugins), and the API server's URL.
func kubeNodes(kubeconfig string, timeout time.Duration) (nodeLister, string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.Timeout = timeout
	cfg.UserAgent = "flannelctl"
	// Deprecation warnings would go to stderr through klog, between the
	// table and the notes; the command prints what matters itself.
	cfg.WarningHandler = rest.NoWarnings{}
	gv := schema.GroupVersion{Version: "v1"}
	cfg.GroupVersion = &gv
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = nodeCodecs.WithoutConversion()
	// Protobuf when the server offers it: subnet/kube's decoder skips
	// what flannel does not read (images, conditions) without allocating.
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	c, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return restNodes{c}, cfg.Host, nil
}

// listNodes reads every Node, page by page.
func listNodes(ctx context.Context, nodes nodeLister, server string) ([]kube.Node, error) {
	var out []kube.Node
	opts := metav1.ListOptions{Limit: nodePage}
	for range maxNodePages {
		l, err := nodes.List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list Nodes at %s: %w", server, err)
		}
		out = append(out, l.Items...)
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
	return nil, fmt.Errorf("list Nodes at %s: still more after %d pages of %d", server, maxNodePages, nodePage)
}

// nodeView is one row of `flannelctl leases --kubeconfig`; its JSON form is
// the `-o json` output. Absent values are null, so every object has every
// key (VtepMACv6 and Error only when set, as in the etcd listing).
type nodeView struct {
	Node       string  `json:"Node"`
	Subnet     *string `json:"Subnet"`
	IPv6Subnet *string `json:"IPv6Subnet"`
	// Managed: the kube-subnet-manager annotation is exactly "true", so a
	// flanneld runs there and its peers take the node as a lease.
	Managed     bool    `json:"Managed"`
	PublicIP    *string `json:"PublicIP"`
	PublicIPv6  *string `json:"PublicIPv6"`
	BackendType string  `json:"BackendType"`
	VtepMAC     *string `json:"VtepMAC"`
	VtepMACv6   *string `json:"VtepMACv6,omitempty"`
	// Annotations are the Node's annotations under the prefix, as stored.
	Annotations map[string]string `json:"Annotations"`
	// Error says why peers skip the node (or one family of it); only for
	// managed Nodes.
	Error string `json:"Error,omitempty"`

	sub4, sub6 netip.Prefix
	partial    bool // Error concerns one family; peers use the other
}

// annp returns a pointer to the annotation's value, nil when absent or
// empty.
func annp(a map[string]string, key string) *string {
	if v := a[key]; v != "" {
		return strp(v)
	}
	return nil
}

// buildNodeViews turns Nodes into rows sorted by subnet (IPv4, then IPv6,
// then name); Nodes without podCIDRs come last.
func buildNodeViews(nodes []kube.Node, k kube.Keys) []nodeView {
	out := make([]nodeView, 0, len(nodes))
	for i := range nodes {
		out = append(out, nodeViewOf(&nodes[i], k))
	}
	slices.SortStableFunc(out, func(a, b nodeView) int {
		if c := comparePrefix(a.sub4, b.sub4); c != 0 {
			return c
		}
		if c := comparePrefix(a.sub6, b.sub6); c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	})
	return out
}

// nodeViewOf shows what the Node carries, and judges it with the daemon's
// own reading (kube.NodeLease), per family: a node peers cannot use at all
// gets the whole reason; a family that is published but unusable (a
// dual-stack node whose v6 data is broken) gets its own reason, since
// peers still use the other family. A family the node publishes nothing
// for is not an error: a cluster may run flannel on IPv4 only while its
// podCIDRs are dual stack.
func nodeViewOf(n *kube.Node, k kube.Keys) nodeView {
	a := n.Annotations
	v := nodeView{
		Node:        n.Name,
		Managed:     a[k.Managed] == "true",
		PublicIP:    annp(a, k.PublicIP),
		PublicIPv6:  annp(a, k.PublicIPv6),
		BackendType: a[k.BackendType],
		VtepMAC:     vtepMAC(json.RawMessage(a[k.BackendData])),
		VtepMACv6:   vtepMAC(json.RawMessage(a[k.BackendV6Data])),
		Annotations: map[string]string{},
	}
	for key, val := range a {
		if strings.HasPrefix(key, k.Prefix) {
			v.Annotations[key] = val
		}
	}
	a4, a6, cidrErr := kube.PodCIDRs(n)
	if cidrErr == nil {
		v.sub4, v.sub6 = a4, a6
		v.Subnet, v.IPv6Subnet = prefixp(a4), prefixp(a6)
	}
	if !v.Managed {
		return v
	}
	if cidrErr != nil {
		v.Error = cidrErr.Error()
		return v
	}
	// The families judged: those with a podCIDR that the node publishes
	// keys for; with none published, every family with a podCIDR.
	pub4 := a[k.PublicIP] != "" || a[k.BackendData] != ""
	pub6 := a[k.PublicIPv6] != "" || a[k.BackendV6Data] != ""
	v4, v6 := a4.IsValid() && pub4, a6.IsValid() && pub6
	if !v4 && !v6 {
		v4, v6 = a4.IsValid(), a6.IsValid()
	}
	l, err := kube.NodeLease(n, k, v4, v6)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	// NodeLease leaves an unusable family out without saying why; asking
	// for that family alone gives the reason.
	var problems []string
	if v4 && v6 && !l.Subnet.IsValid() {
		if _, err := kube.NodeLease(n, k, true, false); err != nil {
			problems = append(problems, "IPv4: "+err.Error())
		}
	}
	if v4 && v6 && !l.IPv6Subnet.IsValid() {
		if _, err := kube.NodeLease(n, k, false, true); err != nil {
			problems = append(problems, "IPv6: "+err.Error())
		}
	}
	if len(problems) > 0 {
		v.Error, v.partial = strings.Join(problems, "; "), true
	}
	return v
}

// renderNodeTable writes the Node lease table. As in the etcd table, the
// PUBLIC IPV6 and VTEP MAC V6 columns appear only when some Node has a
// value for them. Problems are listed under the table.
//
// wide adds the Node's flannel annotations, as stored, in one column.
func renderNodeTable(w io.Writer, views []nodeView, wide bool) error {
	var v6ip, v6mac bool
	for _, v := range views {
		v6ip = v6ip || v.PublicIPv6 != nil
		v6mac = v6mac || v.VtepMACv6 != nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols []string) {
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	head := []string{"NODE", "SUBNET", "IPV6 SUBNET", "PUBLIC IP"}
	if v6ip {
		head = append(head, "PUBLIC IPV6")
	}
	head = append(head, "BACKEND", "VTEP MAC")
	if v6mac {
		head = append(head, "VTEP MAC V6")
	}
	head = append(head, "MANAGED")
	if wide {
		head = append(head, "ANNOTATIONS")
	}
	row(head)
	for _, v := range views {
		cols := []string{v.Node, orDash(v.Subnet), orDash(v.IPv6Subnet), orDash(v.PublicIP)}
		if v6ip {
			cols = append(cols, orDash(v.PublicIPv6))
		}
		backend := v.BackendType
		if backend == "" {
			backend = "-"
		}
		cols = append(cols, backend, orDash(v.VtepMAC))
		if v6mac {
			cols = append(cols, orDash(v.VtepMACv6))
		}
		managed := "no"
		if v.Managed {
			managed = "yes"
		}
		cols = append(cols, managed)
		if wide {
			cols = append(cols, annotationsText(v.Annotations))
		}
		row(cols)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range views {
		if v.Error == "" {
			continue
		}
		what := "flanneld on the other nodes ignores this node"
		if v.partial {
			what = "flanneld on the other nodes uses only the other family"
		}
		if _, err := fmt.Fprintf(w, "unusable lease on Node %s (%s): %s\n", v.Node, what, v.Error); err != nil {
			return err
		}
	}
	return nil
}

// annotationsText is the ANNOTATIONS column: name=value pairs sorted by
// name, "-" for none.
func annotationsText(a map[string]string) string {
	if len(a) == 0 {
		return "-"
	}
	names := make([]string, 0, len(a))
	for k := range a {
		names = append(names, k)
	}
	slices.Sort(names)
	for i, k := range names {
		names[i] = k + "=" + a[k]
	}
	return strings.Join(names, ",")
}

// kubeKeys checks --kube-annotation-prefix as flanneld does (empty means
// flanneld's default); a bad one is a usage error.
func kubeKeys(prefix string) (kube.Keys, error) {
	if prefix == "" {
		prefix = kube.DefaultPrefix
	}
	k, err := kube.KeysFor(prefix)
	if err != nil {
		return kube.Keys{}, usageError{fmt.Sprintf("invalid --kube-annotation-prefix %q: %v", prefix, err)}
	}
	return k, nil
}

// cmdKubeLeases is `leases --kubeconfig`: the Nodes instead of etcd, whose
// flags play no part.
func cmdKubeLeases(ctx context.Context, a *app, o *options, c *cmdFlags) error {
	k, err := kubeKeys(c.kubePrefix)
	if err != nil {
		return err
	}
	nodes, server, err := kubeNodes(c.kubeconfig, o.Timeout)
	if err != nil {
		return err
	}
	ns, err := listNodes(ctx, nodes, server)
	if err != nil {
		return err
	}
	views := buildNodeViews(ns, k)
	if !isTable(c.output) {
		return renderList(a.stdout, c.output, views)
	}
	return renderNodeTable(a.stdout, views, c.output == "wide")
}
