package kube

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Node is the part of a core/v1 Node that flannel reads. The package
// k8s.io/api/core/v1 is not used: importing it links every core type
// (about 4.5 MB of flanneld) for the three fields read here. The wire
// format is the API server's: JSON as in core/v1, and protobuf decoded by
// hand (Unmarshal), which skips the fields not listed here without
// allocating them. Images, managed fields and labels, most of a kubelet's
// Node, cost nothing but the skip.
type Node struct {
	metav1.TypeMeta `json:",inline"`
	// Only Name, UID, ResourceVersion and Annotations are read.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NodeSpec   `json:"spec,omitempty"`
	Status            NodeStatus `json:"status,omitempty"`
}

// NodeSpec holds the Node's subnets, as node IPAM sets them.
type NodeSpec struct {
	PodCIDR  string   `json:"podCIDR,omitempty"`
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

// NodeStatus holds the conditions, for NetworkUnavailable.
type NodeStatus struct {
	Conditions []NodeCondition `json:"conditions,omitempty"`
}

// NodeCondition is a condition without its times and message.
type NodeCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// NodeList is a page of Nodes.
type NodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Node `json:"items"`
}

// Pod is the part of a core/v1 Pod we read: the node it runs on.
type Pod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		NodeName string `json:"nodeName,omitempty"`
	} `json:"spec,omitempty"`
}

// coreV1 is the API group version of Nodes and Pods.
var coreV1 = schema.GroupVersion{Version: "v1"}

// AddToScheme registers Node, NodeList and Pod under core/v1, with the
// meta types (Status for errors, WatchEvent, ListOptions): a REST client on
// it reads Nodes as the API serves them, in JSON or protobuf.
func AddToScheme(s *runtime.Scheme) {
	s.AddKnownTypes(coreV1, &Node{}, &NodeList{}, &Pod{})
	metav1.AddToGroupVersion(s, coreV1)
}

// DeepCopyObject implements runtime.Object.
func (n *Node) DeepCopyObject() runtime.Object { return n.DeepCopy() }

// DeepCopy copies the fields a Node holds.
func (n *Node) DeepCopy() *Node {
	if n == nil {
		return nil
	}
	c := &Node{TypeMeta: n.TypeMeta, Spec: NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: slices.Clone(n.Spec.PodCIDRs)},
		Status: NodeStatus{Conditions: slices.Clone(n.Status.Conditions)}}
	n.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return c
}

// DeepCopyObject implements runtime.Object.
func (l *NodeList) DeepCopyObject() runtime.Object {
	c := &NodeList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&c.ListMeta)
	if l.Items != nil {
		c.Items = make([]Node, len(l.Items))
		for i := range l.Items {
			c.Items[i] = *l.Items[i].DeepCopy()
		}
	}
	return c
}

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	c := &Pod{TypeMeta: p.TypeMeta, Spec: p.Spec}
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return c
}

// The protobuf decoders below follow k8s.io/api/core/v1's generated.proto
// and k8s.io/apimachinery's meta/v1 one. apimachinery's protobuf
// serializer strips the envelope and calls Reset and Unmarshal.

// Field numbers.
const (
	fMetadata = 1 // Node, NodeList, Pod
	fSpec     = 2 // Node, Pod
	fStatus   = 3 // Node
	fItems    = 2 // NodeList

	fMetaName            = 1
	fMetaUID             = 5
	fMetaResourceVersion = 6
	fMetaAnnotations     = 12

	fListResourceVersion    = 2
	fListContinue           = 3
	fListRemainingItemCount = 4

	fSpecPodCIDR  = 1
	fSpecPodCIDRs = 7

	fStatusConditions = 4

	fCondType   = 1
	fCondStatus = 2
	fCondReason = 5

	fPodSpecNodeName = 10

	fMapKey   = 1
	fMapValue = 2
)

var errProto = errors.New("invalid protobuf")

// fields calls f for each field of msg; f gets the field's number, wire
// type and, for the length-delimited type, its bytes. Fields f does not
// want are skipped by their length, unread.
func fields(msg []byte, f func(num protowire.Number, typ protowire.Type, b []byte, v uint64) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return fmt.Errorf("%w: %v", errProto, protowire.ParseError(n))
		}
		msg = msg[n:]
		var b []byte
		var v uint64
		switch typ {
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(msg)
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(msg)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", errProto, protowire.ParseError(n))
		}
		msg = msg[n:]
		if err := f(num, typ, b, v); err != nil {
			return err
		}
	}
	return nil
}

// Reset implements apimachinery's protobuf unmarshaler.
func (n *Node) Reset() { *n = Node{} }

// Unmarshal decodes a core/v1 Node.
func (n *Node) Unmarshal(data []byte) error {
	return fields(data, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fMetadata:
			return unmarshalMeta(b, &n.ObjectMeta)
		case fSpec:
			return fields(b, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
				switch {
				case typ != protowire.BytesType:
				case num == fSpecPodCIDR:
					n.Spec.PodCIDR = string(b)
				case num == fSpecPodCIDRs:
					n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, string(b))
				}
				return nil
			})
		case fStatus:
			return fields(b, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
				if typ != protowire.BytesType || num != fStatusConditions {
					return nil
				}
				var c NodeCondition
				err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
					switch {
					case typ != protowire.BytesType:
					case num == fCondType:
						c.Type = string(b)
					case num == fCondStatus:
						c.Status = string(b)
					case num == fCondReason:
						c.Reason = string(b)
					}
					return nil
				})
				n.Status.Conditions = append(n.Status.Conditions, c)
				return err
			})
		}
		return nil
	})
}

// unmarshalMeta decodes the ObjectMeta fields we keep.
func unmarshalMeta(data []byte, m *metav1.ObjectMeta) error {
	return fields(data, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fMetaName:
			m.Name = string(b)
		case fMetaUID:
			m.UID = types.UID(b)
		case fMetaResourceVersion:
			m.ResourceVersion = string(b)
		case fMetaAnnotations:
			var k, v string
			err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
				switch {
				case typ != protowire.BytesType:
				case num == fMapKey:
					k = string(b)
				case num == fMapValue:
					v = string(b)
				}
				return nil
			})
			if m.Annotations == nil {
				m.Annotations = map[string]string{}
			}
			m.Annotations[k] = v
			return err
		}
		return nil
	})
}

// Reset implements apimachinery's protobuf unmarshaler.
func (l *NodeList) Reset() { *l = NodeList{} }

// Unmarshal decodes a core/v1 NodeList.
func (l *NodeList) Unmarshal(data []byte) error {
	return fields(data, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fMetadata:
			return unmarshalListMeta(b, &l.ListMeta)
		case fItems:
			var n Node
			if err := n.Unmarshal(b); err != nil {
				return err
			}
			l.Items = append(l.Items, n)
		}
		return nil
	})
}

// unmarshalListMeta decodes a list's resourceVersion, continue token and
// remaining count.
func unmarshalListMeta(data []byte, m *metav1.ListMeta) error {
	return fields(data, func(num protowire.Number, typ protowire.Type, b []byte, v uint64) error {
		switch {
		case num == fListResourceVersion && typ == protowire.BytesType:
			m.ResourceVersion = string(b)
		case num == fListContinue && typ == protowire.BytesType:
			m.Continue = string(b)
		case num == fListRemainingItemCount && typ == protowire.VarintType:
			c := int64(v)
			m.RemainingItemCount = &c
		}
		return nil
	})
}

// Reset implements apimachinery's protobuf unmarshaler.
func (p *Pod) Reset() { *p = Pod{} }

// Unmarshal decodes a core/v1 Pod's name and node.
func (p *Pod) Unmarshal(data []byte) error {
	return fields(data, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fMetadata:
			return unmarshalMeta(b, &p.ObjectMeta)
		case fSpec:
			return fields(b, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
				if num == fPodSpecNodeName && typ == protowire.BytesType {
					p.Spec.NodeName = string(b)
				}
				return nil
			})
		}
		return nil
	})
}
