// Package etcdv2test writes the v2 store as flannel v0.11 nodes do, so that
// tests can put v0.11 peers into a cluster without v0.11 binaries.
//
// Everything here is taken from the project's etcd v2 contract
// (shared/spec/etcd-v2.md, "spec N"): the keys (1.1), the exact value bytes
// per backend (1.2), TTL 86400 and reservations without one (1.3), create
// with prevExist=false, reuse and renewal as an unconditional set (2.2,
// 2.3). It writes only through package etcdv2, whose requests are the ones
// v0.11's client sends.
package etcdv2test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
)

// DefaultPrefix is v0.11's --etcd-prefix.
const DefaultPrefix = "/coreos.com/network"

// LeaseTTL is what v0.11 sends with every lease write (spec 1.3).
const LeaseTTL = 24 * time.Hour

// ConfigKey is <prefix>/config.
func ConfigKey(prefix string) string { return prefix + "/config" }

// SubnetsKey is <prefix>/subnets, the directory of leases.
func SubnetsKey(prefix string) string { return prefix + "/subnets" }

// SubnetKey is a lease's key: <prefix>/subnets/A.B.C.D-LEN (no IPv6 form in
// v0.11).
func SubnetKey(prefix string, subnet netip.Prefix) string {
	return fmt.Sprintf("%s/subnets/%s-%d", prefix, subnet.Masked().Addr(), subnet.Bits())
}

// Backend types as v0.11 writes them in BackendType. UDP writes none.
const (
	BackendVxlan  = "vxlan"
	BackendHostGW = "host-gw"
	BackendUDP    = "udp"
)

// LeaseValue is v0.11's value of a lease (spec 1.2): the JSON of its
// LeaseAttrs, PublicIP, then BackendType and BackendData when set. vxlan
// has BackendData {"VtepMAC":...} and no VNI; host-gw has no BackendData;
// udp writes no BackendType at all.
//
//	vxlan   {"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}
//	host-gw {"PublicIP":"10.210.0.1","BackendType":"host-gw"}
//	udp     {"PublicIP":"10.210.0.3"}
func LeaseValue(publicIP netip.Addr, backend, vtepMAC string) string {
	// Field order is the struct's, as encoding/json writes it in v0.11.
	type vxlanData struct {
		VtepMAC string
	}
	type attrs struct {
		PublicIP    string
		BackendType string          `json:",omitempty"`
		BackendData json.RawMessage `json:",omitempty"`
	}
	a := attrs{PublicIP: publicIP.String()}
	switch backend {
	case BackendUDP:
	case BackendVxlan:
		a.BackendType = backend
		data, _ := json.Marshal(vxlanData{VtepMAC: vtepMAC})
		a.BackendData = data
	default:
		a.BackendType = backend
	}
	b, _ := json.Marshal(a)
	return string(b)
}

// WriteConfig writes the network config as a v0.11 guide does
// (`etcdctl set <prefix>/config '<json>'`): a value without TTL.
func WriteConfig(ctx context.Context, c *etcdv2.Client, prefix, config string) error {
	if _, err := c.Set(ctx, ConfigKey(prefix), config, etcdv2.SetOptions{}); err != nil {
		return fmt.Errorf("write v2 config: %w", err)
	}
	return nil
}

// Node is a simulated flannel v0.11 node: its leases are written as that
// node would write them.
type Node struct {
	Client   *etcdv2.Client
	Prefix   string     // --etcd-prefix; "" is DefaultPrefix
	PublicIP netip.Addr // the node's --public-ip
	Backend  string     // BackendVxlan, BackendHostGW or BackendUDP
	VtepMAC  string     // flannel.<VNI>'s MAC, for vxlan
}

func (n *Node) prefix() string {
	if n.Prefix == "" {
		return DefaultPrefix
	}
	return n.Prefix
}

// Value is the node's lease value (LeaseValue).
func (n *Node) Value() string { return LeaseValue(n.PublicIP, n.Backend, n.VtepMAC) }

// Key is the key of the node's lease of subnet.
func (n *Node) Key(subnet netip.Prefix) string { return SubnetKey(n.prefix(), subnet) }

// Acquire is v0.11's first allocation of subnet (spec 3 step 5):
// PUT prevExist=false with ttl=86400. A taken subnet is an error with
// etcdv2.CodeNodeExist.
func (n *Node) Acquire(ctx context.Context, subnet netip.Prefix) (*etcdv2.Response, error) {
	r, err := n.Client.Create(ctx, n.Key(subnet), n.Value(), LeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("v0.11 node %s: acquire %s: %w", n.PublicIP, subnet, err)
	}
	return r, nil
}

// Renew is v0.11's renewal, and its reuse of a lease at start (spec 2.2,
// 2.3): an unconditional PUT with ttl=86400 and the node's value. It
// re-creates a deleted key, as v0.11's does.
func (n *Node) Renew(ctx context.Context, subnet netip.Prefix) (*etcdv2.Response, error) {
	r, err := n.Client.Set(ctx, n.Key(subnet), n.Value(), etcdv2.SetOptions{TTL: LeaseTTL})
	if err != nil {
		return nil, fmt.Errorf("v0.11 node %s: renew %s: %w", n.PublicIP, subnet, err)
	}
	return r, nil
}

// Reserve writes subnet as a reservation: the node's value with no TTL,
// which is also what v0.11 writes when it reuses a reservation of its own
// (spec 1.3).
func (n *Node) Reserve(ctx context.Context, subnet netip.Prefix) (*etcdv2.Response, error) {
	r, err := n.Client.Set(ctx, n.Key(subnet), n.Value(), etcdv2.SetOptions{})
	if err != nil {
		return nil, fmt.Errorf("v0.11 node %s: reserve %s: %w", n.PublicIP, subnet, err)
	}
	return r, nil
}

// KeepRenewing renews subnet every interval until ctx ends, as v0.11's
// renewal timer does with a renew margin of 1440 minutes − interval (the
// real one renews after 23 h; spec 2.3 used margin 1439 for one a minute).
// A failed renewal is passed to onError, if set, and retried at the next
// tick, as v0.11 retries after a minute. It returns when ctx ends.
func (n *Node) KeepRenewing(ctx context.Context, subnet netip.Prefix, interval time.Duration, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := n.Renew(ctx, subnet); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
	}
}
