//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flannelng/flannel/dist"
	"sigs.k8s.io/yaml"
)

// The Kubernetes test rig: a real kube-apiserver (built from
// k8s.io/kubernetes by scripts/kube-bins.sh) in the fabric namespace, on the
// lab's etcd, with no kubelet, scheduler or controller-manager. Tests create
// Node objects as node IPAM would and run flanneld in kube mode against it,
// with exactly the RBAC of dist/kube-flannel.yml.

const (
	kubeAPIPort = 6443
	// kubeReadyTimeout bounds StartKubeAPIServer's wait for /readyz; a
	// start takes 4 to 6 s on two cores, far more on busy ones.
	kubeReadyTimeout = 90 * time.Second
	// kubeStopGrace bounds a graceful kube-apiserver shutdown before
	// SIGKILL.
	kubeStopGrace = 20 * time.Second
	// kubeRequestTimeout bounds one request of a KubeClient.
	kubeRequestTimeout = 30 * time.Second

	kubeServiceCIDR = "10.96.0.0/16"
	kubeIssuer      = "https://kubernetes.default.svc.cluster.local"

	// The daemon's identity in dist/kube-flannel.yml.
	flannelNamespace      = "kube-flannel"
	flannelServiceAccount = "flannel"
	flannelTokenTTL       = 365 * 24 * time.Hour

	kubeAdminUser = "admin"
	// kubeFieldManager owns the objects the lab applies (server-side apply).
	kubeFieldManager = "flannel-lab"
)

// kubeDisabledAdmission turns off the default admission plugins the rig has
// no use for, and ServiceAccount, which would reject Pods because nothing
// creates a namespace's "default" ServiceAccount without a
// controller-manager. NamespaceLifecycle, TaintNodesByCondition, Priority,
// PodSecurity and the like stay: they shape the objects tests look at.
var kubeDisabledAdmission = []string{
	"ServiceAccount",
	"DefaultStorageClass",
	"StorageObjectInUseProtection",
	"PersistentVolumeClaimResize",
	"DefaultIngressClass",
	"RuntimeClass",
	"CertificateApproval",
	"CertificateSigning",
	"CertificateSubjectRestriction",
	"ClusterTrustBundleAttest",
	"MutatingAdmissionWebhook",
	"ValidatingAdmissionWebhook",
	"ValidatingAdmissionPolicy",
	"ResourceQuota",
}

// kubeAuditPolicy records every request on Nodes (and their status) and
// Pods at the Metadata level: who did which verb on which object, and the
// answer. That is how a test proves a daemon writes only through
// PATCH nodes/<self>/status.
const kubeAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
- RequestReceived
rules:
- level: Metadata
  resources:
  - group: ""
    resources: ["nodes", "nodes/status", "pods"]
- level: None
`

// kubeState is the Lab's part for the rig, guarded by Lab.mu.
type kubeState struct {
	apiserver  *Process
	adminToken string
	transports []*http.Transport // of the KubeClients handed out; Close drops their connections

	flannelMu sync.Mutex  // serialises KubeconfigForFlannel
	flannel   *Kubeconfig // its result, reused: the token outlives API server restarts
}

// KubeAPIServerURL is the URL daemons use to reach the lab's kube-apiserver,
// on the fabric bridge address.
func (l *Lab) KubeAPIServerURL() string {
	return "https://" + netip.AddrPortFrom(fabric4, kubeAPIPort).String()
}

func (l *Lab) kubeDir() string { return filepath.Join(l.dir, "kube") }

// KubeAPIServerLog is the path of the kube-apiserver's log.
func (l *Lab) KubeAPIServerLog() string { return filepath.Join(l.dir, "kube-apiserver.log") }

// kubeAPIServerArgs is the kube-apiserver command line, without the program.
// dir holds the rig's files (kubeFiles).
func kubeAPIServerArgs(dir, etcdURL string) []string {
	addr := fabric4.String()
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + addr,
		"--advertise-address=" + addr,
		"--secure-port=" + strconv.Itoa(kubeAPIPort),
		// Self-signed serving certificate, generated on the first start
		// and reused afterwards; clients skip verification.
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-issuer=" + kubeIssuer,
		"--service-cluster-ip-range=" + kubeServiceCIDR,
		// No kubelet or kube-proxy reads the kubernetes Service's
		// endpoints; "none" also spares a lease loop.
		"--endpoint-reconciler-type=none",
		// Fewer start-up hooks and no request queueing: one client
		// set, no overload to manage.
		"--enable-priority-and-fairness=false",
		"--disable-admission-plugins=" + strings.Join(kubeDisabledAdmission, ","),
		"--allow-privileged=true",
		"--profiling=false",
		"--audit-policy-file=" + filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-mode=blocking",
	}
}

// kubeFiles writes what the kube-apiserver needs into dir, once: the
// service-account key pair, the token file with the admin token, and the
// audit policy. It returns the admin token. Later calls (a restart) reuse
// the files, so tokens stay valid.
func kubeFiles(dir string) (adminToken string, err error) {
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o700); err != nil {
		return "", err
	}
	keyPath, pubPath := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", fmt.Errorf("service-account key: %w", err)
		}
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return "", fmt.Errorf("service-account key: %w", err)
		}
		if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
			return "", err
		}
		// The private key last: its presence means the pair is complete.
		priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		if err := writeFileAtomic(keyPath, priv, 0o600); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}

	tokens := filepath.Join(dir, "tokens.csv")
	b, err := os.ReadFile(tokens)
	switch {
	case err == nil:
		adminToken, _, _ = strings.Cut(string(b), ",")
		if adminToken == "" {
			return "", fmt.Errorf("%s: no admin token", tokens)
		}
	case errors.Is(err, os.ErrNotExist):
		var r [16]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", err
		}
		adminToken = hex.EncodeToString(r[:])
		if err := writeFileAtomic(tokens, tokenFileLine(adminToken, kubeAdminUser, []string{"system:masters"}), 0o600); err != nil {
			return "", err
		}
	default:
		return "", err
	}

	if err := os.WriteFile(filepath.Join(dir, "audit-policy.yaml"), []byte(kubeAuditPolicy), 0o644); err != nil {
		return "", err
	}
	return adminToken, nil
}

// tokenFileLine is one line of a --token-auth-file: token, user name, uid
// and a quoted list of groups.
func tokenFileLine(token, user string, groups []string) []byte {
	return fmt.Appendf(nil, "%s,%s,%s,%q\n", token, user, user, strings.Join(groups, ","))
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// StartKubeAPIServer runs Binaries.KubeAPIServer in the fabric namespace,
// listening on KubeAPIServerURL, with the lab's etcd (StartEtcd first) as its
// storage, and waits at most 90 s for /readyz. Authentication: an admin
// token (group system:masters, see Kube) and service-account tokens;
// authorization: RBAC. Its log is KubeAPIServerLog(); its files (keys,
// tokens, serving certificate, audit log) live in Dir/kube. Its objects live
// in etcd, so a StopKubeAPIServer/StartKubeAPIServer pair is an outage, not a
// new cluster.
func (l *Lab) StartKubeAPIServer(ctx context.Context) error {
	if l.bin.KubeAPIServer == "" {
		return errors.New("start kube-apiserver: Options.Binaries.KubeAPIServer is not set (see RequireKubeBinaries)")
	}
	l.mu.Lock()
	if p := l.kube.apiserver; p != nil && !p.Exited() {
		l.mu.Unlock()
		return fmt.Errorf("start kube-apiserver: already running as pid %d", p.Pid)
	}
	etcd, etcdTLS := l.etcd, l.etcdTLS
	l.mu.Unlock()
	if etcd == nil || etcd.Exited() {
		return errors.New("start kube-apiserver: the lab's etcd is not running (call StartEtcd first)")
	}
	if etcdTLS {
		return errors.New("start kube-apiserver: the lab's etcd runs with TLS; the rig supports plain http only")
	}
	token, err := kubeFiles(l.kubeDir())
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	argv := append([]string{l.bin.KubeAPIServer}, kubeAPIServerArgs(l.kubeDir(), l.EtcdEndpoint())...)
	started := time.Now()
	p, err := l.StartProcess(l.fabricNS, l.KubeAPIServerLog(), nil, argv...)
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	l.mu.Lock()
	l.kube.apiserver = p
	l.kube.adminToken = token
	l.mu.Unlock()

	c, err := l.newKubeClient(token)
	if err != nil {
		_, _ = p.Stop(kubeStopGrace)
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	defer c.closeIdle()
	ctx, cancel := context.WithTimeout(ctx, kubeReadyTimeout)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		if p.Exited() {
			code, _ := p.Wait(0)
			return fmt.Errorf("kube-apiserver exited with code %d before it was ready:\n%s", code, tail(p.Log(), 30))
		}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		// ?verbose lists the checks that still fail, for the error below.
		_, last = c.Do(rctx, http.MethodGet, "/readyz?verbose", "", nil)
		rcancel()
		if last == nil {
			l.logf("lab %s: kube-apiserver ready at %s in %s (pid %d)", l.prefix, l.KubeAPIServerURL(), time.Since(started).Round(time.Millisecond), p.Pid)
			return nil
		}
		select {
		case <-ctx.Done():
			_, _ = p.Stop(kubeStopGrace)
			return fmt.Errorf("kube-apiserver not ready after %s: %w (last /readyz: %v):\n%s",
				time.Since(started).Round(time.Second), ctx.Err(), last, tail(p.Log(), 30))
		case <-t.C:
		}
	}
}

// StopKubeAPIServer stops the lab's kube-apiserver (SIGTERM, then SIGKILL
// after a bound). Its objects stay in etcd for the next StartKubeAPIServer.
// Stopping one that is not running is not an error.
func (l *Lab) StopKubeAPIServer() error {
	l.mu.Lock()
	p := l.kube.apiserver
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	if _, err := p.Stop(kubeStopGrace); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	l.closeKubeConns()
	return nil
}

// KubeAPIServer returns the running (or last) kube-apiserver process, or nil
// if none was started.
func (l *Lab) KubeAPIServer() *Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kube.apiserver
}

// closeKubeConns drops the idle connections of every KubeClient handed out.
func (l *Lab) closeKubeConns() {
	l.mu.Lock()
	trs := append([]*http.Transport(nil), l.kube.transports...)
	l.mu.Unlock()
	for _, tr := range trs {
		tr.CloseIdleConnections()
	}
}

// Kube returns a client of the lab's kube-apiserver, as the admin (group
// system:masters), usable from the test process: it opens its connections
// inside the fabric namespace (DialFabric) and skips verifying the
// self-signed certificate. StartKubeAPIServer must have run (the client
// keeps working across restarts). ctx only lets a cancelled caller bail out.
func (l *Lab) Kube(ctx context.Context) (*KubeClient, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	token := l.kube.adminToken
	l.mu.Unlock()
	if token == "" {
		return nil, errors.New("kube client: the kube-apiserver was never started (StartKubeAPIServer)")
	}
	return l.newKubeClient(token)
}

func (l *Lab) newKubeClient(token string) (*KubeClient, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return l.DialFabric(ctx, addr)
		},
		// The rig's serving certificate is self-signed, as in
		// kubeconfigs with insecure-skip-tls-verify.
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab is closed")
	}
	l.kube.transports = append(l.kube.transports, tr)
	return &KubeClient{
		server: l.KubeAPIServerURL(),
		token:  token,
		http:   &http.Client{Transport: tr, Timeout: kubeRequestTimeout},
	}, nil
}

// KubeClient is a small REST client of the lab's kube-apiserver: JSON over
// net/http, one bearer token. It is safe for concurrent use.
type KubeClient struct {
	server string
	token  string
	http   *http.Client
}

// WithToken returns a client that authenticates with token instead (for
// example a Kubeconfig's), sharing c's connections.
func (c *KubeClient) WithToken(token string) *KubeClient {
	return &KubeClient{server: c.server, token: token, http: c.http}
}

// Server is the API server's URL.
func (c *KubeClient) Server() string { return c.server }

func (c *KubeClient) closeIdle() { c.http.CloseIdleConnections() }

// KubeAPIError is an answer of the API server other than 2xx.
type KubeAPIError struct {
	Method, Path string
	Code         int    // HTTP status
	Reason       string // the Status object's reason: NotFound, Forbidden, AlreadyExists, Invalid, ...
	Message      string
}

func (e *KubeAPIError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Code, e.Message)
	}
	return fmt.Sprintf("%s %s: HTTP %d %s: %s", e.Method, e.Path, e.Code, e.Reason, e.Message)
}

// KubeStatusCode returns the HTTP status of a *KubeAPIError in err's chain,
// or 0 if there is none (a transport error, say).
func KubeStatusCode(err error) int {
	var e *KubeAPIError
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// Do sends one request: path is the URL path and query ("/api/v1/nodes"),
// contentType is set when body is not nil. It returns the response body;
// an answer other than 2xx is a *KubeAPIError.
func (c *KubeClient) Do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return b, kubeAPIError(method, path, resp.StatusCode, b)
	}
	return b, nil
}

func kubeAPIError(method, path string, code int, body []byte) *KubeAPIError {
	e := &KubeAPIError{Method: method, Path: path, Code: code}
	var st struct {
		Kind    string `json:"kind"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		e.Reason, e.Message = st.Reason, st.Message
	} else {
		e.Message = strings.TrimSpace(string(body))
	}
	return e
}

// KubeNode is what tests read of a Node.
type KubeNode struct {
	Name            string
	ResourceVersion string
	Annotations     map[string]string // nil when the Node has none
	Labels          map[string]string
	PodCIDR         string
	PodCIDRs        []string
	Taints          []KubeTaint
	Conditions      []KubeNodeCondition
}

type KubeTaint struct{ Key, Value, Effect string }

type KubeNodeCondition struct{ Type, Status, Reason, Message string }

// Condition returns the condition of type typ, if the Node has it.
func (n *KubeNode) Condition(typ string) (KubeNodeCondition, bool) {
	for _, c := range n.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return KubeNodeCondition{}, false
}

// nodeJSON is the API's Node, reduced to the fields of KubeNode.
type nodeJSON struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Metadata   struct {
		Name            string            `json:"name"`
		ResourceVersion string            `json:"resourceVersion,omitempty"`
		Annotations     map[string]string `json:"annotations,omitempty"`
		Labels          map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR  string   `json:"podCIDR,omitempty"`
		PodCIDRs []string `json:"podCIDRs,omitempty"`
		Taints   []struct {
			Key    string `json:"key"`
			Value  string `json:"value,omitempty"`
			Effect string `json:"effect"`
		} `json:"taints,omitempty"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason,omitempty"`
			Message string `json:"message,omitempty"`
		} `json:"conditions,omitempty"`
	} `json:"status"`
}

func (n *nodeJSON) node() KubeNode {
	out := KubeNode{
		Name:            n.Metadata.Name,
		ResourceVersion: n.Metadata.ResourceVersion,
		Annotations:     n.Metadata.Annotations,
		Labels:          n.Metadata.Labels,
		PodCIDR:         n.Spec.PodCIDR,
		PodCIDRs:        n.Spec.PodCIDRs,
	}
	for _, t := range n.Spec.Taints {
		out.Taints = append(out.Taints, KubeTaint{Key: t.Key, Value: t.Value, Effect: t.Effect})
	}
	for _, c := range n.Status.Conditions {
		out.Conditions = append(out.Conditions, KubeNodeCondition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message})
	}
	return out
}

// newNodeJSON is the body that creates a Node the way node IPAM leaves it:
// spec.podCIDR is podCIDRs[0] and spec.podCIDRs all of them (none: no
// podCIDR yet). nil annotations give a Node with no annotations at all.
func newNodeJSON(name string, podCIDRs []string, annotations map[string]string) ([]byte, error) {
	var n nodeJSON
	n.APIVersion, n.Kind = "v1", "Node"
	n.Metadata.Name = name
	n.Metadata.Annotations = annotations
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDRs[0], podCIDRs
	}
	return json.Marshal(&n)
}

// CreateNode creates a Node with the given podCIDRs (podCIDR = podCIDRs[0],
// as node IPAM sets them; v4 first in dual stack) and annotations (nil: none
// at all, which upstream flanneld cannot handle).
func (c *KubeClient) CreateNode(ctx context.Context, name string, podCIDRs []string, annotations map[string]string) error {
	body, err := newNodeJSON(name, podCIDRs, annotations)
	if err != nil {
		return err
	}
	_, err = c.Do(ctx, http.MethodPost, "/api/v1/nodes", "application/json", body)
	return err
}

// GetNode reads a Node.
func (c *KubeClient) GetNode(ctx context.Context, name string) (*KubeNode, error) {
	b, err := c.Do(ctx, http.MethodGet, "/api/v1/nodes/"+name, "", nil)
	if err != nil {
		return nil, err
	}
	var n nodeJSON
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	node := n.node()
	return &node, nil
}

// ListNodes reads all Nodes, ordered by name.
func (c *KubeClient) ListNodes(ctx context.Context) ([]KubeNode, error) {
	b, err := c.Do(ctx, http.MethodGet, "/api/v1/nodes", "", nil)
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []nodeJSON `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("node list: %w", err)
	}
	nodes := make([]KubeNode, 0, len(list.Items))
	for i := range list.Items {
		nodes = append(nodes, list.Items[i].node())
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes, nil
}

// DeleteNode deletes a Node at once (no kubelet holds finalizers). A Node
// that does not exist is a *KubeAPIError with code 404.
func (c *KubeClient) DeleteNode(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/api/v1/nodes/"+name, "", nil)
	return err
}

// SetPodCIDR gives a Node its podCIDRs later, as node IPAM does (a merge
// patch of spec.podCIDR and spec.podCIDRs). The API server allows it only
// while the Node has none.
func (c *KubeClient) SetPodCIDR(ctx context.Context, name string, podCIDRs []string) error {
	if len(podCIDRs) == 0 {
		return errors.New("set podCIDR: no podCIDRs")
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"podCIDR": podCIDRs[0], "podCIDRs": podCIDRs}})
	if err != nil {
		return err
	}
	_, err = c.Do(ctx, http.MethodPatch, "/api/v1/nodes/"+name, "application/merge-patch+json", patch)
	return err
}

// Kubeconfig is a kubeconfig file the lab wrote for one identity.
type Kubeconfig struct {
	Path   string // the file: --kubeconfig-file for flanneld, --kubeconfig for kubectl
	Server string // KubeAPIServerURL
	User   string // the identity's user name
	Token  string // its bearer token
}

// renderKubeconfig is a kubeconfig with one cluster (TLS verification off:
// the rig's certificate is self-signed), one user with a token, and a
// current context joining them.
func renderKubeconfig(server, user, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %q
    insecure-skip-tls-verify: true
users:
- name: %q
  user:
    token: %q
contexts:
- name: lab
  context:
    cluster: lab
    user: %q
current-context: lab
`, server, user, token, user)
}

// KubeconfigForAdmin writes Dir/kube/admin.kubeconfig, the admin's (group
// system:masters), for kubectl. StartKubeAPIServer must have run.
func (l *Lab) KubeconfigForAdmin() (Kubeconfig, error) {
	l.mu.Lock()
	token := l.kube.adminToken
	l.mu.Unlock()
	if token == "" {
		return Kubeconfig{}, errors.New("admin kubeconfig: the kube-apiserver was never started (StartKubeAPIServer)")
	}
	k := Kubeconfig{Path: filepath.Join(l.kubeDir(), "admin.kubeconfig"), Server: l.KubeAPIServerURL(), User: kubeAdminUser, Token: token}
	if err := writeFileAtomic(k.Path, renderKubeconfig(k.Server, k.User, k.Token), 0o600); err != nil {
		return Kubeconfig{}, fmt.Errorf("admin kubeconfig: %w", err)
	}
	return k, nil
}

// KubeconfigForFlannel gives flanneld the identity users give it: it applies
// (server-side apply, so again and again) the Namespace kube-flannel, the
// ServiceAccount kube-flannel/flannel, the ClusterRole flannel and the
// ClusterRoleBinding flannel exactly as dist/kube-flannel.yml has them,
// requests a token for the ServiceAccount (TokenRequest, valid for a year)
// and writes Dir/kube/flannel.kubeconfig with it. A daemon that needs a verb
// the manifest does not grant fails as it would in a real cluster. The
// result is reused by later calls: the objects and the token survive
// API server restarts.
func (l *Lab) KubeconfigForFlannel(ctx context.Context) (Kubeconfig, error) {
	l.kube.flannelMu.Lock()
	defer l.kube.flannelMu.Unlock()
	if k := l.kube.flannel; k != nil {
		return *k, nil
	}
	c, err := l.Kube(ctx)
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("flannel kubeconfig: %w", err)
	}
	defer c.closeIdle()
	objs, err := flannelRBACObjects(dist.KubeFlannelYAML)
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("flannel kubeconfig: dist/kube-flannel.yml: %w", err)
	}
	for _, o := range objs {
		q := "?fieldManager=" + kubeFieldManager + "&force=true"
		if _, err := c.Do(ctx, http.MethodPatch, o.path+q, "application/apply-patch+yaml", o.body); err != nil {
			return Kubeconfig{}, fmt.Errorf("flannel kubeconfig: apply %s %s: %w", o.kind, o.name, err)
		}
	}
	token, err := c.serviceAccountToken(ctx, flannelNamespace, flannelServiceAccount, flannelTokenTTL)
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("flannel kubeconfig: %w", err)
	}
	k := Kubeconfig{
		Path:   filepath.Join(l.kubeDir(), "flannel.kubeconfig"),
		Server: l.KubeAPIServerURL(),
		User:   "system:serviceaccount:" + flannelNamespace + ":" + flannelServiceAccount,
		Token:  token,
	}
	if err := writeFileAtomic(k.Path, renderKubeconfig(k.Server, k.User, k.Token), 0o600); err != nil {
		return Kubeconfig{}, fmt.Errorf("flannel kubeconfig: %w", err)
	}
	l.kube.flannel = &k
	return k, nil
}

// serviceAccountToken asks for a token of a ServiceAccount (TokenRequest).
func (c *KubeClient) serviceAccountToken(ctx context.Context, ns, sa string, ttl time.Duration) (string, error) {
	req, err := json.Marshal(map[string]any{
		"apiVersion": "authentication.k8s.io/v1",
		"kind":       "TokenRequest",
		"spec":       map[string]any{"expirationSeconds": int64(ttl / time.Second)},
	})
	if err != nil {
		return "", err
	}
	path := "/api/v1/namespaces/" + ns + "/serviceaccounts/" + sa + "/token"
	b, err := c.Do(ctx, http.MethodPost, path, "application/json", req)
	if err != nil {
		return "", fmt.Errorf("token of %s/%s: %w", ns, sa, err)
	}
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &tr); err != nil || tr.Status.Token == "" {
		return "", fmt.Errorf("token of %s/%s: no token in %.200s (%v)", ns, sa, b, err)
	}
	return tr.Status.Token, nil
}

// kubeObject is one object of a manifest, as JSON, with its REST path.
type kubeObject struct {
	kind, name, namespace string
	path                  string
	body                  []byte
}

// flannelRBACObjects picks the daemon's identity out of a manifest: the
// Namespace kube-flannel, the ServiceAccount kube-flannel/flannel, the
// ClusterRole flannel and the ClusterRoleBinding flannel, in an order that
// applies (the namespace first). Each must be there exactly once.
func flannelRBACObjects(manifest []byte) ([]kubeObject, error) {
	want := []struct{ kind, namespace, name string }{
		{"Namespace", "", flannelNamespace},
		{"ServiceAccount", flannelNamespace, flannelServiceAccount},
		{"ClusterRole", "", "flannel"},
		{"ClusterRoleBinding", "", "flannel"},
	}
	objs, err := manifestObjects(manifest)
	if err != nil {
		return nil, err
	}
	var out []kubeObject
	for _, w := range want {
		var found []kubeObject
		for _, o := range objs {
			if o.kind == w.kind && o.name == w.name && o.namespace == w.namespace {
				found = append(found, o)
			}
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("want one %s %s, found %d", w.kind, objectName(w.namespace, w.name), len(found))
		}
		out = append(out, found[0])
	}
	return out, nil
}

func objectName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// manifestObjects parses a multi-document YAML manifest into the objects
// whose REST path the lab knows (those kinds only; others are skipped).
func manifestObjects(manifest []byte) ([]kubeObject, error) {
	var out []kubeObject
	for i, doc := range splitYAML(manifest) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &meta); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		o := kubeObject{kind: meta.Kind, name: meta.Metadata.Name, namespace: meta.Metadata.Namespace, body: js}
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			o.path = "/api/v1/namespaces/" + o.name
		case "v1 ServiceAccount":
			o.path = "/api/v1/namespaces/" + o.namespace + "/serviceaccounts/" + o.name
		case "v1 ConfigMap":
			o.path = "/api/v1/namespaces/" + o.namespace + "/configmaps/" + o.name
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			o.path = "/apis/rbac.authorization.k8s.io/v1/clusterroles/" + o.name
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			o.path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/" + o.name
		case "apps/v1 DaemonSet":
			o.path = "/apis/apps/v1/namespaces/" + o.namespace + "/daemonsets/" + o.name
		default:
			continue
		}
		if o.name == "" {
			return nil, fmt.Errorf("document %d: %s without a name", i+1, o.kind)
		}
		out = append(out, o)
	}
	return out, nil
}

// splitYAML splits a YAML stream at "---" lines and drops documents that
// hold only comments or blank lines.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur []string
	flush := func() {
		for _, l := range cur {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, []byte(strings.Join(cur, "\n")))
				break
			}
		}
		cur = nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimRight(l, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return docs
}

// Kubectl runs Binaries.Kubectl in the fabric namespace as the admin
// (KubeconfigForAdmin) and returns its output, stdout and stderr together;
// on failure the error holds the output too.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	if l.bin.Kubectl == "" {
		return "", errors.New("kubectl: Options.Binaries.Kubectl is not set (see RequireKubeBinaries)")
	}
	k, err := l.KubeconfigForAdmin()
	if err != nil {
		return "", err
	}
	argv := append([]string{l.bin.Kubectl,
		"--kubeconfig=" + k.Path,
		"--cache-dir=" + filepath.Join(l.kubeDir(), "kubectl-cache"),
	}, args...)
	return l.Exec(ctx, l.fabricNS, argv...)
}

// StartFlanneldKube runs Binaries.Flanneld in h in kube mode, as the
// DaemonSet of dist/kube-flannel.yml would, but with the lab's files:
//
//	flanneld --kube-subnet-mgr --kubeconfig-file=<KubeconfigForFlannel>
//	  --net-config-path=<h.Dir>/net-conf.json --subnet-file=<h.Dir>/subnet.env args...
//
// (no etcd flags; a later flag in args wins). netConf is written to
// h.Dir/net-conf.json first; an empty netConf leaves that file as it is (or
// missing). The environment is PATH, NODE_NAME=h.Name and env; env wins, and
// NODE_NAME set to "" in env leaves the variable out (for the POD_NAME
// lookup). Output is appended to h.Dir/flanneld.log.
func (l *Lab) StartFlanneldKube(h *Host, env map[string]string, netConf string, args ...string) (*Process, error) {
	if l.bin.Flanneld == "" {
		return nil, errors.New("start flanneld: Options.Binaries.Flanneld is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubeRequestTimeout)
	defer cancel()
	k, err := l.KubeconfigForFlannel(ctx)
	if err != nil {
		return nil, fmt.Errorf("start flanneld on %s: %w", h.Name, err)
	}
	netConfPath := filepath.Join(h.Dir, "net-conf.json")
	if netConf != "" {
		if err := os.WriteFile(netConfPath, []byte(netConf), 0o644); err != nil {
			return nil, fmt.Errorf("start flanneld on %s: %w", h.Name, err)
		}
	}
	argv := flanneldKubeArgv(l.bin.Flanneld, h, k.Path, netConfPath, args)
	p, err := l.StartProcess(h.NS, filepath.Join(h.Dir, "flanneld.log"), flanneldKubeEnv(h, env), argv...)
	if err != nil {
		return nil, fmt.Errorf("start flanneld on %s: %w", h.Name, err)
	}
	return p, nil
}

func flanneldKubeArgv(flanneld string, h *Host, kubeconfig, netConfPath string, args []string) []string {
	return append([]string{flanneld,
		"--kube-subnet-mgr",
		"--kubeconfig-file=" + kubeconfig,
		"--net-config-path=" + netConfPath,
		"--subnet-file=" + h.SubnetFile(),
	}, args...)
}

// flanneldKubeEnv is NODE_NAME=h.Name overridden by env, as KEY=value lines
// in a stable order; an empty NODE_NAME in env removes it.
func flanneldKubeEnv(h *Host, env map[string]string) []string {
	all := map[string]string{"NODE_NAME": h.Name}
	for k, v := range env {
		all[k] = v
	}
	if all["NODE_NAME"] == "" {
		delete(all, "NODE_NAME")
	}
	out := make([]string, 0, len(all))
	for k, v := range all {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// KubeAuditEvent is one request the kube-apiserver recorded about Nodes or
// Pods (see kubeAuditPolicy).
type KubeAuditEvent struct {
	Verb        string // get, list, watch, create, update, patch, delete
	User        string // e.g. system:serviceaccount:kube-flannel:flannel
	UserAgent   string
	Resource    string // nodes, pods
	Subresource string // status, or ""
	Name        string // the object's name, "" for a list or watch
	Code        int    // HTTP status of the answer
	URI         string
	Stage       string
}

// KubeAuditEvents reads the kube-apiserver's audit log (Dir/kube/audit.log):
// every request on Nodes, their status and Pods, oldest first, across
// restarts.
func (l *Lab) KubeAuditEvents() ([]KubeAuditEvent, error) {
	b, err := os.ReadFile(filepath.Join(l.kubeDir(), "audit.log"))
	if err != nil {
		return nil, fmt.Errorf("kube audit log: %w", err)
	}
	return parseKubeAudit(b)
}

func parseKubeAudit(b []byte) ([]KubeAuditEvent, error) {
	// A line still being written is not an event yet.
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var out []KubeAuditEvent
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e struct {
			Stage      string `json:"stage"`
			RequestURI string `json:"requestURI"`
			Verb       string `json:"verb"`
			User       struct {
				Username string `json:"username"`
			} `json:"user"`
			UserAgent string `json:"userAgent"`
			ObjectRef struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
				Name        string `json:"name"`
			} `json:"objectRef"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("kube audit log line %d: %w", i+1, err)
		}
		out = append(out, KubeAuditEvent{
			Verb: e.Verb, User: e.User.Username, UserAgent: e.UserAgent,
			Resource: e.ObjectRef.Resource, Subresource: e.ObjectRef.Subresource, Name: e.ObjectRef.Name,
			Code: e.ResponseStatus.Code, URI: e.RequestURI, Stage: e.Stage,
		})
	}
	return out, nil
}
