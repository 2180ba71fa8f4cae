package keyspace

import (
	"fmt"
	"strings"
	"time"
)

// Finding is one line of doctor's keyspace report: a fact, or with
// Problem set a problem and its Fix.
type Finding struct {
	Problem bool
	Text    string
	Fix     string
}

// lapsingBelow: a v2 copy written by a --etcd-api=both node is renewed
// when less than about 12 h of its 24 h remain (spec 8.1), so one with
// less than this left is no longer renewed: its node runs --etcd-api=v3
// (spec 8.3 step 5) or is gone. An hour of slack covers an hour of failed
// renewals, which spec 8.4 wants noticed anyway.
const lapsingBelow = 11 * time.Hour

// Assess says which keyspaces a cluster uses and where a migration from
// flannel v0.11 stands (spec 8.3 steps 0 to 6), and flags what breaks
// one: configs that differ, split claims, copies that disagree, v3-only
// leases while v0.11 nodes run, leases that overlap across keyspaces, and
// keys under <prefix>/subnets in v2 that are not leases.
//
// v2Served is false when etcd does not serve the v2 API; v2 is ignored
// then. The first finding is always the stage.
func Assess(prefix string, v2Served bool, v2, v3 Store) []Finding {
	if !v2Served {
		return []Finding{{Text: "keyspaces: v3 only (etcd does not serve the v2 API)"}}
	}
	a := newAssessment(prefix, v2, v3)
	out := []Finding{a.stage()}
	out = append(out, a.configFindings()...)
	out = append(out, a.leaseFindings()...)
	return out
}

// assessment is the two keyspaces, parsed and paired.
type assessment struct {
	prefix string
	v2, v3 Store
	l2, l3 []parsed // leases that parse, by subnet
	bad2   []parsed // v2 keys that are not leases
	twin3  map[string]*parsed
	twin2  map[string]*parsed

	old      int // v2 leases in v0.11 form
	both     int // v2 leases with "PublicIPv6": written by --etcd-api=both nodes
	live     int // of both, those still renewed
	lapsing  int // of both, those no longer renewed
	res2     int // v2 reservations
	same     int // v2 leases with a v3 twin of the same owner
	only3    []parsed
	orphans  []parsed // live both-form v2 leases without a v3 twin
	v3Nodes  int      // v3 leases whose v2 copy is gone or lapsing: nodes in v3 mode
	problems []Finding
}

func newAssessment(prefix string, v2, v3 Store) *assessment {
	a := &assessment{prefix: prefix, v2: v2, v3: v3}
	for _, p := range parseAll(v2.Subnets, parseV2) {
		if p.Err != nil {
			a.bad2 = append(a.bad2, p)
		} else {
			a.l2 = append(a.l2, p)
		}
	}
	for _, p := range parseAll(v3.Subnets, parseV3) {
		if p.Err == nil {
			a.l3 = append(a.l3, p)
		}
	}
	a.twin3, a.twin2 = byName(a.l3), byName(a.l2)
	for _, p := range a.l2 {
		switch {
		case p.V011Form:
			a.old++
		default:
			a.both++
			if p.Expires && p.TTL < lapsingBelow {
				a.lapsing++
			} else if p.Expires {
				a.live++
			}
		}
		if !p.Expires {
			a.res2++
		}
		t := a.twin3[p.Name]
		switch {
		case t != nil && len(Differences(p.Lease, t.Lease)) == 0:
			a.same++
		case t == nil && !p.V011Form && p.Expires && p.TTL >= lapsingBelow:
			a.orphans = append(a.orphans, p)
		}
	}
	for _, p := range a.l3 {
		t := a.twin2[p.Name]
		if t == nil {
			a.only3 = append(a.only3, p)
		}
		if p.Expires && (t == nil || !t.V011Form && t.Expires && t.TTL < lapsingBelow) {
			a.v3Nodes++
		}
	}
	return a
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// stage places the cluster among the steps of spec 8.3.
func (a *assessment) stage() Finding {
	rm := fmt.Sprintf("`ETCDCTL_API=2 etcdctl rm --recursive %s`, restart etcd without --enable-v2, and run `etcdutl check v2store` before upgrading etcd to 3.6", a.prefix)
	switch {
	case a.v2.Empty() && a.v3.Empty():
		return Finding{Text: fmt.Sprintf("keyspaces: no flannel data under %s, in the v2 store or in v3", a.prefix)}
	case a.v2.Empty():
		return Finding{Text: fmt.Sprintf("keyspaces: v3 only; etcd still serves the v2 API, which holds nothing under %s. "+
			"If this cluster was migrated from flannel v0.11, finish step 6: restart etcd without --enable-v2 and run `etcdutl check v2store` before upgrading etcd to 3.6", a.prefix)}
	case a.v3.Empty():
		return Finding{Text: "keyspaces: v2 only (flannel v0.11's layout): migration not started (step 0). " +
			"Next, step 1: copy the config into v3 with `flannelctl migrate-v2 --config-only`"}
	case a.old > 0 && len(a.l3) == 0:
		return Finding{Text: fmt.Sprintf("keyspaces: v2 and v3, migration step 1 done: the config is in v3, every lease (%d) only in v2. "+
			"Next, step 2: replace the nodes one at a time with flanneld --etcd-api=both", len(a.l2))}
	case a.old > 0 && a.both == 0:
		return Finding{Text: fmt.Sprintf("keyspaces: v2 and v3, migration step 1 done, no node runs --etcd-api=both yet: %s in v0.11 form, %d of them with a v3 copy of the same owner (migrate-v2). "+
			"Next, step 2: replace the nodes one at a time with flanneld --etcd-api=both", plural(len(a.l2), "v2 lease", "v2 leases"), a.same)}
	case a.old > 0:
		return Finding{Text: fmt.Sprintf("keyspaces: v2 and v3, migration step 2: %s written by --etcd-api=both nodes, %s in v0.11 form (v0.11 nodes, nodes in --etcd-api=v2, or copies). "+
			"Next: replace the others one at a time with --etcd-api=both; nodes that join now run both, never v3 only (step 3)",
			plural(a.both, "v2 lease", "v2 leases"), plural(a.old, "lease", "leases"))}
	case a.live > 0 && a.v3Nodes == 0 && len(a.orphans) > 0:
		return Finding{Text: fmt.Sprintf("keyspaces: v2 and v3, migration step 4 not reached: no lease in v0.11 form is left, but %s by --etcd-api=both nodes without a v3 copy (below)",
			plural(len(a.orphans), "v2 lease is written", "v2 leases are written"))}
	case a.live > 0 && a.v3Nodes == 0:
		return Finding{Text: fmt.Sprintf("keyspaces: v2 and v3, migration step 4 reached: no lease in v0.11 form is left and each of the %s written by --etcd-api=both nodes has its v3 copy. "+
			"Next, step 5: restart the nodes one at a time with --etcd-api=v3; from then on no v0.11 node may come back", plural(a.live, "v2 lease", "v2 leases"))}
	case a.live > 0:
		return Finding{Text: fmt.Sprintf("keyspaces: v2 and v3, migration step 5: %s still renewed by --etcd-api=both nodes, %s in --etcd-api=v3 (v3 lease without a renewed v2 copy). "+
			"Next: restart the others with --etcd-api=v3", plural(a.live, "v2 lease", "v2 leases"), plural(a.v3Nodes, "node", "nodes"))}
	case len(a.l3) > 0:
		var left []string
		if a.v2.Config != nil {
			left = append(left, "the config")
		}
		if n := len(a.l2) - a.res2; n > 0 {
			left = append(left, plural(n, "lease copy that is no longer renewed", "lease copies that are no longer renewed"))
		}
		if a.res2 > 0 {
			left = append(left, plural(a.res2, "reservation", "reservations"))
		}
		if len(a.bad2) > 0 {
			left = append(left, plural(len(a.bad2), "key that is not a lease", "keys that are not leases"))
		}
		return Finding{Text: fmt.Sprintf("keyspaces: v3, with v2 leftovers: every node runs --etcd-api=v3 (no v2 lease is renewed) and the v2 store still holds %s under %s. "+
			"Next, step 6: %s", strings.Join(left, ", "), a.prefix, rm)}
	}
	return Finding{Text: fmt.Sprintf("keyspaces: v2 and v3 hold a config and no lease: if this cluster is being migrated, step 1 is done; if every node already runs --etcd-api=v3, finish step 6: %s", rm)}
}

func (a *assessment) configFindings() []Finding {
	key := a.prefix + "/config"
	c2, c3 := a.v2.Config, a.v3.Config
	switch {
	case c2 == nil && c3 == nil:
		return nil
	case c2 != nil && c3 != nil && SameConfig(c2, c3):
		return []Finding{{Text: fmt.Sprintf("config %s: in v2 and v3, equal", key)}}
	case c2 != nil && c3 != nil:
		return []Finding{{Problem: true,
			Text: fmt.Sprintf("config %s differs between v2 and v3: %s (v2 vs v3)", key, configChanges(c2, c3)),
			Fix: fmt.Sprintf("write the one config into both keyspaces (`ETCDCTL_API=2 etcdctl set %s '<json>'` and `flannelctl config set FILE`): "+
				"--etcd-api=both nodes refuse to start while they differ, and v0.11 and v3 nodes would each use their own", key)}}
	case c2 != nil && len(a.l3) > 0:
		return []Finding{{Problem: true,
			Text: fmt.Sprintf("config %s is only in v2, but v3 holds leases: nodes in --etcd-api=v3 cannot start (step 1 was skipped)", key),
			Fix:  "copy it: `flannelctl migrate-v2 --config-only`"}}
	case c2 != nil:
		return []Finding{{Text: fmt.Sprintf("config %s: only in v2", key)}}
	case a.old > 0:
		return []Finding{{Problem: true,
			Text: fmt.Sprintf("config %s is only in v3, but v2 holds leases in v0.11 form: a v0.11 node that restarts finds no config", key),
			Fix:  fmt.Sprintf("write it into v2 as well: `ETCDCTL_API=2 etcdctl set %s \"$(flannelctl config get)\"`", key)}}
	case len(a.l2) > 0:
		return []Finding{{Text: fmt.Sprintf("config %s: only in v3", key)}}
	}
	return nil
}

func (a *assessment) leaseFindings() []Finding {
	var out []Finding
	if len(a.l2) > 0 || len(a.bad2) > 0 {
		var parts []string
		if a.old > 0 {
			parts = append(parts, fmt.Sprintf("%d in v0.11 form (no \"PublicIPv6\": v0.11 nodes, nodes in --etcd-api=v2, or copies)", a.old))
		}
		if a.both > 0 {
			s := fmt.Sprintf("%d with \"PublicIPv6\":null (written by --etcd-api=both nodes)", a.both)
			if a.lapsing > 0 {
				s += fmt.Sprintf(", %d of them no longer renewed (less than %s left)", a.lapsing, lapsingBelow)
			}
			parts = append(parts, s)
		}
		if a.res2 > 0 {
			parts = append(parts, plural(a.res2, "reservation", "reservations")+" among them")
		}
		text := fmt.Sprintf("v2: %s", plural(len(a.l2), "lease", "leases"))
		if len(parts) > 0 {
			text += ": " + strings.Join(parts, "; ")
		}
		out = append(out, Finding{Text: text})
	}
	if len(a.l3) > 0 && len(a.l2) > 0 {
		text := fmt.Sprintf("v3: %s: %d also in v2 with the same owner, %d only in v3",
			plural(len(a.l3), "lease", "leases"), a.same, len(a.only3))
		if other := len(a.l3) - a.same - len(a.only3); other > 0 {
			text += fmt.Sprintf(", %d in v2 with other values (below)", other)
		}
		out = append(out, Finding{Text: text})
	}
	for _, p := range a.bad2 {
		out = append(out, Finding{Problem: true,
			Text: fmt.Sprintf("v2 key %s is not a lease: %v: it wedges the lease watch of every v0.11 node (spec 2.4)", p.Path, p.Err),
			Fix:  fmt.Sprintf("ETCDCTL_API=2 etcdctl rm %s", rmArg(p))})
	}
	for _, p := range a.l2 {
		t := a.twin3[p.Name]
		if t == nil {
			continue
		}
		d := Differences(p.Lease, t.Lease)
		switch {
		case len(d) == 0:
		case p.Lease.Attrs.PublicIP != t.Lease.Attrs.PublicIP:
			out = append(out, Finding{Problem: true,
				Text: fmt.Sprintf("split claim on %s: v2 says %s, v3 says %s: v0.11 nodes route it to the first, v3 nodes to the second",
					p.Lease.String(), Describe(p.Lease), Describe(t.Lease)),
				Fix: fmt.Sprintf("stop flanneld on one of the two nodes (%s or %s) for good and delete its key (v2: `ETCDCTL_API=2 etcdctl rm %s`, v3: `flannelctl release --force %s`); started again, it takes another subnet",
					p.Lease.Attrs.PublicIP, t.Lease.Attrs.PublicIP, p.Path, p.Lease.Subnet)})
		default:
			out = append(out, Finding{Problem: true,
				Text: fmt.Sprintf("the v2 and v3 copies of %s disagree: %s (v2 vs v3): v0.11 nodes and v3 nodes program different peers", p.Lease.String(), strings.Join(d, ", ")),
				Fix:  fmt.Sprintf("restart flanneld --etcd-api=both on %s: it rewrites both copies with its current values", p.Lease.Attrs.PublicIP)})
		}
	}
	for _, p := range a.l2 {
		for _, o := range a.l3 {
			if o.Name != p.Name && overlaps(p.Lease, o.Lease) {
				out = append(out, Finding{Problem: true,
					Text: fmt.Sprintf("v2 lease %s (%s) overlaps v3 lease %s (%s): two nodes own the same addresses", p.Path, Describe(p.Lease), o.Path, Describe(o.Lease)),
					Fix: fmt.Sprintf("stop flanneld on one of the two nodes (%s or %s) for good and delete its key (v2: `ETCDCTL_API=2 etcdctl rm %s`, v3: `flannelctl release --force %s`); started again, it takes another subnet",
						p.Lease.Attrs.PublicIP, o.Lease.Attrs.PublicIP, p.Path, o.Lease.Subnet)})
			}
		}
	}
	if a.old > 0 {
		for _, p := range a.only3 {
			f := Finding{Problem: true,
				Text: fmt.Sprintf("lease %s (%s) is only in v3 while v0.11 nodes hold v2 leases: they do not route to it and may allocate its subnet (step 3)", p.Lease.String(), Describe(p.Lease)),
				Fix:  fmt.Sprintf("restart flanneld on %s with --etcd-api=both, never v3 only, until every v0.11 node is replaced", p.Lease.Attrs.PublicIP)}
			if !p.Expires {
				f.Text = fmt.Sprintf("reservation %s (%s) is only in v3 while v0.11 nodes hold v2 leases: they may allocate its subnet (step 3)", p.Lease.String(), Describe(p.Lease))
				f.Fix = fmt.Sprintf("write it into v2 as well, without TTL: `ETCDCTL_API=2 etcdctl set %s '%s'`", p.Path, p.Value)
			}
			out = append(out, f)
		}
	}
	for _, p := range a.orphans {
		out = append(out, Finding{Problem: true,
			Text: fmt.Sprintf("lease %s (%s) was written by a --etcd-api=both node and is renewed in v2, but has no v3 copy: nodes in --etcd-api=v3 do not route to it", p.Lease.String(), Describe(p.Lease)),
			Fix:  fmt.Sprintf("restart flanneld on %s (--etcd-api=both writes both copies)", p.Lease.Attrs.PublicIP)})
	}
	return out
}

// rmArg is a key quoted for a shell when it needs it.
func rmArg(p parsed) string {
	arg := p.Path
	if strings.ContainsAny(arg, " '\"$`\\;&|<>*?()") {
		arg = "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
	}
	if p.Dir {
		return "--recursive " + arg
	}
	return arg
}
