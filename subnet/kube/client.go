package kube

import (
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
// nodes list and watch (nodes get is granted but the informer makes it
// unnecessary); nodes/status patch, our only write.
type api interface {
	getPod(ctx context.Context, namespace, name string) (*Pod, error)
	listNodes(ctx context.Context, opts metav1.ListOptions) (*NodeList, error)
	watchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	patchNodeStatus(ctx context.Context, name string, patch []byte) error
	// server is the API server's URL, for logs.
	server() string
}

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
	return &restAPI{c: rc, host: c.Host}, nil
}

func (r *restAPI) server() string { return r.host }

func (r *restAPI) getPod(ctx context.Context, namespace, name string) (*Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	p := &Pod{}
	err := r.c.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(p)
	return p, err
}

func (r *restAPI) listNodes(ctx context.Context, opts metav1.ListOptions) (*NodeList, error) {
	l := &NodeList{}
	err := r.c.Get().Resource("nodes").VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(l)
	return l, err
}

func (r *restAPI) watchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.c.Get().Resource("nodes").VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
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
