package kube

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// kubeletNode is a Node as a kubelet keeps it: labels, managed fields,
// conditions with times, 40 images, capacity, addresses.
func kubeletNode() *corev1.Node {
	n := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}}
	n.Name, n.UID, n.ResourceVersion = "ip-10-0-1-23.ec2.internal", "6f1b1a0e-3c2b-4b9e-9f5e-1234567890ab", "123456789"
	n.Labels = map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": "ip-10-0-1-23"}
	n.Annotations = map[string]string{
		"flannel.alpha.coreos.com/backend-data": vxlanData("36:02:d1:89:dc:55"), "flannel.alpha.coreos.com/public-ip": "10.0.1.23",
		"flannel.alpha.coreos.com/kube-subnet-manager": "true", "flannel.alpha.coreos.com/backend-type": "vxlan",
		"node.alpha.kubernetes.io/ttl": "0", "empty": "",
	}
	now := metav1.NewTime(time.Unix(1700000000, 0))
	for range 6 {
		n.ManagedFields = append(n.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubelet", Operation: "Update", APIVersion: "v1", Time: &now,
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:conditions":{}}}`)}, Subresource: "status"})
	}
	n.Finalizers = []string{"x"}
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}
	n.Spec.ProviderID = "aws:///us-east-1a/i-0123456789abcdef0"
	n.Spec.Taints = []corev1.Taint{{Key: "k", Value: "v", Effect: "NoSchedule"}}
	for _, c := range []string{"MemoryPressure", "DiskPressure", "PIDPressure", "Ready", "NetworkUnavailable"} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeConditionType(c), Status: "False",
			LastHeartbeatTime: now, LastTransitionTime: now, Reason: c + "Reason", Message: "a message"})
	}
	for i := range 40 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{fmt.Sprintf("registry.k8s.io/img-%d@sha256:0123456789abcdef", i)}, SizeBytes: 123456789})
	}
	n.Status.Capacity = corev1.ResourceList{"cpu": resource.MustParse("4"), "memory": resource.MustParse("16Gi")}
	n.Status.Addresses = []corev1.NodeAddress{{Type: "InternalIP", Address: "10.0.1.23"}}
	n.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", Architecture: "amd64"}
	return n
}

// encodeProto is what the API server sends: k8s's protobuf envelope.
func encodeProto(t testing.TB, obj runtime.Object) []byte {
	t.Helper()
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := protobuf.NewSerializer(s, s).Encode(obj, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestNodeProtobuf decodes what k8s.io/api/core/v1 encodes, through the
// same apimachinery decoder the client uses.
func TestNodeProtobuf(t *testing.T) {
	want := kubeletNode()
	obj, _, err := coreV1Codecs().UniversalDeserializer().Decode(encodeProto(t, want), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := obj.(*Node)
	if !ok {
		t.Fatalf("decoded a %T", obj)
	}
	if n.Name != want.Name || n.UID != want.UID || n.ResourceVersion != want.ResourceVersion ||
		!maps.Equal(n.Annotations, want.Annotations) || n.Spec.PodCIDR != want.Spec.PodCIDR || !slices.Equal(n.Spec.PodCIDRs, want.Spec.PodCIDRs) ||
		len(n.Labels) != 0 || len(n.ManagedFields) != 0 || n.Kind != "Node" || n.APIVersion != "v1" {
		t.Errorf("decoded %+v", n)
	}
	if len(n.Status.Conditions) != 5 || n.Status.Conditions[4] != (NodeCondition{"NetworkUnavailable", "False", "NetworkUnavailableReason"}) {
		t.Errorf("conditions %+v", n.Status.Conditions)
	}

	rem := int64(7)
	list := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"},
		ListMeta: metav1.ListMeta{ResourceVersion: "99", Continue: "token", RemainingItemCount: &rem},
		Items:    []corev1.Node{*want, {ObjectMeta: metav1.ObjectMeta{Name: "bare"}}}}
	obj, _, err = coreV1Codecs().UniversalDeserializer().Decode(encodeProto(t, list), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := obj.(*NodeList)
	if l.ResourceVersion != "99" || l.Continue != "token" || l.RemainingItemCount == nil || *l.RemainingItemCount != 7 ||
		len(l.Items) != 2 || l.Items[0].Name != want.Name || l.Items[1].Name != "bare" || l.Items[1].Annotations != nil {
		t.Errorf("list %+v", l)
	}

	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "flannel-x", Namespace: "kube-flannel"},
		Spec: corev1.PodSpec{NodeName: "n7", Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	obj, _, err = coreV1Codecs().UniversalDeserializer().Decode(encodeProto(t, pod), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := obj.(*Pod); p.Spec.NodeName != "n7" || p.Name != "flannel-x" {
		t.Errorf("pod %+v", p)
	}

	// Copies share nothing.
	c := n.DeepCopy()
	c.Annotations["x"], c.Spec.PodCIDRs[0], c.Status.Conditions[0].Type = "y", "z", "w"
	if n.Annotations["x"] != "" || n.Spec.PodCIDRs[0] == "z" || n.Status.Conditions[0].Type == "w" {
		t.Error("DeepCopy shares memory")
	}
	lc := l.DeepCopyObject().(*NodeList)
	lc.Items[0].Annotations["x"] = "y"
	*lc.RemainingItemCount = 1
	if l.Items[0].Annotations["x"] != "" || *l.RemainingItemCount != 7 {
		t.Error("NodeList DeepCopy shares memory")
	}
}

// FuzzNodeProtobuf: our decoder never panics on any input, and reads
// what the generated core/v1 decoder reads from anything that decoder
// accepts, once re-encoded in the canonical form the API server sends (the
// generated decoder also skips malformed groups, which no server sends).
func FuzzNodeProtobuf(f *testing.F) {
	b, _ := (&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u", ResourceVersion: "5", Annotations: map[string]string{"a": "b", "": ""}},
		Spec:   corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00::/64"}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: "Ready", Status: "True", Reason: "r"}}, Images: []corev1.ContainerImage{{Names: []string{"i"}}}}}).Marshal()
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var mine Node
		mine.Unmarshal(data) // must not panic
		var ref corev1.Node
		if ref.Unmarshal(data) != nil {
			return
		}
		canon, err := ref.Marshal()
		if err != nil {
			return
		}
		mine = Node{}
		if err := mine.Unmarshal(canon); err != nil {
			t.Fatalf("core/v1 encodes %x, we cannot decode it: %v", canon, err)
		}
		if mine.Name != ref.Name || mine.UID != ref.UID || mine.ResourceVersion != ref.ResourceVersion ||
			!maps.Equal(mine.Annotations, ref.Annotations) || mine.Spec.PodCIDR != ref.Spec.PodCIDR || !slices.Equal(mine.Spec.PodCIDRs, ref.Spec.PodCIDRs) ||
			len(mine.Status.Conditions) != len(ref.Status.Conditions) {
			t.Fatalf("%x: ours %+v, core/v1 %+v", canon, mine, ref)
		}
		for i, c := range ref.Status.Conditions {
			if mine.Status.Conditions[i] != (NodeCondition{string(c.Type), string(c.Status), c.Reason}) {
				t.Fatalf("condition %d: %+v vs %+v", i, mine.Status.Conditions[i], c)
			}
		}
	})
}

// BenchmarkDecodeKubeletNode is the cost of one watch event of a kubelet's
// Node (about 10 KB).
func BenchmarkDecodeKubeletNode(b *testing.B) {
	data := encodeProto(b, kubeletNode())
	d := coreV1Codecs().UniversalDeserializer()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.Decode(data, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
