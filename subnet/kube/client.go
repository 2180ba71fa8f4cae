package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// api is everything we ask of the API server. It is exactly upstream's
// ClusterRole (spec 6.1), so existing clusters' RBAC stays valid: pods get;
// nodes list and watch (nodes get is granted but the Node watch makes it
// unnecessary); nodes/status patch, our only write.
type api interface {
	getPod(ctx context.Context, namespace, name string) (*Pod, error)
	// listNodes asks for one page of Nodes and gives each to each as it
	// is decoded, so a page is never held whole; it returns the page's
	// resourceVersion and continue token.
	listNodes(ctx context.Context, opts metav1.ListOptions, each func(*Node)) (metav1.ListMeta, error)
	// watchNodes opens a watch: err is the request's outcome, the events
	// are read from the stream it returns.
	watchNodes(ctx context.Context, opts metav1.ListOptions) (nodeEvents, error)
	patchNodeStatus(ctx context.Context, name string, patch []byte) error
	// server is the API server's URL, for logs.
	server() string
}

// nodeEvents is an open watch on Nodes, read by the caller's goroutine:
// no goroutine or channel stands between the connection and the caller.
type nodeEvents interface {
	// next returns the next event: its type (watch.Added, Modified,
	// Deleted or Bookmark) and Node. An ERROR event is returned as its
	// *apierrors.StatusError, the server ending the watch as io.EOF.
	next() (watch.EventType, *Node, error)
	close()
}

// watchIdle ends a watch that brought no event, bookmarks included, for
// this long: its connection may be dead without a reset.
const watchIdle = 3 * time.Minute

// requestTimeout bounds one GET or PATCH, so that a server that accepted
// the connection and went silent is retried instead of waited on.
const requestTimeout = 15 * time.Second

// restAPI is api over a REST client that knows only our three types
// (types.go). The generated typed client would do the same calls, but it
// links the scheme of every API group (about 22 MB of binary), and
// k8s.io/api/core/v1 alone about 4.5 MB.
type restAPI struct {
	c    rest.Interface
	host string
	// watch is c over HTTP/1.1, for the Node watch (watchNodes).
	watch rest.Interface
}

// coreV1Codecs know our types and the meta types, nothing else. Built on
// first use: etcd mode links this package but must not pay for it.
var coreV1Codecs = sync.OnceValue(func() serializer.CodecFactory {
	s := runtime.NewScheme()
	AddToScheme(s)
	return serializer.NewCodecFactory(s)
})

// newRESTAPI builds the client. Lists, watches and replies come as
// protobuf: every kubelet heartbeat of every Node is decoded once, and
// our protobuf decoder skips what it does not keep by its length, where
// JSON must be scanned to the end.
func newRESTAPI(cfg *rest.Config) (*restAPI, error) {
	c := rest.CopyConfig(cfg)
	gv := coreV1
	c.GroupVersion = &gv
	c.APIPath = "/api"
	c.NegotiatedSerializer = coreV1Codecs().WithoutConversion()
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client for %s: %w", c.Host, err)
	}
	w := rest.CopyConfig(c)
	w.TLSClientConfig.NextProtos = []string{"http/1.1"}
	wc, err := rest.RESTClientFor(w)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client for %s: %w", c.Host, err)
	}
	return &restAPI{c: rc, host: c.Host, watch: wc}, nil
}

func (r *restAPI) server() string { return r.host }

func (r *restAPI) getPod(ctx context.Context, namespace, name string) (*Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	p := &Pod{}
	err := r.c.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(p)
	return p, err
}

// listNodes reads the answer as it arrives (decodeNodeList): a page of
// 500 kubelet Nodes is several MB, of which we keep a few hundred bytes
// a Node.
func (r *restAPI) listNodes(ctx context.Context, opts metav1.ListOptions, each func(*Node)) (metav1.ListMeta, error) {
	body, err := r.c.Get().Resource("nodes").VersionedParams(&opts, metav1.ParameterCodec).Stream(ctx)
	if err != nil {
		return metav1.ListMeta{}, err
	}
	defer body.Close()
	meta, err := decodeNodeList(bufio.NewReaderSize(body, 32<<10), each)
	if err != nil {
		return meta, fmt.Errorf("list nodes: %w", err)
	}
	return meta, nil
}

// watchNodes opens the stream; the events are decoded by whoever reads
// them (watchStream), not by a goroutine of the client's.
//
// The watch has a connection of its own, over HTTP/1.1: the body is then
// read from the socket by the goroutine that decodes it. Over HTTP/2 the
// transport's read loop reads every frame and hands it over, and that
// hand-over (a wake-up of a second thread per event) cost more CPU than
// decoding and comparing the Node. HTTP/2 checks a silent connection
// with pings; HTTP/1.1 has no such thing, so a watch that brings nothing
// for watchIdle (the API server sends a bookmark about every minute) is
// ended and opened again.
//
// The watch keeps gzip, as lists do. Over HTTP/2 asking for none saved
// CPU (the profile had inflating at a tenth); over HTTP/1.1 it costs it:
// the API server's gzip stream keeps its dictionary across events, so a
// heartbeat, much like the last one, arrives as a few dozen bytes, and
// decrypting and reading its full size costs more than inflating it
// (docs/benchmarks.md).
func (r *restAPI) watchNodes(ctx context.Context, opts metav1.ListOptions) (nodeEvents, error) {
	opts.Watch = true
	ctx, cancel := context.WithCancel(ctx)
	body, err := r.watch.Get().Resource("nodes").VersionedParams(&opts, metav1.ParameterCodec).Stream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return newWatchStream(body, cancel, watchIdle), nil
}

func (r *restAPI) patchNodeStatus(ctx context.Context, name string, patch []byte) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return r.c.Patch(types.StrategicMergePatchType).Resource("nodes").Name(name).SubResource("status").Body(patch).Do(ctx).Error()
}

// restConfig is client-go's BuildConfigFromFlags (spec 1.3), except that
// with neither flag it reports why the in-cluster config failed instead of
// upstream's "no configuration has been provided, try setting
// KUBERNETES_MASTER".
func restConfig(kubeconfig, apiURL string) (*rest.Config, error) {
	if kubeconfig == "" && apiURL == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("neither --kubeconfig-file nor --kube-api-url is set, and the in-cluster config failed: %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags(apiURL, kubeconfig)
	if err != nil {
		if kubeconfig != "" {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return nil, fmt.Errorf("kube API URL %s: %w", apiURL, err)
	}
	return c, nil
}

// unreachable says whether err means the API server could not be asked
// (the connection failed, it timed out, or it answered that it cannot
// serve now) rather than that it refused the request.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return true // no answer from the server: dial, TLS, reset, timeout
	}
	code := st.Status().Code
	return code >= http.StatusInternalServerError || code == http.StatusTooManyRequests ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
}

// transient says whether retrying the request can succeed without anyone
// changing anything: outages, and conflicts with other writers.
func transient(err error) bool {
	return unreachable(err) || apierrors.IsConflict(err)
}
