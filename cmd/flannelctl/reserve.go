package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// reservation is what `flannelctl reserve` is asked for.
type reservation struct {
	v4, v6    netip.Prefix
	pub, pub6 netip.Addr
}

func parseSubnetArg(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("invalid subnet %q: want a CIDR such as 10.5.3.0/24", s)
	}
	if p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return p, fmt.Errorf("invalid subnet %q", s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("subnet %s has host bits set: did you mean %s?", p, p.Masked())
	}
	return p, nil
}

func parseIPArg(s string, v6 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return a, fmt.Errorf("invalid public IP %q", s)
	}
	a = a.Unmap()
	if a.Is6() != v6 {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		return a, fmt.Errorf("public IP %s is not an %s address, like the subnet it goes with", a, fam)
	}
	return a, nil
}

// parseReserveArgs reads SUBNET PUBLIC_IP [IPV6_SUBNET PUBLIC_IPV6]. An
// IPv6 SUBNET alone is for IPv6-only networks.
func parseReserveArgs(args []string) (reservation, error) {
	var r reservation
	if len(args) != 2 && len(args) != 4 {
		return r, usageError{"reserve wants SUBNET PUBLIC_IP, and for dual stack IPV6_SUBNET PUBLIC_IPV6 after them"}
	}
	p, err := parseSubnetArg(args[0])
	if err != nil {
		return r, err
	}
	if p.Addr().Is6() {
		if len(args) == 4 {
			return r, fmt.Errorf("the first SUBNET %s is IPv6: for dual stack give the IPv4 subnet and IP first", p)
		}
		r.v6 = p
		r.pub6, err = parseIPArg(args[1], true)
		return r, err
	}
	r.v4 = p
	if r.pub, err = parseIPArg(args[1], false); err != nil {
		return r, err
	}
	if len(args) == 4 {
		if r.v6, err = parseSubnetArg(args[2]); err != nil {
			return r, err
		}
		if !r.v6.Addr().Is6() {
			return r, fmt.Errorf("IPV6_SUBNET %s is not an IPv6 subnet", r.v6)
		}
		if r.pub6, err = parseIPArg(args[3], true); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (r reservation) String() string {
	return subnet.Lease{Subnet: r.v4, IPv6Subnet: r.v6}.String()
}

func (r reservation) holder() string { return joinIPs(r.pub, r.pub6) }

func joinIPs(a, b netip.Addr) string {
	var s []string
	for _, x := range []netip.Addr{a, b} {
		if x.IsValid() {
			s = append(s, x.String())
		}
	}
	if len(s) == 0 {
		return "no public IP"
	}
	return strings.Join(s, "/")
}

// reservePlan is what reserve writes.
type reservePlan struct {
	Key   string // below <prefix>/subnets/
	Value []byte
	// Existing is the same node's key for exactly this subnet: reserving it
	// detaches it from its etcd lease and keeps its value.
	Existing *entry
	NoOp     bool // already a reservation for this node
	Notes    []string
}

// checkFamilyFits says why subnet p cannot be a lease of one family.
func checkFamilyFits(on bool, fam, netName, lenName string, p, network netip.Prefix, l int, min, max netip.Addr) error {
	switch {
	case !on && p.IsValid():
		return fmt.Errorf("the network config does not enable %s: cannot reserve %s", fam, p)
	case !on:
		return nil
	case !p.IsValid():
		if fam == "IPv6" {
			return fmt.Errorf("the network config enables IPv6: give IPV6_SUBNET PUBLIC_IPV6 after SUBNET PUBLIC_IP")
		}
		return fmt.Errorf("the network config enables IPv4: SUBNET must be an IPv4 subnet")
	case !network.Contains(p.Addr()) || p.Bits() < network.Bits():
		return fmt.Errorf("subnet %s is outside %s %s", p, netName, network)
	case p.Bits() != l:
		return fmt.Errorf("subnet %s is a /%d but the network config's %s is %d", p, p.Bits(), lenName, l)
	case p.Addr().Compare(min) < 0 || p.Addr().Compare(max) > 0:
		return fmt.Errorf("subnet %s is outside the allocation range %s (%sMin) .. %s (%sMax)", p, min, strings.TrimSuffix(lenName, "Len"), max, strings.TrimSuffix(lenName, "Len"))
	}
	return nil
}

// planReserve checks a reservation against the config and the keys in
// etcd: it must be a subnet flanneld could lease, and may overlap no lease
// or reservation of another node.
func planReserve(cfg *subnet.Config, es []entry, r reservation) (reservePlan, error) {
	if err := checkFamilyFits(cfg.EnableIPv4, "IPv4", "Network", "SubnetLen", r.v4, cfg.Network, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax); err != nil {
		return reservePlan{}, err
	}
	if err := checkFamilyFits(cfg.EnableIPv6, "IPv6", "IPv6Network", "IPv6SubnetLen", r.v6, cfg.IPv6Network, cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax); err != nil {
		return reservePlan{}, err
	}
	plan := reservePlan{Key: subnet.MakeKey(r.v4, r.v6)}
	sameNode := func(e entry) bool {
		a := e.Lease.Attrs
		return e.Err == nil && (!r.pub.IsValid() || a.PublicIP == r.pub) && (!r.pub6.IsValid() || a.PublicIPv6 == r.pub6)
	}
	for i, e := range es {
		l := e.Lease
		if !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() {
			continue // the key itself does not parse; flanneld ignores it too
		}
		ov := r.v4.IsValid() && l.Subnet.IsValid() && r.v4.Overlaps(l.Subnet) ||
			r.v6.IsValid() && l.IPv6Subnet.IsValid() && r.v6.Overlaps(l.IPv6Subnet)
		kind := "lease"
		if e.EtcdLease == 0 {
			kind = "reservation"
		}
		if !ov {
			if sameNode(e) {
				plan.Notes = append(plan.Notes, fmt.Sprintf("%s also holds the %s %s; flanneld uses the first of a node's keys in etcd order, so release the one it should not use",
					r.holder(), kind, l))
			}
			continue
		}
		if l.Subnet == r.v4 && l.IPv6Subnet == r.v6 && sameNode(e) {
			if e.EtcdLease == 0 {
				plan.NoOp = true
			}
			plan.Existing = &es[i]
			continue
		}
		holder := "an unreadable value"
		if e.Err == nil {
			holder = joinIPs(l.Attrs.PublicIP, l.Attrs.PublicIPv6)
		}
		return reservePlan{}, fmt.Errorf("subnet %s overlaps the %s %s of %s (key %s): release it first if that node is gone",
			r, kind, l, holder, e.Key)
	}
	if plan.Existing != nil {
		// Keep what the node advertises (its VtepMAC) so peers keep routing
		// to it; only the etcd lease goes.
		plan.Value = plan.Existing.Value
		return plan, nil
	}
	v, err := subnet.EncodeAttrs(subnet.LeaseAttrs{PublicIP: r.pub, PublicIPv6: r.pub6})
	if err != nil {
		return reservePlan{}, err
	}
	plan.Value = v
	return plan, nil
}

func cmdReserve(ctx context.Context, a *app, o *options, _ *cmdFlags, args []string) error {
	r, err := parseReserveArgs(args)
	if err != nil {
		return err
	}
	s, err := connect(o)
	if err != nil {
		return err
	}
	defer s.Close()
	cfg, _, err := s.m.GetConfig(ctx)
	if err != nil {
		return err
	}
	es, err := s.list(ctx)
	if err != nil {
		return err
	}
	plan, err := planReserve(cfg, es, r)
	if err != nil {
		return err
	}
	for _, n := range plan.Notes {
		fmt.Fprintln(a.stderr, "note: "+n)
	}
	key := s.m.SubnetsPrefix() + plan.Key
	if plan.NoOp {
		fmt.Fprintf(a.stdout, "%s is already reserved for %s (%s)\n", r, r.holder(), key)
		return nil
	}
	// Write only if the key is as we read it: absent, or the same
	// revision of the node's own key.
	cond := clientv3.Compare(clientv3.Version(key), "=", 0)
	if plan.Existing != nil {
		cond = clientv3.Compare(clientv3.ModRevision(key), "=", plan.Existing.ModRevision)
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(cond).Then(clientv3.OpPut(key, string(plan.Value))).Commit()
	if err != nil {
		return fmt.Errorf("write %s on etcd %s: %w", key, s.endpoints(), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s changed while flannelctl was writing it; run the command again", key)
	}
	if plan.Existing != nil {
		fmt.Fprintf(a.stdout, "turned the lease %s of %s into a reservation (%s has no TTL now)\n", r, r.holder(), key)
		return nil
	}
	fmt.Fprintf(a.stdout, "reserved %s for %s: %s = %s\n", r, r.holder(), key, plan.Value)
	return nil
}

// findKey returns the entry a release target names: a subnet (IPv4, or
// IPv6 for IPv6-only keys) or a key name such as 10.5.3.0-24.
func findKey(es []entry, subnetsPrefix, target string) (*entry, error) {
	p, perr := netip.ParsePrefix(target)
	var hits []*entry
	for i, e := range es {
		name := strings.TrimPrefix(e.Key, subnetsPrefix)
		switch {
		case name == target || e.Key == target:
		case perr == nil && p.Addr().Is4() && e.Lease.Subnet == p:
		case perr == nil && p.Addr().Is6() && e.Lease.IPv6Subnet == p:
		default:
			continue
		}
		hits = append(hits, &es[i])
	}
	switch len(hits) {
	case 0:
		if perr == nil && p.Masked() != p {
			return nil, fmt.Errorf("subnet %s has host bits set: did you mean %s?", p, p.Masked())
		}
		return nil, fmt.Errorf("no lease or reservation for %s below %s", target, subnetsPrefix)
	case 1:
		return hits[0], nil
	}
	var keys []string
	for _, h := range hits {
		keys = append(keys, h.Key)
	}
	return nil, fmt.Errorf("%s matches %d keys (%s): name the key", target, len(hits), strings.Join(keys, ", "))
}

// releaseBlocked says why a key must not be deleted without --force: it has
// a live etcd lease, so a running flanneld holds it and would write it back.
func releaseBlocked(e *entry, ttl int64, ok bool) error {
	if e.EtcdLease == 0 || ok && ttl < 0 {
		return nil // a reservation, or a lease etcd already dropped
	}
	holder := "its node"
	if e.Err == nil {
		holder = "the node with public IP " + joinIPs(e.Lease.Attrs.PublicIP, e.Lease.Attrs.PublicIPv6)
	}
	left := ""
	if ok {
		left = fmt.Sprintf(", expiring in %s", time.Duration(ttl)*time.Second)
	}
	return fmt.Errorf("%s is a live lease (etcd lease %x%s), not a reservation: flanneld on %s would re-create it while it runs. If that node is gone or its flanneld is stopped for good, pass --force",
		e.Key, e.EtcdLease, left, holder)
}

func cmdRelease(ctx context.Context, a *app, o *options, c *cmdFlags, args []string) error {
	s, err := connect(o)
	if err != nil {
		return err
	}
	defer s.Close()
	es, err := s.list(ctx)
	if err != nil {
		return err
	}
	e, err := findKey(es, s.m.SubnetsPrefix(), args[0])
	if err != nil {
		return err
	}
	if e.EtcdLease != 0 {
		ttls, err := s.ttls(ctx, []entry{*e})
		if err != nil {
			return err
		}
		ttl, ok := ttls[e.EtcdLease]
		if err := releaseBlocked(e, ttl, ok); err != nil {
			if !c.force {
				return err
			}
			fmt.Fprintf(a.stderr, "warning: deleting a live lease; a running flanneld on that node will acquire a subnet again\n")
		}
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(e.Key), "=", e.ModRevision)).
		Then(clientv3.OpDelete(e.Key)).Commit()
	if err != nil {
		return fmt.Errorf("delete %s on etcd %s: %w", e.Key, s.endpoints(), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s changed while flannelctl was deleting it; run the command again", e.Key)
	}
	kind := "lease"
	if e.EtcdLease == 0 {
		kind = "reservation"
	}
	fmt.Fprintf(a.stdout, "released the %s %s (%s)\n", kind, e.Key, string(e.Value))
	return nil
}
