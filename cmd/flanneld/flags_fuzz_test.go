package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzParseConfig feeds random command lines and FLANNELD_* environments to
// parseConfig. args holds one argument per line; env holds NAME=value lines.
// It never panics; every refusal is explained on stderr and maps to exit 0
// (help) or 2; every accepted config passes validation and has usable etcd
// endpoints; the password never shows up in what is printed.
func FuzzParseConfig(f *testing.F) {
	f.Add("--etcd-endpoints=http://a:2379,http://b:2379\n--ip-masq\n-iface\neth1", "FLANNELD_ETCD_PREFIX=/kubernetes/network\nFLANNELD_PUBLIC_IP=192.168.1.5")
	f.Add("--subnet-lease-ttl=15s\n--reconcile-period=100ms\n--healthz-port=8471", "FLANNELD_ETCD_PASSWORD=s3cret\nFLANNELD_ETCD_USERNAME=root")
	f.Add("--public-ip=1.2.3\n--v=9", "FLANNELD_IP_MASQ=maybe")
	f.Add("-h", "")
	f.Add("--version\n--bogus", "")
	f.Add("--etcd-password=hunter2\n--iptables-resync=0", "FLANNELD_SUBNET_LEASE_RENEW_MARGIN=1440")
	f.Add("--kube-subnet-mgr\nextra", "FLANNELD_IFACE=eth9,eth8\nFLANNELD_ETCD_CA_FILE=/ca.pem")
	f.Add("--etcd-endpoints=,,\n--public-ipv6=::ffff:1.2.3.4", "FLANNELD_HEALTHZ_PORT=-1\nFLANNELD_SUBNET_LEASE_TTL=9s")
	f.Fuzz(func(t *testing.T, args, envText string) {
		var argv []string
		if args != "" {
			argv = strings.Split(args, "\n")
		}
		vars := map[string]string{}
		for _, line := range strings.Split(envText, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		var stderr bytes.Buffer
		c, err := parseConfig(argv, func(k string) string { return vars[k] }, &stderr)
		if err != nil {
			if stderr.Len() == 0 {
				t.Fatalf("refused %q %q silently: %v", argv, vars, err)
			}
			if code := exitCode(err); code != 0 && code != 2 {
				t.Fatalf("exit code %d", code)
			}
			return
		}
		if c.Version {
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		if len(c.Etcd.Endpoints) == 0 {
			t.Fatal("no etcd endpoints")
		}
		for _, e := range c.Etcd.Endpoints {
			if strings.TrimSpace(e) != e || e == "" {
				t.Fatalf("endpoint %q", e)
			}
		}
		if c.LeaseTTL < 10*time.Second || c.IPTablesResync <= 0 {
			t.Fatalf("accepted ttl %s, resync %d", c.LeaseTTL, c.IPTablesResync)
		}
		// What the daemon logs of its etcd settings does not depend on the
		// password at all.
		other := c.Etcd
		other.Password = "x" + c.Etcd.Password
		if c.Etcd.Password != "" && c.Etcd.String() != other.String() {
			t.Fatalf("the logged etcd settings show the password: %s", c.Etcd.String())
		}
	})
}
