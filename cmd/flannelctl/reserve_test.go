package main

import (
	"strings"
	"testing"

	"github.com/flannelng/flannel/subnet"
)

func cfgOf(t *testing.T, s string) *subnet.Config {
	t.Helper()
	c, err := subnet.ParseConfig([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPlanReserve(t *testing.T) {
	cfg := cfgOf(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	es := sampleEntries()
	cases := []struct {
		args []string
		err  string
	}{
		{[]string{"10.5.3.0/24", "192.168.50.7"}, "subnet 10.5.3.0/24 overlaps the reservation 10.5.3.0/24 of 192.168.50.9 (key /coreos.com/network/subnets/10.5.3.0-24)"},
		{[]string{"10.5.4.0/24", "192.168.50.7"}, "subnet 10.5.4.0/24 overlaps the lease 10.5.4.0/24 of 192.168.50.4"},
		{[]string{"10.5.5.0/24", "192.168.50.7"}, "overlaps the lease 10.5.5.0/24 of an unreadable value"},
		{[]string{"10.6.3.0/24", "192.168.50.7"}, "subnet 10.6.3.0/24 is outside Network 10.5.0.0/16"},
		{[]string{"10.0.0.0/8", "192.168.50.7"}, "subnet 10.0.0.0/8 is outside Network 10.5.0.0/16"},
		{[]string{"10.5.6.0/25", "192.168.50.7"}, "subnet 10.5.6.0/25 is a /25 but the network config's SubnetLen is 24"},
		{[]string{"10.5.0.0/24", "192.168.50.7"}, "subnet 10.5.0.0/24 is outside the allocation range 10.5.1.0 (SubnetMin) .. 10.5.255.0 (SubnetMax)"},
		{[]string{"10.5.6.7/24", "192.168.50.7"}, "subnet 10.5.6.7/24 has host bits set: did you mean 10.5.6.0/24?"},
		{[]string{"10.5.6.0", "192.168.50.7"}, `invalid subnet "10.5.6.0": want a CIDR`},
		{[]string{"10.5.6.0/24", "fd00::7"}, "public IP fd00::7 is not an IPv4 address"},
		{[]string{"10.5.6.0/24", "nope"}, `invalid public IP "nope"`},
		{[]string{"fd00::/64", "fd00::7"}, "the network config enables IPv4: SUBNET must be an IPv4 subnet"},
		{[]string{"10.5.6.0/24", "192.168.50.7", "fd00::/64", "fd00::7"}, "the network config does not enable IPv6"},
	}
	for _, c := range cases {
		r, err := parseReserveArgs(c.args)
		if err == nil {
			_, err = planReserve(cfg, es, r)
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want %q", c.args, err, c.err)
		}
	}

	r, _ := parseReserveArgs([]string{"10.5.6.0/24", "192.168.50.7"})
	plan, err := planReserve(cfg, es, r)
	if err != nil || plan.Key != "10.5.6.0-24" || string(plan.Value) != `{"PublicIP":"192.168.50.7","PublicIPv6":null}` ||
		plan.Existing != nil || plan.NoOp || len(plan.Notes) != 0 {
		t.Errorf("new reservation: %+v %v", plan, err)
	}
	// A node's own live lease becomes a reservation and keeps its value.
	r, _ = parseReserveArgs([]string{"10.5.4.0/24", "192.168.50.4"})
	plan, err = planReserve(cfg, es, r)
	if err != nil || plan.Existing == nil || plan.Existing.Key != subnetsPrefix+"10.5.4.0-24" || string(plan.Value) != string(es[3].Value) || plan.NoOp {
		t.Errorf("own lease: %+v %v", plan, err)
	}
	r, _ = parseReserveArgs([]string{"10.5.3.0/24", "192.168.50.9"})
	if plan, err = planReserve(cfg, es, r); err != nil || !plan.NoOp {
		t.Errorf("existing reservation: %+v %v", plan, err)
	}
	// A second key for a node is allowed, with a note.
	r, _ = parseReserveArgs([]string{"10.5.7.0/24", "192.168.50.4"})
	if plan, err = planReserve(cfg, es, r); err != nil || len(plan.Notes) != 1 ||
		!strings.Contains(plan.Notes[0], "192.168.50.4 also holds the lease 10.5.4.0/24") {
		t.Errorf("second key: %+v %v", plan, err)
	}
}

func TestPlanReserveDualStack(t *testing.T) {
	cfg := cfgOf(t, `{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10::/56","Backend":{"Type":"vxlan"}}`)
	r, err := parseReserveArgs([]string{"10.5.6.0/24", "192.168.50.7", "fd00:10:0:6::/64", "fd00:50::7"})
	if err != nil {
		t.Fatal(err)
	}
	es := []entry{ent("10.5.7.0-24&fd00:10:0:6::-64", `{"PublicIP":"192.168.50.8","PublicIPv6":"fd00:50::8"}`, 0)}
	if _, err := planReserve(cfg, es, r); err == nil || !strings.Contains(err.Error(), "overlaps the reservation 10.5.7.0/24+fd00:10:0:6::/64 of 192.168.50.8/fd00:50::8") {
		t.Errorf("v6 overlap: %v", err)
	}
	plan, err := planReserve(cfg, nil, r)
	if err != nil || plan.Key != "10.5.6.0-24&fd00:10:0:6::-64" || string(plan.Value) != `{"PublicIP":"192.168.50.7","PublicIPv6":"fd00:50::7"}` {
		t.Errorf("dual stack: %+v %v", plan, err)
	}
	r, _ = parseReserveArgs([]string{"10.5.6.0/24", "192.168.50.7"})
	if _, err := planReserve(cfg, nil, r); err == nil || !strings.Contains(err.Error(), "the network config enables IPv6: give IPV6_SUBNET PUBLIC_IPV6") {
		t.Errorf("v4 only in dual stack: %v", err)
	}
	v6only := cfgOf(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/56","Backend":{"Type":"vxlan"}}`)
	r, _ = parseReserveArgs([]string{"fd00:10:0:6::/64", "fd00:50::7"})
	plan, err = planReserve(v6only, nil, r)
	if err != nil || plan.Key != "0.0.0.0-0&fd00:10:0:6::-64" || string(plan.Value) != `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:50::7"}` {
		t.Errorf("v6 only: %+v %v", plan, err)
	}
}

func TestFindKeyAndRelease(t *testing.T) {
	es := sampleEntries()
	for target, key := range map[string]string{
		"10.5.3.0/24":                 "10.5.3.0-24",
		"10.5.4.0-24":                 "10.5.4.0-24",
		subnetsPrefix + "garbage":     "garbage",
		"garbage":                     "garbage",
		subnetsPrefix + "10.5.5.0-24": "10.5.5.0-24",
	} {
		e, err := findKey(es, subnetsPrefix, target)
		if err != nil || e.Key != subnetsPrefix+key {
			t.Errorf("%s: %v %v", target, e, err)
		}
	}
	if _, err := findKey(es, subnetsPrefix, "10.5.9.0/24"); err == nil || err.Error() != "no lease or reservation for 10.5.9.0/24 below /coreos.com/network/subnets/" {
		t.Errorf("absent: %v", err)
	}
	if _, err := findKey(es, subnetsPrefix, "10.5.3.1/24"); err == nil || !strings.Contains(err.Error(), "did you mean 10.5.3.0/24") {
		t.Errorf("host bits: %v", err)
	}

	res, lease := &es[1], &es[3]
	if err := releaseBlocked(res, 0, false); err != nil {
		t.Errorf("a reservation is blocked: %v", err)
	}
	if err := releaseBlocked(lease, -1, true); err != nil {
		t.Errorf("an expired lease is blocked: %v", err)
	}
	err := releaseBlocked(lease, 3600, true)
	if err == nil || err.Error() != "/coreos.com/network/subnets/10.5.4.0-24 is a live lease (etcd lease 694d9b7f1f4a7c05, expiring in 1h0m0s), not a reservation: "+
		"flanneld on the node with public IP 192.168.50.4 would re-create it while it runs. If that node is gone or its flanneld is stopped for good, pass --force" {
		t.Errorf("live lease: %v", err)
	}
}
