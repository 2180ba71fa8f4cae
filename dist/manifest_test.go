package dist

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The few Kubernetes fields the tests read, with the API's JSON names.
// sigs.k8s.io/yaml turns YAML into JSON first, so a misspelt field in the
// manifest shows up here as a missing value.
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
	}
	daemonSetSpec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec podSpec `json:"spec"`
		} `json:"template"`
	}
	podSpec struct {
		HostNetwork        bool         `json:"hostNetwork"`
		PriorityClassName  string       `json:"priorityClassName"`
		ServiceAccountName string       `json:"serviceAccountName"`
		Tolerations        []toleration `json:"tolerations"`
		InitContainers     []container  `json:"initContainers"`
		Containers         []container  `json:"containers"`
		Volumes            []volume     `json:"volumes"`
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
		Env     []struct {
			Name      string `json:"name"`
			Value     string `json:"value"`
			ValueFrom *struct {
				FieldRef *struct {
					FieldPath string `json:"fieldPath"`
				} `json:"fieldRef"`
			} `json:"valueFrom"`
		} `json:"env"`
		Resources struct {
			Requests map[string]string `json:"requests"`
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
	probe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"`
			Host string `json:"host"`
		} `json:"httpGet"`
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

// manifest is dist/kube-flannel.yml, parsed.
type manifest struct {
	objects   []k8sObject
	configMap k8sObject
	pod       podSpec
	flanneld  container
	install   container
}

func loadManifest(t *testing.T) manifest {
	t.Helper()
	var m manifest
	for i, doc := range splitYAMLDocuments(readDistFile(t, "kube-flannel.yml")) {
		// Strict YAML (a key given twice is an error); lenient JSON, as
		// these structs model only the fields under test.
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			t.Fatalf("kube-flannel.yml document %d: %v", i+1, err)
		}
		var obj k8sObject
		if err := json.Unmarshal(js, &obj); err != nil {
			t.Fatalf("kube-flannel.yml document %d: %v", i+1, err)
		}
		if obj.Kind == "" || obj.APIVersion == "" || obj.Metadata.Name == "" {
			t.Fatalf("kube-flannel.yml document %d has no kind, apiVersion or name", i+1)
		}
		m.objects = append(m.objects, obj)
	}
	var ds *k8sObject
	for i := range m.objects {
		switch m.objects[i].Kind {
		case "DaemonSet":
			if ds != nil {
				t.Fatal("kube-flannel.yml has two DaemonSets")
			}
			ds = &m.objects[i]
		case "ConfigMap":
			m.configMap = m.objects[i]
		}
	}
	if ds == nil {
		t.Fatal("kube-flannel.yml has no DaemonSet")
	}
	var spec daemonSetSpec
	if err := json.Unmarshal(ds.Spec, &spec); err != nil {
		t.Fatalf("DaemonSet spec: %v", err)
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("DaemonSet selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	m.pod = spec.Template.Spec
	if len(m.pod.Containers) != 1 || len(m.pod.InitContainers) != 1 {
		t.Fatalf("want one container and one init container, have %d and %d",
			len(m.pod.Containers), len(m.pod.InitContainers))
	}
	m.flanneld, m.install = m.pod.Containers[0], m.pod.InitContainers[0]
	return m
}

// volumeFor returns the volume mounted at mountPath in c.
func (m manifest) volumeFor(t *testing.T, c container, mountPath string) (volume, volumeMount) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != mountPath {
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

func TestManifest(t *testing.T) {
	m := loadManifest(t)

	kinds := map[string]k8sObject{}
	for _, o := range m.objects {
		kinds[o.Kind] = o
		if o.Kind != "Namespace" && o.Metadata.Namespace != "kube-flannel" {
			t.Errorf("%s %s is in namespace %q, want kube-flannel", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
		// etcd mode talks to etcd only: no API access to grant.
		if strings.Contains(o.Kind, "Role") {
			t.Errorf("%s %s: etcd mode needs no RBAC", o.Kind, o.Metadata.Name)
		}
	}
	if ns, ok := kinds["Namespace"]; !ok || ns.Metadata.Name != "kube-flannel" {
		t.Error("no Namespace kube-flannel")
	}
	sa, ok := kinds["ServiceAccount"]
	if !ok {
		t.Fatal("no ServiceAccount")
	}
	if m.pod.ServiceAccountName != sa.Metadata.Name {
		t.Errorf("pod runs as service account %q, the manifest defines %q", m.pod.ServiceAccountName, sa.Metadata.Name)
	}

	if !m.pod.HostNetwork {
		t.Error("hostNetwork is not true")
	}
	if m.pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", m.pod.PriorityClassName)
	}
	for _, want := range []toleration{{Operator: "Exists", Effect: "NoSchedule"}, {Operator: "Exists", Effect: "NoExecute"}} {
		if !contains(tolerationStrings(m.pod.Tolerations), fmt.Sprint(want)) {
			t.Errorf("no toleration %+v (have %+v)", want, m.pod.Tolerations)
		}
	}

	for _, c := range append(m.pod.InitContainers, m.pod.Containers...) {
		if c.Image != image {
			t.Errorf("container %s runs %q, want %q (the Dockerfile's image)", c.Name, c.Image, image)
		}
	}
}

func tolerationStrings(ts []toleration) []string {
	var s []string
	for _, t := range ts {
		s = append(s, fmt.Sprint(t))
	}
	return s
}

func TestManifestFlanneldContainer(t *testing.T) {
	m := loadManifest(t)
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
	if flags["ip-masq"] != "true" {
		t.Errorf("--ip-masq=%q, want true", flags["ip-masq"])
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

	// flanneld writes subnet.env on the node and shares the iptables lock
	// with the node's other iptables users.
	if vm := m.hostPathMount(t, c, "/run/flannel", ""); vm.ReadOnly {
		t.Error("/run/flannel is read-only: flanneld writes subnet.env there")
	}
	m.hostPathMount(t, c, "/run/xtables.lock", "FileOrCreate")
	if vm := m.hostPathMount(t, c, "/lib/modules", ""); !vm.ReadOnly {
		t.Error("/lib/modules is writable, want readOnly")
	}

	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil {
		t.Fatalf("securityContext %+v: want privileged: false and capabilities", sc)
	}
	for _, cap := range []string{"NET_ADMIN", "NET_RAW"} {
		if !contains(sc.Capabilities.Add, cap) {
			t.Errorf("capability %s not added (have %q)", cap, sc.Capabilities.Add)
		}
	}
	if r := c.Resources.Requests; r["cpu"] != "100m" || r["memory"] != "50Mi" {
		t.Errorf("resource requests %v, want cpu 100m, memory 50Mi", r)
	}
	nodeName := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Error("no NODE_NAME from fieldRef spec.nodeName")
	}
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
	m := loadManifest(t)
	conf, ok := m.configMap.Data["cni-conf.json"]
	if !ok {
		t.Fatalf("ConfigMap %s has no cni-conf.json", m.configMap.Metadata.Name)
	}
	if !jsonEqual(t, "ConfigMap cni-conf.json", []byte(conf), []byte(specConflist)) {
		t.Errorf("ConfigMap cni-conf.json:\n%s\ndiffers from the spec's conflist:\n%s", conf, specConflist)
	}
	file, err := os.ReadFile(filepath.Join(distDir, "10-flannel.conflist"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("dist/10-flannel.conflist does not exist yet; compared with the spec's content only")
	}
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, "10-flannel.conflist", []byte(conf), file) {
		t.Errorf("ConfigMap cni-conf.json:\n%s\ndiffers from dist/10-flannel.conflist:\n%s", conf, file)
	}
}

// TestManifestInstallCNI runs the init container's script with the
// container's paths moved under a temporary root, and checks that it puts
// the image's plugin binary and the ConfigMap's conflist on the node.
func TestManifestInstallCNI(t *testing.T) {
	m := loadManifest(t)
	c := m.install
	if len(c.Command) != 3 || c.Command[0] != "/bin/sh" || c.Command[1] != "-c" {
		t.Fatalf("init container command %q, want [/bin/sh -c SCRIPT]", c.Command)
	}
	script := c.Command[2]

	binMount := m.hostPathMount(t, c, "/opt/cni/bin", "")
	confMount := m.hostPathMount(t, c, "/etc/cni/net.d", "")
	if binMount.ReadOnly || confMount.ReadOnly {
		t.Error("the init container cannot write the CNI directories")
	}
	cfg, _ := m.volumeFor(t, c, "/etc/kube-flannel")
	if cfg.ConfigMap == nil || cfg.ConfigMap.Name != m.configMap.Metadata.Name {
		t.Fatalf("/etc/kube-flannel is not the ConfigMap %s", m.configMap.Metadata.Name)
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
	moved := strings.NewReplacer(oldnew...).Replace(script)

	// The image's plugin (the Dockerfile copies it to /opt/bin/flannel) and
	// the ConfigMap's file; an old plugin is already installed.
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

	for run := 1; run <= 2; run++ { // a restarted pod runs it again
		cmd := exec.Command("/bin/sh", "-c", moved)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("run %d: init script: %v: %s", run, err, stderr.String())
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

	// Atomic: each file is renamed into place from the same directory,
	// never copied onto its final name.
	for _, target := range []string{"/opt/cni/bin/flannel", "/etc/cni/net.d/10-flannel.conflist"} {
		mv := regexp.MustCompile(`(?m)^\s*mv -f (\S+) ` + regexp.QuoteMeta(target) + `\s*$`).FindStringSubmatch(script)
		if mv == nil || path.Dir(mv[1]) != path.Dir(target) {
			t.Errorf("%s is not moved into place from a file in %s", target, path.Dir(target))
		}
		if regexp.MustCompile(`(?m)^\s*cp .*` + regexp.QuoteMeta(target) + `\s*$`).MatchString(script) {
			t.Errorf("%s is copied onto directly", target)
		}
	}
}
