package dist

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The two Kubernetes manifests: kube mode (upstream's layout, leases from
// the Nodes) and etcd mode (leases in etcd, no API access).
const (
	kubeManifest = "kube-flannel.yml"
	etcdManifest = "kube-flannel-etcd.yml"
)

var manifestFiles = []string{kubeManifest, etcdManifest}

// The few Kubernetes fields the tests read, with the API's JSON names.
// sigs.k8s.io/yaml turns YAML into JSON first, so a misspelt field in the
// manifest shows up here as a missing value (and the server dry run in
// apply_linux_test.go rejects it).
type (
	k8sObject struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Data                         map[string]string `json:"data"`
		AutomountServiceAccountToken *bool             `json:"automountServiceAccountToken"`
		Spec                         json.RawMessage   `json:"spec"`
		// ClusterRole
		Rules []struct {
			APIGroups []string `json:"apiGroups"`
			Resources []string `json:"resources"`
			Verbs     []string `json:"verbs"`
		} `json:"rules"`
		// ClusterRoleBinding
		RoleRef *struct {
			APIGroup string `json:"apiGroup"`
			Kind     string `json:"kind"`
			Name     string `json:"name"`
		} `json:"roleRef"`
		Subjects []struct {
			Kind      string `json:"kind"`
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"subjects"`
	}
	daemonSetSpec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		UpdateStrategy json.RawMessage `json:"updateStrategy"`
		Template       struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec podSpec `json:"spec"`
		} `json:"template"`
	}
	podSpec struct {
		HostNetwork                  bool   `json:"hostNetwork"`
		PriorityClassName            string `json:"priorityClassName"`
		ServiceAccountName           string `json:"serviceAccountName"`
		AutomountServiceAccountToken *bool  `json:"automountServiceAccountToken"`
		SecurityContext              *struct {
			RunAsUser  *int64 `json:"runAsUser"`
			RunAsGroup *int64 `json:"runAsGroup"`
		} `json:"securityContext"`
		Tolerations    []toleration `json:"tolerations"`
		InitContainers []container  `json:"initContainers"`
		Containers     []container  `json:"containers"`
		Volumes        []volume     `json:"volumes"`
		Affinity       *struct {
			NodeAffinity *struct {
				Required *struct {
					Terms []struct {
						Expressions []struct {
							Key      string   `json:"key"`
							Operator string   `json:"operator"`
							Values   []string `json:"values"`
						} `json:"matchExpressions"`
					} `json:"nodeSelectorTerms"`
				} `json:"requiredDuringSchedulingIgnoredDuringExecution"`
			} `json:"nodeAffinity"`
		} `json:"affinity"`
	}
	toleration struct {
		Key      string `json:"key"`
		Operator string `json:"operator"`
		Effect   string `json:"effect"`
	}
	container struct {
		Name    string   `json:"name"`
		Image   string   `json:"image"`
		Command []string `json:"command"`
		Args    []string `json:"args"`
		Ports   []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
			Protocol      string `json:"protocol"`
		} `json:"ports"`
		Env       []envVar `json:"env"`
		Resources struct {
			Requests map[string]string `json:"requests"`
			Limits   map[string]string `json:"limits"`
		} `json:"resources"`
		SecurityContext *struct {
			Privileged   *bool `json:"privileged"`
			Capabilities *struct {
				Add []string `json:"add"`
			} `json:"capabilities"`
		} `json:"securityContext"`
		LivenessProbe  *probe        `json:"livenessProbe"`
		ReadinessProbe *probe        `json:"readinessProbe"`
		VolumeMounts   []volumeMount `json:"volumeMounts"`
	}
	envVar struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
		} `json:"valueFrom"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"`
			Host string `json:"host"`
		} `json:"httpGet"`
		InitialDelaySeconds int `json:"initialDelaySeconds"`
		PeriodSeconds       int `json:"periodSeconds"`
	}
	volumeMount struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	}
	volume struct {
		Name     string `json:"name"`
		HostPath *struct {
			Path string `json:"path"`
			Type string `json:"type"`
		} `json:"hostPath"`
		ConfigMap *struct {
			Name string `json:"name"`
		} `json:"configMap"`
		Secret *struct {
			SecretName string `json:"secretName"`
		} `json:"secret"`
	}
)

// splitYAMLDocuments splits a multi-document stream at "---" lines and
// drops documents that hold only comments.
func splitYAMLDocuments(text string) []string {
	var docs []string
	var cur []string
	flush := func() {
		for _, l := range cur {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, strings.Join(cur, "\n"))
				break
			}
		}
		cur = nil
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimRight(l, " \t") == "---" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return docs
}

// manifest is one of the manifests, parsed.
type manifest struct {
	file      string
	objects   []k8sObject
	configMap k8sObject
	ds        k8sObject
	dsSpec    daemonSetSpec
	pod       podSpec
	flanneld  container   // the one container
	inits     []container // the init containers, in order
}

func loadManifest(t *testing.T, file string) manifest {
	t.Helper()
	m := manifest{file: file}
	for i, doc := range splitYAMLDocuments(readDistFile(t, file)) {
		// Strict YAML (a key given twice is an error); lenient JSON, as
		// these structs model only the fields under test.
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			t.Fatalf("%s document %d: %v", file, i+1, err)
		}
		var obj k8sObject
		if err := json.Unmarshal(js, &obj); err != nil {
			t.Fatalf("%s document %d: %v", file, i+1, err)
		}
		if obj.Kind == "" || obj.APIVersion == "" || obj.Metadata.Name == "" {
			t.Fatalf("%s document %d has no kind, apiVersion or name", file, i+1)
		}
		m.objects = append(m.objects, obj)
	}
	var ds *k8sObject
	for i := range m.objects {
		switch m.objects[i].Kind {
		case "DaemonSet":
			if ds != nil {
				t.Fatalf("%s has two DaemonSets", file)
			}
			ds = &m.objects[i]
		case "ConfigMap":
			m.configMap = m.objects[i]
		}
	}
	if ds == nil {
		t.Fatalf("%s has no DaemonSet", file)
	}
	m.ds = *ds
	if err := json.Unmarshal(ds.Spec, &m.dsSpec); err != nil {
		t.Fatalf("%s: DaemonSet spec: %v", file, err)
	}
	for k, v := range m.dsSpec.Selector.MatchLabels {
		if m.dsSpec.Template.Metadata.Labels[k] != v {
			t.Errorf("%s: DaemonSet selector %s=%s does not match the pod template's labels", file, k, v)
		}
	}
	m.pod = m.dsSpec.Template.Spec
	if len(m.pod.Containers) != 1 || len(m.pod.InitContainers) == 0 {
		t.Fatalf("%s: want one container and init containers, have %d and %d",
			file, len(m.pod.Containers), len(m.pod.InitContainers))
	}
	m.flanneld, m.inits = m.pod.Containers[0], m.pod.InitContainers
	return m
}

// forEachManifest runs fn as a subtest for each manifest.
func forEachManifest(t *testing.T, fn func(t *testing.T, m manifest)) {
	for _, file := range manifestFiles {
		t.Run(file, func(t *testing.T) { fn(t, loadManifest(t, file)) })
	}
}

// object returns the only object of that kind and name.
func (m manifest) object(t *testing.T, kind, name string) k8sObject {
	t.Helper()
	var found []k8sObject
	for _, o := range m.objects {
		if o.Kind == kind && o.Metadata.Name == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one %s %s, have %d", m.file, kind, name, len(found))
	}
	return found[0]
}

// volumeFor returns the volume mounted at mountPath in c.
func (m manifest) volumeFor(t *testing.T, c container, mountPath string) (volume, volumeMount) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) != mountPath {
			continue
		}
		for _, v := range m.pod.Volumes {
			if v.Name == vm.Name {
				return v, vm
			}
		}
		t.Fatalf("container %s mounts volume %q, which the pod does not define", c.Name, vm.Name)
	}
	t.Fatalf("container %s mounts nothing at %s", c.Name, mountPath)
	return volume{}, volumeMount{}
}

// hostPathMount checks that c mounts the node's path at the same path.
func (m manifest) hostPathMount(t *testing.T, c container, p, wantType string) volumeMount {
	t.Helper()
	v, vm := m.volumeFor(t, c, p)
	if v.HostPath == nil || v.HostPath.Path != p {
		t.Errorf("container %s: %s is not the node's %s (volume %s)", c.Name, p, p, v.Name)
	} else if wantType != "" && v.HostPath.Type != wantType {
		t.Errorf("hostPath %s has type %q, want %q", p, v.HostPath.Type, wantType)
	}
	return vm
}

// flagArgs parses "--name=value" / "-name" arguments into name -> value
// ("true" for a bare boolean), rejecting duplicates and "--name value".
func flagArgs(t *testing.T, args []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			t.Errorf("argument %q is not a flag (write --name=value)", a)
			continue
		}
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok {
			value = "true"
		}
		if _, dup := flags[name]; dup {
			t.Errorf("flag --%s given twice", name)
		}
		flags[name] = value
	}
	return flags
}

func probePort(t *testing.T, name string, p *probe) string {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("%s is not an httpGet probe", name)
	}
	if p.HTTPGet.Host != "" {
		// With hostNetwork the kubelet probes the node IP; a host here
		// (127.0.0.1 above all) is what breaks that.
		t.Errorf("%s sets host %q; leave it out", name, p.HTTPGet.Host)
	}
	return fmt.Sprint(p.HTTPGet.Port)
}

// envFrom returns the variable's value or "fieldRef:<path>".
func envFrom(c container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom != nil:
			env[e.Name] = "valueFrom:?"
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

// TestManifests checks what both manifests share: the namespace, the
// service account, the pod's placement and the image.
func TestManifests(t *testing.T) {
	forEachManifest(t, func(t *testing.T, m manifest) {
		for _, o := range m.objects {
			cluster := o.Kind == "Namespace" || strings.HasPrefix(o.Kind, "Cluster")
			if !cluster && o.Metadata.Namespace != "kube-flannel" {
				t.Errorf("%s %s is in namespace %q, want kube-flannel", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
			}
			if cluster && o.Metadata.Namespace != "" {
				t.Errorf("%s %s is cluster-scoped but names namespace %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
			}
		}
		ns := m.object(t, "Namespace", "kube-flannel")
		for k, v := range map[string]string{"k8s-app": "flannel", "pod-security.kubernetes.io/enforce": "privileged"} {
			if ns.Metadata.Labels[k] != v {
				t.Errorf("Namespace label %s=%q, want %q", k, ns.Metadata.Labels[k], v)
			}
		}
		sa := m.object(t, "ServiceAccount", "flannel")
		if m.pod.ServiceAccountName != sa.Metadata.Name {
			t.Errorf("pod runs as service account %q, the manifest defines %q", m.pod.ServiceAccountName, sa.Metadata.Name)
		}
		m.object(t, "ConfigMap", "kube-flannel-cfg")
		m.object(t, "DaemonSet", "kube-flannel-ds")
		if m.dsSpec.Selector.MatchLabels["app"] != "flannel" {
			t.Errorf("DaemonSet selector %v, want app=flannel", m.dsSpec.Selector.MatchLabels)
		}

		if !m.pod.HostNetwork {
			t.Error("hostNetwork is not true")
		}
		if m.pod.PriorityClassName != "system-node-critical" {
			t.Errorf("priorityClassName %q, want system-node-critical", m.pod.PriorityClassName)
		}
		want := toleration{Operator: "Exists", Effect: "NoSchedule"}
		if !slices.Contains(m.pod.Tolerations, want) {
			t.Errorf("no toleration %+v (have %+v)", want, m.pod.Tolerations)
		}
		linux := false
		if a := m.pod.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.Required != nil {
			for _, term := range a.NodeAffinity.Required.Terms {
				for _, e := range term.Expressions {
					linux = linux || e.Key == "kubernetes.io/os" && e.Operator == "In" && reflect.DeepEqual(e.Values, []string{"linux"})
				}
			}
		}
		if !linux {
			t.Error("no required node affinity kubernetes.io/os In [linux]")
		}
		for _, c := range append(m.pod.InitContainers, m.pod.Containers...) {
			if c.Image != image {
				t.Errorf("container %s runs %q, want %q (the Dockerfile's image)", c.Name, c.Image, image)
			}
		}
		// The image runs as a non-root user by default (TestDockerfile);
		// every container here needs root.
		if sc := m.pod.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsGroup == nil || *sc.RunAsGroup != 0 {
			t.Errorf("pod securityContext %+v, want runAsUser: 0 and runAsGroup: 0", sc)
		}
	})
}

// upstreamRBAC is the ClusterRole of upstream's kube-flannel.yml (v0.28.9),
// as group/resource:verb. Ours must be exactly this: clusters keep their
// RBAC when they switch, and flanneld must make do with it.
var upstreamRBAC = []string{
	"/nodes/status:patch",
	"/nodes:get",
	"/nodes:list",
	"/nodes:watch",
	"/pods:get",
}

// TestManifestKube checks what makes kube-flannel.yml a drop-in for
// upstream's: object names and order, RBAC, the ConfigMap's net-conf.json,
// labels, the pod's environment and arguments.
func TestManifestKube(t *testing.T) {
	m := loadManifest(t, kubeManifest)

	var names []string
	for _, o := range m.objects {
		names = append(names, o.Kind+" "+o.Metadata.Name)
	}
	wantNames := []string{
		"Namespace kube-flannel", "ClusterRole flannel", "ClusterRoleBinding flannel",
		"ServiceAccount flannel", "ConfigMap kube-flannel-cfg", "DaemonSet kube-flannel-ds",
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("objects:\n%q\nwant upstream's:\n%q", names, wantNames)
	}

	role := m.object(t, "ClusterRole", "flannel")
	var rules []string
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					rules = append(rules, g+"/"+res+":"+v)
				}
			}
		}
	}
	sort.Strings(rules)
	if !reflect.DeepEqual(rules, upstreamRBAC) {
		t.Errorf("ClusterRole flannel grants\n%q\nwant exactly upstream's\n%q", rules, upstreamRBAC)
	}
	if role.APIVersion != "rbac.authorization.k8s.io/v1" {
		t.Errorf("ClusterRole apiVersion %s", role.APIVersion)
	}
	binding := m.object(t, "ClusterRoleBinding", "flannel")
	if r := binding.RoleRef; r == nil || r.APIGroup != "rbac.authorization.k8s.io" || r.Kind != "ClusterRole" || r.Name != "flannel" {
		t.Errorf("ClusterRoleBinding roleRef %+v, want ClusterRole flannel", r)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" ||
		binding.Subjects[0].Name != "flannel" || binding.Subjects[0].Namespace != "kube-flannel" {
		t.Errorf("ClusterRoleBinding subjects %+v, want only ServiceAccount kube-flannel/flannel", binding.Subjects)
	}
	// flanneld needs its token for the API.
	if sa := m.object(t, "ServiceAccount", "flannel"); sa.AutomountServiceAccountToken != nil && !*sa.AutomountServiceAccountToken {
		t.Error("ServiceAccount disables its token mount: kube mode calls the API")
	}
	if p := m.pod.AutomountServiceAccountToken; p != nil && !*p {
		t.Error("the pod disables its token mount: kube mode calls the API")
	}

	// Labels as upstream's, which users' selectors and tools rely on.
	for _, c := range []struct {
		what   string
		labels map[string]string
		want   map[string]string
	}{
		{"ConfigMap", m.configMap.Metadata.Labels, map[string]string{"tier": "node", "k8s-app": "flannel", "app": "flannel"}},
		{"DaemonSet", m.ds.Metadata.Labels, map[string]string{"tier": "node", "app": "flannel", "k8s-app": "flannel"}},
		{"pod template", m.dsSpec.Template.Metadata.Labels, map[string]string{"tier": "node", "app": "flannel"}},
	} {
		for k, v := range c.want {
			if c.labels[k] != v {
				t.Errorf("%s label %s=%q, want %q", c.what, k, c.labels[k], v)
			}
		}
	}
	// Upstream has no updateStrategy: RollingUpdate, maxUnavailable 1.
	if len(m.dsSpec.UpdateStrategy) != 0 {
		t.Errorf("DaemonSet updateStrategy %s; upstream's has none", m.dsSpec.UpdateStrategy)
	}
	if want := []toleration{{Operator: "Exists", Effect: "NoSchedule"}}; !reflect.DeepEqual(m.pod.Tolerations, want) {
		t.Errorf("tolerations %+v, want upstream's %+v", m.pod.Tolerations, want)
	}

	var initNames []string
	for _, c := range m.inits {
		initNames = append(initNames, c.Name)
	}
	if want := []string{"install-cni-plugin", "install-cni"}; !reflect.DeepEqual(initNames, want) {
		t.Errorf("init containers %q, want upstream's %q", initNames, want)
	}

	// The network config, as upstream ships it.
	const upstreamNetConf = `{"Network": "10.244.0.0/16", "EnableNFTables": false, "Backend": {"Type": "vxlan"}}`
	netConf, ok := m.configMap.Data["net-conf.json"]
	if !ok {
		t.Fatal("ConfigMap kube-flannel-cfg has no net-conf.json")
	}
	if !jsonEqual(t, "net-conf.json", []byte(netConf), []byte(upstreamNetConf)) {
		t.Errorf("net-conf.json:\n%s\nwant upstream's %s", netConf, upstreamNetConf)
	}

	c := m.flanneld
	if c.Name != "kube-flannel" {
		t.Errorf("container %q, want kube-flannel", c.Name)
	}
	if want := []string{"--ip-masq", "--kube-subnet-mgr", "--healthz-port=8081"}; !reflect.DeepEqual(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	// flanneld reads net-conf.json from its default --net-config-path.
	cfg, cfgMount := m.volumeFor(t, c, "/etc/kube-flannel")
	if cfg.ConfigMap == nil || cfg.ConfigMap.Name != "kube-flannel-cfg" {
		t.Errorf("/etc/kube-flannel is not the ConfigMap kube-flannel-cfg (volume %+v)", cfg)
	}
	if !cfgMount.ReadOnly {
		t.Error("the ConfigMap is mounted writable")
	}
	if f, ok := lookupFlag("net-config-path"); !ok || f.def != path.Join(cfgMount.MountPath, "net-conf.json") {
		t.Errorf("--net-config-path default %q, want the ConfigMap's %s", f.def, path.Join(cfgMount.MountPath, "net-conf.json"))
	}
	env := envFrom(c)
	wantEnv := map[string]string{
		"NODE_NAME":         "fieldRef:spec.nodeName", // ours: no pod GET needed
		"POD_NAME":          "fieldRef:metadata.name",
		"POD_NAMESPACE":     "fieldRef:metadata.namespace",
		"EVENT_QUEUE_DEPTH": "5000",
	}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("env %v, want %v", env, wantEnv)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "healthz" || c.Ports[0].ContainerPort != 8081 || c.Ports[0].Protocol != "TCP" {
		t.Errorf("ports %+v, want healthz 8081/TCP", c.Ports)
	}
	if p := c.LivenessProbe; p == nil || p.InitialDelaySeconds != 10 || p.PeriodSeconds != 30 {
		t.Errorf("livenessProbe %+v, want upstream's delay 10 s, period 30 s", p)
	}
	if p := c.ReadinessProbe; p == nil || p.InitialDelaySeconds != 5 || p.PeriodSeconds != 10 {
		t.Errorf("readinessProbe %+v, want upstream's delay 5 s, period 10 s", p)
	}
}

// TestManifestEtcd checks the etcd-mode manifest: no API access, etcd
// over TLS from a Secret.
func TestManifestEtcd(t *testing.T) {
	m := loadManifest(t, etcdManifest)
	for _, o := range m.objects {
		// etcd mode talks to etcd only: no API access to grant.
		if strings.Contains(o.Kind, "Role") {
			t.Errorf("%s %s: etcd mode needs no RBAC", o.Kind, o.Metadata.Name)
		}
	}
	if sa := m.object(t, "ServiceAccount", "flannel"); sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the ServiceAccount mounts an API token flanneld never uses")
	}
	for _, want := range []toleration{{Operator: "Exists", Effect: "NoSchedule"}, {Operator: "Exists", Effect: "NoExecute"}} {
		if !slices.Contains(m.pod.Tolerations, want) {
			t.Errorf("no toleration %+v (have %+v)", want, m.pod.Tolerations)
		}
	}
	if _, ok := m.configMap.Data["net-conf.json"]; ok {
		t.Error("the ConfigMap has a net-conf.json: in etcd mode the network config lives in etcd")
	}

	c := m.flanneld
	flags := flagArgs(t, c.Args)
	if flags["kube-subnet-mgr"] == "true" {
		t.Error("--kube-subnet-mgr set: this manifest is for etcd mode")
	}
	for _, ep := range strings.Split(flags["etcd-endpoints"], ",") {
		if !strings.HasPrefix(ep, "https://") {
			t.Errorf("etcd endpoint %q is not https", ep)
		}
	}
	if flags["etcd-prefix"] != "/coreos.com/network" {
		t.Errorf("--etcd-prefix=%q, want /coreos.com/network", flags["etcd-prefix"])
	}
	// The TLS files are the keys of the Secret, at its mount path.
	tls, tlsMount := m.volumeFor(t, c, "/etc/flannel/etcd")
	if tls.Secret == nil || tls.Secret.SecretName != "flannel-etcd-tls" {
		t.Errorf("/etc/flannel/etcd is not the Secret flannel-etcd-tls (volume %+v)", tls)
	}
	if !tlsMount.ReadOnly {
		t.Error("the etcd TLS Secret is mounted writable")
	}
	for flag, file := range map[string]string{"etcd-cafile": "ca.crt", "etcd-certfile": "tls.crt", "etcd-keyfile": "tls.key"} {
		if want := path.Join(tlsMount.MountPath, file); flags[flag] != want {
			t.Errorf("--%s=%q, want %q", flag, flags[flag], want)
		}
	}
	if got := envFrom(c)["NODE_NAME"]; got != "fieldRef:spec.nodeName" {
		t.Errorf("NODE_NAME %q, want fieldRef spec.nodeName", got)
	}
}

// TestManifestFlanneldContainer checks, in both manifests, that the
// container runs flanneld from the image with flags it has, probes its
// health server, and has the mounts and capabilities it needs.
func TestManifestFlanneldContainer(t *testing.T) {
	forEachManifest(t, func(t *testing.T, m manifest) {
		c := m.flanneld
		if !reflect.DeepEqual(c.Command, []string{"/opt/bin/flanneld"}) {
			t.Errorf("command %q, want [/opt/bin/flanneld] (where the Dockerfile puts it)", c.Command)
		}
		flags := flagArgs(t, c.Args)
		for name := range flags {
			if _, ok := lookupFlag(name); !ok {
				t.Errorf("args: flanneld has no flag --%s", name)
			}
		}
		if flags["ip-masq"] != "true" {
			t.Errorf("--ip-masq=%q, want true", flags["ip-masq"])
		}

		// Probes go to the health server's port, which listens on every
		// address so that the kubelet reaches it at the node IP.
		port := flags["healthz-port"]
		if port == "" || port == "0" {
			t.Fatal("--healthz-port is not set: the health server is off")
		}
		if ip, ok := flags["healthz-ip"]; ok && ip != "0.0.0.0" {
			t.Errorf("--healthz-ip=%s: the kubelet probes the node IP", ip)
		}
		if got := probePort(t, "livenessProbe", c.LivenessProbe); got != port || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("livenessProbe %s:%s, want /healthz:%s", c.LivenessProbe.HTTPGet.Path, got, port)
		}
		if got := probePort(t, "readinessProbe", c.ReadinessProbe); got != port || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("readinessProbe %s:%s, want /readyz:%s", c.ReadinessProbe.HTTPGet.Path, got, port)
		}

		// flanneld writes subnet.env on the node and shares the iptables
		// lock with the node's other iptables users.
		if vm := m.hostPathMount(t, c, "/run/flannel", ""); vm.ReadOnly {
			t.Error("/run/flannel is read-only: flanneld writes subnet.env there")
		}
		m.hostPathMount(t, c, "/run/xtables.lock", "FileOrCreate")
		if vm := m.hostPathMount(t, c, "/lib/modules", ""); !vm.ReadOnly {
			t.Error("/lib/modules is writable, want readOnly")
		}
		// The udp backend needs /dev/net/tun, which not every host has: a
		// hostPath type that checks for it would keep the pod from
		// starting there. The directory is mounted, so a device that
		// appears later (modprobe tun) shows up too.
		tun, _ := m.volumeFor(t, c, "/dev/net")
		if tun.HostPath == nil || tun.HostPath.Path != "/dev/net" || tun.HostPath.Type != "DirectoryOrCreate" {
			t.Errorf("/dev/net: volume %+v, want the node's /dev/net with type DirectoryOrCreate", tun.HostPath)
		}
		for _, v := range m.pod.Volumes {
			if v.HostPath != nil && strings.HasPrefix(v.HostPath.Path, "/dev/") && v.HostPath.Type != "DirectoryOrCreate" {
				t.Errorf("volume %s: hostPath %s type %q fails on hosts without it", v.Name, v.HostPath.Path, v.HostPath.Type)
			}
		}

		sc := c.SecurityContext
		if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil {
			t.Fatalf("securityContext %+v: want privileged: false and capabilities", sc)
		}
		if want := []string{"NET_ADMIN", "NET_RAW"}; !reflect.DeepEqual(sc.Capabilities.Add, want) {
			t.Errorf("capabilities added %q, want %q", sc.Capabilities.Add, want)
		}
		if r := c.Resources.Requests; r["cpu"] != "100m" || r["memory"] != "50Mi" {
			t.Errorf("resource requests %v, want cpu 100m, memory 50Mi", r)
		}
		if len(c.Resources.Limits) > 0 {
			t.Errorf("resource limits %v: upstream sets none (a memory limit kills flanneld on large clusters)", c.Resources.Limits)
		}
	})
}

// specConflist is 10-flannel.conflist as cni-plugin.md and
// flannel-daemon.md give it.
const specConflist = `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}`

func jsonEqual(t *testing.T, what string, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestManifestConflist(t *testing.T) {
	forEachManifest(t, func(t *testing.T, m manifest) {
		conf, ok := m.configMap.Data["cni-conf.json"]
		if !ok {
			t.Fatalf("ConfigMap %s has no cni-conf.json", m.configMap.Metadata.Name)
		}
		if !jsonEqual(t, "ConfigMap cni-conf.json", []byte(conf), []byte(specConflist)) {
			t.Errorf("ConfigMap cni-conf.json:\n%s\ndiffers from the spec's conflist:\n%s", conf, specConflist)
		}
		file, err := os.ReadFile(filepath.Join(distDir, "10-flannel.conflist"))
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, "10-flannel.conflist", []byte(conf), file) {
			t.Errorf("ConfigMap cni-conf.json:\n%s\ndiffers from dist/10-flannel.conflist:\n%s", conf, file)
		}
	})
}

// TestManifestInstallCNI runs the init containers' scripts, in order, with
// the containers' paths moved under a temporary root, and checks that they
// put the image's plugin binary and the ConfigMap's conflist on the node.
func TestManifestInstallCNI(t *testing.T) {
	forEachManifest(t, func(t *testing.T, m manifest) {
		var scripts []string
		for _, c := range m.inits {
			if len(c.Command) != 3 || c.Command[0] != "/bin/sh" || c.Command[1] != "-c" {
				t.Fatalf("init container %s: command %q, want [/bin/sh -c SCRIPT]", c.Name, c.Command)
			}
			scripts = append(scripts, c.Command[2])
		}
		all := strings.Join(scripts, "\n")
		// Each directory, mounted writable by the container that writes
		// it, and the ConfigMap where the conflist comes from.
		for _, dir := range []string{"/opt/cni/bin", "/etc/cni/net.d"} {
			n := 0
			for i, c := range m.inits {
				if !strings.Contains(scripts[i], dir+"/") {
					continue
				}
				n++
				if vm := m.hostPathMount(t, c, dir, ""); vm.ReadOnly {
					t.Errorf("init container %s cannot write %s", c.Name, dir)
				}
			}
			if n == 0 {
				t.Errorf("no init container writes %s", dir)
			}
		}
		for i, c := range m.inits {
			if !strings.Contains(scripts[i], "/etc/kube-flannel/") {
				continue
			}
			cfg, _ := m.volumeFor(t, c, "/etc/kube-flannel")
			if cfg.ConfigMap == nil || cfg.ConfigMap.Name != m.configMap.Metadata.Name {
				t.Fatalf("init container %s: /etc/kube-flannel is not the ConfigMap %s", c.Name, m.configMap.Metadata.Name)
			}
		}

		root := t.TempDir()
		// Longest first, so no path is rewritten inside another.
		paths := []string{"/etc/kube-flannel", "/etc/cni/net.d", "/opt/cni/bin", "/opt/bin"}
		var oldnew []string
		for _, p := range paths {
			if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
				t.Fatal(err)
			}
			oldnew = append(oldnew, p, filepath.Join(root, p))
		}
		rewrite := strings.NewReplacer(oldnew...)

		// The image's plugin (the Dockerfile copies it to
		// /opt/bin/flannel) and the ConfigMap's file; an old plugin is
		// already installed.
		plugin := []byte("#!/bin/sh\n# new flannel plugin\n")
		write := func(p string, data []byte, mode os.FileMode) {
			if err := os.WriteFile(filepath.Join(root, p), data, mode); err != nil {
				t.Fatal(err)
			}
		}
		write("/opt/bin/flannel", plugin, 0o755)
		write("/etc/kube-flannel/cni-conf.json", []byte(m.configMap.Data["cni-conf.json"]), 0o644)
		write("/opt/cni/bin/flannel", []byte("old"), 0o755)
		for _, p := range []string{"bridge", "host-local", "loopback"} { // portmap missing
			write("/opt/cni/bin/"+p, nil, 0o755)
		}

		for run := 1; run <= 2; run++ { // a restarted pod runs them again
			var stderr bytes.Buffer
			for i, script := range scripts {
				cmd := exec.Command("/bin/sh", "-c", rewrite.Replace(script))
				cmd.Stderr = &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("run %d: init container %s: %v: %s", run, m.inits[i].Name, err, stderr.String())
				}
			}
			if !strings.Contains(stderr.String(), "CNI plugin portmap is missing") ||
				strings.Contains(stderr.String(), "plugin bridge") {
				t.Errorf("run %d: stderr %q, want a warning about portmap only", run, stderr.String())
			}
			got, err := os.ReadFile(filepath.Join(root, "/opt/cni/bin/flannel"))
			if err != nil || !bytes.Equal(got, plugin) {
				t.Errorf("run %d: /opt/cni/bin/flannel = %q (%v), want the image's plugin", run, got, err)
			}
			if fi, err := os.Stat(filepath.Join(root, "/opt/cni/bin/flannel")); err != nil || fi.Mode().Perm()&0o111 == 0 {
				t.Errorf("run %d: /opt/cni/bin/flannel is not executable (%v)", run, err)
			}
			conf, err := os.ReadFile(filepath.Join(root, "/etc/cni/net.d/10-flannel.conflist"))
			if err != nil || string(conf) != m.configMap.Data["cni-conf.json"] {
				t.Errorf("run %d: 10-flannel.conflist = %q (%v), want the ConfigMap's", run, conf, err)
			}
			for _, dir := range []string{"/opt/cni/bin", "/etc/cni/net.d"} {
				entries, err := os.ReadDir(filepath.Join(root, dir))
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range entries {
					if strings.Contains(e.Name(), "tmp") {
						t.Errorf("run %d: temporary file %s left in %s", run, e.Name(), dir)
					}
				}
			}
		}

		// Atomic: each file is renamed into place from the same
		// directory, never copied onto its final name.
		for _, target := range []string{"/opt/cni/bin/flannel", "/etc/cni/net.d/10-flannel.conflist"} {
			mv := regexp.MustCompile(`(?m)^\s*mv -f (\S+) ` + regexp.QuoteMeta(target) + `\s*$`).FindStringSubmatch(all)
			if mv == nil || path.Dir(mv[1]) != path.Dir(target) {
				t.Errorf("%s is not moved into place from a file in %s", target, path.Dir(target))
			}
			if regexp.MustCompile(`(?m)^\s*cp .*` + regexp.QuoteMeta(target) + `\s*$`).MatchString(all) {
				t.Errorf("%s is copied onto directly", target)
			}
		}
	})
}
