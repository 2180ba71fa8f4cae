package ipip

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// The device attributes requested: upstream's (kind ipip, local = the
// interface address, no remote, ttl inherit, tos 0, nopmtudisc, no encap)
// plus our MTU.
func TestDeviceRequest(t *testing.T) {
	d := &device{local: netip.MustParseAddr("172.31.0.1"), mtu: 1480}
	r := d.request()
	if r.Type() != "ipip" || r.Name != "flannel.ipip" || r.MTU != 1480 {
		t.Errorf("kind %s name %s mtu %d", r.Type(), r.Name, r.MTU)
	}
	if !r.Local.Equal(net.ParseIP("172.31.0.1")) || len(r.Local) != 4 || r.Remote != nil || r.Link != 0 {
		t.Errorf("local %v remote %v link %d", r.Local, r.Remote, r.Link)
	}
	if r.Ttl != 0 || r.Tos != 0 || r.PMtuDisc != 0 || r.EncapType != 0 || r.EncapSport != 0 || r.EncapDport != 0 || r.FlowBased || r.Proto != 0 {
		t.Errorf("request %+v", r)
	}
	if r.HardwareAddr != nil || r.MasterIndex != 0 {
		t.Errorf("unexpected link attributes %+v", r.LinkAttrs)
	}
}

func TestDeviceIncompatible(t *testing.T) {
	d := &device{local: netip.MustParseAddr("172.31.0.1"), mtu: 1480}
	tun := func(local, remote string) *netlink.Iptun {
		t := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: DeviceName}, Local: net.ParseIP(local)}
		if remote != "" {
			t.Remote = net.ParseIP(remote)
		}
		return t
	}
	if why, err := d.incompatible(tun("172.31.0.1", "")); why != "" || err != nil {
		t.Errorf("matching device: %q %v", why, err)
	}
	if why, err := d.incompatible(tun("172.31.0.1", "0.0.0.0")); why != "" || err != nil {
		t.Errorf("remote any: %q %v", why, err)
	}
	if why, _ := d.incompatible(tun("172.31.0.9", "")); why != `"flannel.ipip" already exists with incompatible attributes: local=172.31.0.9 remote=<nil>; recreating device` {
		t.Errorf("other local: %q", why)
	}
	if why, _ := d.incompatible(tun("172.31.0.1", "172.31.0.2")); !strings.Contains(why, "remote=172.31.0.2; recreating device") {
		t.Errorf("remote set: %q", why)
	}
	_, err := d.incompatible(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: DeviceName}})
	if err == nil || err.Error() != "flannel.ipip isn't an ipip mode device, please remove device and try again" {
		t.Errorf("dummy: %v", err)
	}
}

func TestNoModuleMessage(t *testing.T) {
	msg := errNoModule.Error()
	for _, want := range []string{"flannel.ipip", "operation not supported", `kernel module "ipip"`, "vxlan, host-gw or wireguard"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("not one line: %q", msg)
	}
}
