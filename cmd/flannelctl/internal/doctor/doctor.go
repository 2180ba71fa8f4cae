// Package doctor checks one flannel node: it compares what the node holds
// (subnet.env, kernel devices, routes, neighbour and FDB entries, the
// masquerade rules, the CNI plugins and config) with what the network config
// and the leases in etcd require, and says how to fix each difference.
//
// The comparison (Run) is pure: Gather reads the node into Facts once, and
// Run works on Facts, the config and the leases, so it is tested with
// hand-built facts. The wanted state follows the daemon's own rules
// (backend/vxlan, backend/hostgw, pkg/firewall) and upstream's conventions,
// so a node of either implementation can be checked. Route protocols are
// not compared: upstream installs "proto boot" routes, flanneld-ng "proto 45".
package doctor

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/flannelng/flannel/subnet"
)

// Status of one check.
type Status int

const (
	OK   Status = iota
	Fail        // something a node needs is missing or wrong
	Skip        // not checked (nothing to check, or it cannot be checked here)
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Fail:
		return "FAIL"
	}
	return "skip"
}

// Result is one check: a one-line statement and, for a failure, a one-line fix.
type Result struct {
	Status Status
	Text   string
	Fix    string
}

// Input is everything Run compares.
type Input struct {
	SubnetFile string
	Env        subnet.Env
	EnvErr     error // reading or parsing subnet.env failed

	// EtcdErr is set when etcd could not be asked at all (unreachable,
	// TLS or authentication failure); Config is nil then.
	EtcdErr error

	ConfigKey string
	Config    *subnet.Config // nil when ConfigErr or EtcdErr is set
	ConfigErr error          // the config is missing or invalid

	Leases    []subnet.Lease
	LeasesErr error
	// Reservations holds the keys (subnet.Lease.Key) of leases without
	// an etcd lease: reservations that never expire.
	Reservations map[string]bool

	// PublicIP is --public-ip (FLANNELD_PUBLIC_IP); invalid when not given.
	PublicIP netip.Addr

	Facts Facts
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return r.Status == Fail })
}

type report struct{ rs []Result }

func (r *report) ok(format string, a ...any) {
	r.rs = append(r.rs, Result{Status: OK, Text: fmt.Sprintf(format, a...)})
}

func (r *report) skip(format string, a ...any) {
	r.rs = append(r.rs, Result{Status: Skip, Text: fmt.Sprintf(format, a...)})
}

func (r *report) fail(fix string, format string, a ...any) {
	r.rs = append(r.rs, Result{Status: Fail, Text: fmt.Sprintf(format, a...), Fix: fix})
}

func itoa(i int) string { return strconv.Itoa(i) }

// Run compares the node with what the config and leases require.
func Run(in Input) []Result {
	r := &report{}
	envOK := checkEnvFile(r, in)
	if in.EtcdErr != nil {
		r.fail("check that this node reaches etcd with flanneld's --etcd-* flags (endpoints, TLS files, credentials), e.g. by running flannelctl with flanneld's EnvironmentFile",
			"etcd: %v", in.EtcdErr)
	} else if in.ConfigErr != nil || in.Config == nil {
		err := in.ConfigErr
		if err == nil {
			err = fmt.Errorf("no network config")
		}
		r.fail("write a valid config with `flannelctl config set FILE` (check it first with `flannelctl config validate FILE`)",
			"network config %s: %v", in.ConfigKey, err)
	} else {
		r.ok("network config %s: backend %s, %s", in.ConfigKey, in.Config.BackendType, networks(in.Config))
	}
	if in.LeasesErr != nil {
		r.fail("check that etcd is reachable from this node with the flags flanneld uses", "list leases: %v", in.LeasesErr)
	}
	checkForwarding(r, in)
	if in.Config != nil && in.LeasesErr == nil {
		own := findOwn(r, in, envOK)
		if own != nil {
			if envOK {
				checkEnvAgainstLease(r, in, *own)
			}
			checkDataPlane(r, in, *own, envOK)
			checkMasquerade(r, in, *own, envOK)
		}
	}
	checkCNI(r, in.Facts.CNI)
	return r.rs
}

func networks(c *subnet.Config) string {
	s := ""
	if c.EnableIPv4 {
		s = "Network " + c.Network.String()
	}
	if c.EnableIPv6 {
		if s != "" {
			s += ", "
		}
		s += "IPv6Network " + c.IPv6Network.String()
	}
	return s
}

func checkEnvFile(r *report, in Input) bool {
	if in.EnvErr != nil {
		fix := "start flanneld on this node (it writes the file once its lease is held), or pass the --subnet-file it uses"
		if !subnet.IsNotExist(in.EnvErr) {
			fix = "delete the file and restart flanneld so it rewrites it"
		}
		r.fail(fix, "subnet.env %s: %v", in.SubnetFile, in.EnvErr)
		return false
	}
	e := in.Env
	if !e.Subnet.IsValid() && !e.IPv6Subnet.IsValid() {
		r.fail("delete the file and restart flanneld so it rewrites it", "subnet.env %s holds neither FLANNEL_SUBNET nor FLANNEL_IPV6_SUBNET", in.SubnetFile)
		return false
	}
	desc := ""
	if e.Subnet.IsValid() {
		desc += fmt.Sprintf("subnet %s (network %s), ", e.Subnet, e.Network)
	}
	if e.IPv6Subnet.IsValid() {
		desc += fmt.Sprintf("IPv6 subnet %s (network %s), ", e.IPv6Subnet, e.IPv6Network)
	}
	r.ok("subnet.env %s: %sMTU %d, ipmasq %t", in.SubnetFile, desc, e.MTU, e.IPMasq)
	return true
}

func checkForwarding(r *report, in Input) {
	f := in.Facts
	v4, v6 := true, false
	if in.Config != nil {
		v4, v6 = in.Config.EnableIPv4, in.Config.EnableIPv6
	}
	for _, c := range []struct {
		on    bool
		val   *bool
		name  string
		sysfs string
	}{{v4, f.Forward4, "net.ipv4.ip_forward", "net.ipv4.ip_forward"}, {v6, f.Forward6, "net.ipv6.conf.all.forwarding", "net.ipv6.conf.all.forwarding"}} {
		switch {
		case !c.on || c.val == nil:
		case *c.val:
			r.ok("%s is 1", c.name)
		default:
			r.fail(fmt.Sprintf("sysctl -w %s=1 (and persist it in /etc/sysctl.d/)", c.sysfs),
				"%s is 0: this node does not forward pod traffic", c.name)
		}
	}
}

// findOwn identifies this node's lease: by --public-ip, else by a public IP
// configured on this node (what flanneld uses without --public-ip), else by
// the subnet in subnet.env.
func findOwn(r *report, in Input, envOK bool) *subnet.Lease {
	byEnv := func(cands []int) int {
		for _, i := range cands {
			l := in.Leases[i]
			if envOK && (in.Env.Subnet.IsValid() && l.Subnet == in.Env.Subnet || in.Env.IPv6Subnet.IsValid() && l.IPv6Subnet == in.Env.IPv6Subnet) {
				return i
			}
		}
		return -1
	}
	var cands []int
	how := ""
	if in.PublicIP.IsValid() {
		for i, l := range in.Leases {
			if l.Attrs.PublicIP == in.PublicIP || l.Attrs.PublicIPv6 == in.PublicIP {
				cands = append(cands, i)
			}
		}
		how = "--public-ip " + in.PublicIP.String()
		if len(cands) == 0 {
			r.fail("start flanneld on this node (it acquires a lease), or check --public-ip",
				"no lease in etcd has public IP %s (--public-ip)", in.PublicIP)
			return nil
		}
	} else if in.Facts.KernelErr == nil {
		locals := in.Facts.localAddrs()
		for i, l := range in.Leases {
			if l.Attrs.PublicIP.IsValid() && locals[l.Attrs.PublicIP] > 0 || l.Attrs.PublicIPv6.IsValid() && locals[l.Attrs.PublicIPv6] > 0 {
				cands = append(cands, i)
			}
		}
		how = "public IP on this node"
	}
	if len(cands) == 0 && envOK {
		for i, l := range in.Leases {
			if in.Env.Subnet.IsValid() && l.Subnet == in.Env.Subnet || in.Env.IPv6Subnet.IsValid() && l.IPv6Subnet == in.Env.IPv6Subnet {
				cands = append(cands, i)
			}
		}
		how = "subnet in subnet.env"
		if len(cands) == 0 {
			r.fail("restart flanneld on this node: it acquires a lease and rewrites subnet.env (check that it reaches etcd)",
				"no lease in etcd holds %s from subnet.env, and none has a public IP of this node", envSubnets(in.Env))
			return nil
		}
	}
	switch {
	case len(cands) == 0:
		r.fail("pass --public-ip=<this node's public IP>, or start flanneld on this node",
			"cannot tell which lease is this node's: no lease has a public IP of this node and subnet.env is unusable")
		return nil
	case len(cands) > 1:
		pick := byEnv(cands)
		var keys []string
		for _, i := range cands {
			keys = append(keys, in.Leases[i].String())
		}
		r.fail("release the leases this node no longer uses with `flannelctl release SUBNET`",
			"%d leases match this node (%s): %v", len(cands), how, keys)
		if pick < 0 {
			return nil
		}
		cands = []int{pick}
	}
	own := in.Leases[cands[0]]
	kind := "lease"
	if in.Reservations[own.Key()] {
		kind = "reservation"
	}
	r.ok("our %s: %s, public IP %s, backend %s (found by %s)", kind, own, ipOrNone(own.Attrs.PublicIP, own.Attrs.PublicIPv6), orNone(own.Attrs.BackendType), how)
	return &own
}

func envSubnets(e subnet.Env) string {
	s := ""
	if e.Subnet.IsValid() {
		s = e.Subnet.String()
	}
	if e.IPv6Subnet.IsValid() {
		if s != "" {
			s += " and "
		}
		s += e.IPv6Subnet.String()
	}
	return s
}

func ipOrNone(a, b netip.Addr) string {
	switch {
	case a.IsValid() && b.IsValid():
		return a.String() + "/" + b.String()
	case a.IsValid():
		return a.String()
	case b.IsValid():
		return b.String()
	}
	return "none"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// gatewayForm is how subnet.env writes a subnet: first address and length.
func gatewayForm(p netip.Prefix) string {
	return netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits()).String()
}

func checkEnvAgainstLease(r *report, in Input, own subnet.Lease) {
	cfg, e := in.Config, in.Env
	restart := "the network config changed after flanneld started: restart flanneld on every node"
	rewrite := fmt.Sprintf("restart flanneld so it rewrites %s, then recreate the pods started since (their addresses come from the wrong subnet)", in.SubnetFile)
	good := true
	fam := func(on bool, envNet, cfgNet, envSub, leaseSub netip.Prefix, netKey, subKey, cfgName string) {
		switch {
		case !on && envSub.IsValid():
			good = false
			r.fail(restart, "subnet.env has %s=%s but the network config disables that family", subKey, gatewayForm(envSub))
		case !on:
		case envNet != cfgNet:
			good = false
			r.fail(restart, "subnet.env has %s=%s but the network config has %s %s", netKey, envNet, cfgName, cfgNet)
		case envSub.Masked() != leaseSub.Masked():
			good = false
			sub := "nothing"
			if envSub.IsValid() {
				sub = gatewayForm(envSub)
			}
			r.fail(rewrite, "subnet.env has %s=%s but our lease in etcd is %s", subKey, sub, leaseSub)
		}
	}
	fam(cfg.EnableIPv4, e.Network, cfg.Network, e.Subnet, own.Subnet, "FLANNEL_NETWORK", "FLANNEL_SUBNET", "Network")
	fam(cfg.EnableIPv6, e.IPv6Network, cfg.IPv6Network, e.IPv6Subnet, own.IPv6Subnet, "FLANNEL_IPV6_NETWORK", "FLANNEL_IPV6_SUBNET", "IPv6Network")
	if good {
		r.ok("subnet.env matches our lease %s and the network config", own)
	}
}
