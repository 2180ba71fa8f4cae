package dist

import "strings"

// flagKind tells how a documented default is compared.
type flagKind int

const (
	kindString flagKind = iota
	kindBool
	kindInt
	kindDuration
)

// daemonFlag is one flanneld flag as the packaging files document it.
type daemonFlag struct {
	name string
	def  string
	kind flagKind
}

// daemonFlags is flanneld's flag set: upstream's (flannel-daemon.md 1.2),
// our aliases --etcd-{ca,cert,key}-file and our additions
// --subnet-lease-ttl and --reconcile-period.
//
// TODO(lead): derive this from the daemon's own FlagSet once cmd/flanneld
// exposes it, so a new flag cannot be left out of flanneld.env.
var daemonFlags = []daemonFlag{
	{"etcd-endpoints", "http://127.0.0.1:4001,http://127.0.0.1:2379", kindString},
	{"etcd-prefix", "/coreos.com/network", kindString},
	{"etcd-keyfile", "", kindString},
	{"etcd-certfile", "", kindString},
	{"etcd-cafile", "", kindString},
	{"etcd-key-file", "", kindString},
	{"etcd-cert-file", "", kindString},
	{"etcd-ca-file", "", kindString},
	{"etcd-username", "", kindString},
	{"etcd-password", "", kindString},
	{"iface", "", kindString},
	{"iface-regex", "", kindString},
	{"iface-can-reach", "", kindString},
	{"subnet-file", "/run/flannel/subnet.env", kindString},
	{"public-ip", "", kindString},
	{"public-ipv6", "", kindString},
	{"subnet-lease-renew-margin", "60", kindInt},
	{"subnet-lease-ttl", "24h", kindDuration},
	{"reconcile-period", "10s", kindDuration},
	{"ip-masq", "false", kindBool},
	{"ip-masq-fully-random-disable", "false", kindBool},
	{"kube-subnet-mgr", "false", kindBool},
	{"kube-api-url", "", kindString},
	{"kube-annotation-prefix", "flannel.alpha.coreos.com", kindString},
	{"kubeconfig-file", "", kindString},
	{"version", "false", kindBool},
	{"healthz-ip", "0.0.0.0", kindString},
	{"healthz-port", "0", kindInt},
	{"iptables-resync", "5", kindInt},
	{"iptables-forward-rules", "true", kindBool},
	{"ip-blackhole-route", "false", kindBool},
	{"net-config-path", "/etc/kube-flannel/net-conf.json", kindString},
	{"set-node-network-unavailable", "true", kindBool},
	{"v", "0", kindInt},
	{"vmodule", "", kindString},
	{"log_backtrace_at", "", kindString},
}

// envFlagExempt are flags with no environment variable in flanneld.env:
// FLANNELD_VERSION is read only after the --version check, so it does
// nothing (flannel-daemon.md 1.3).
var envFlagExempt = map[string]bool{"version": true}

// envName is the variable flanneld reads for a flag: FLANNELD_ + the name
// upper-cased with "-" replaced by "_".
func envName(flag string) string {
	return "FLANNELD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// lookupFlag returns the flag called name.
func lookupFlag(name string) (daemonFlag, bool) {
	for _, f := range daemonFlags {
		if f.name == name {
			return f, true
		}
	}
	return daemonFlag{}, false
}
