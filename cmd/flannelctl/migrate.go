package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flannelng/flannel/cmd/flannelctl/internal/keyspace"
	"github.com/flannelng/flannel/pkg/etcdv2"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// migrate-v2 copies flannel v0.11's config and leases from etcd's v2 store
// into the v3 keyspace (issue 18; spec etcd-v2 5, 6). Unlike `etcdctl
// migrate` it runs against a live etcd, keeps each lease's remaining TTL
// as an etcd lease (one per key, as the daemon holds them) so leases of
// departed nodes still expire, never overwrites a v3 key, and refuses the
// whole run when v3 disagrees with v2.

// v2Prefix is <prefix> as the v2 and v3 keys are built from it.
func v2Prefix(o *options) string {
	p := strings.TrimRight(o.Prefix, "/")
	if p == "" {
		p = "/coreos.com/network"
	}
	return p
}

// newV2Client is a client of etcd's v2 API with the common etcd flags:
// the same endpoints, TLS files and credentials (v2 auth has its own users,
// spec 2.1) and --timeout per request.
func newV2Client(o *options) (*etcdv2.Client, error) {
	tc, err := o.Etcd.TLSConfig()
	if err != nil {
		return nil, err
	}
	return etcdv2.New(etcdv2.Config{
		Endpoints: o.Etcd.Endpoints, TLS: tc,
		Username: o.Etcd.Username, Password: o.Etcd.Password,
		RequestTimeout: o.Timeout,
	})
}

// errNoV2API explains a server without the v2 API to an operator.
func errNoV2API(o *options, err error) error {
	return fmt.Errorf("etcd at %s does not serve the v2 API, where flannel v0.11 keeps its data: "+
		"etcd 3.4 and 3.5 serve it only when every member runs with --enable-v2=true; "+
		"etcd 3.6 and later cannot serve it (their v2 store holds membership data only), "+
		"so migrate before upgrading etcd past 3.5 (%w)", strings.Join(o.Etcd.Endpoints, ","), err)
}

// readV2 reads <prefix>/config and the keys below <prefix>/subnets from
// the v2 store, with quorum reads. Each key's Path is the v3 key it is
// copied to: v3subnets + its name. A missing config or subnets directory
// is not an error.
func readV2(ctx context.Context, c *etcdv2.Client, prefix, v3subnets string) (keyspace.Store, error) {
	var st keyspace.Store
	cfgKey := prefix + "/config"
	r, err := c.Get(ctx, cfgKey, false)
	switch {
	case etcdv2.IsKeyNotFound(err):
	case err != nil:
		return st, fmt.Errorf("read %s from the v2 store: %w", cfgKey, err)
	case r.Node.Dir:
		return st, fmt.Errorf("read %s from the v2 store: it is a directory, not a config", cfgKey)
	default:
		st.Config = []byte(r.Node.Value)
	}
	dir := prefix + "/subnets"
	r, err = c.Get(ctx, dir, true)
	switch {
	case etcdv2.IsKeyNotFound(err):
		return st, nil
	case err != nil:
		return st, fmt.Errorf("list %s in the v2 store: %w", dir, err)
	case !r.Node.Dir:
		return st, fmt.Errorf("list %s in the v2 store: it is a value, not the directory of leases", dir)
	}
	for _, n := range r.Node.Nodes {
		name := path.Base(n.Key)
		k := keyspace.Key{Path: v3subnets + name, Name: name, Value: []byte(n.Value), Dir: n.Dir,
			Expires: n.Expiration != nil, TTL: time.Duration(n.TTL) * time.Second}
		st.Subnets = append(st.Subnets, k)
	}
	return st, nil
}

// readV3 reads the config (raw, valid or not) and every key below
// <prefix>/subnets/ from v3.
func readV3(ctx context.Context, s *store) (keyspace.Store, []entry, error) {
	var st keyspace.Store
	_, raw, err := s.m.GetConfig(ctx)
	switch {
	case errors.Is(err, etcdsubnet.ErrNoConfig):
	case err != nil && raw == nil:
		return st, nil, err
	default:
		st.Config = raw
	}
	es, err := s.list(ctx)
	if err != nil {
		return st, nil, err
	}
	st.Subnets = v3Keys(s.m.SubnetsPrefix(), es)
	return st, es, nil
}

func v3Keys(subnetsPrefix string, es []entry) []keyspace.Key {
	out := make([]keyspace.Key, 0, len(es))
	for _, e := range es {
		out = append(out, keyspace.Key{Path: e.Key, Name: strings.TrimPrefix(e.Key, subnetsPrefix), Value: e.Value, Expires: e.EtcdLease != 0})
	}
	return out
}

// migrateRow is one key of migrate-v2's report; its JSON form is a
// member of `-o json`'s "Keys". Absent values are null.
type migrateRow struct {
	Key string `json:"Key"`
	// Action is copied, already-present, skipped or conflict; would-copy
	// when nothing is written (dry run, refused run); failed for a write
	// that failed and not-copied for the keys after it.
	Action string `json:"Action"`
	// Reservation: a lease key without TTL, copied without an etcd lease.
	Reservation bool `json:"Reservation"`
	// TTLSeconds is the v2 key's remaining TTL, or for a copied key
	// the TTL of the etcd lease granted for it; null for the config and
	// reservations.
	TTLSeconds  *int64  `json:"TTLSeconds"`
	EtcdLease   *string `json:"EtcdLease"` // the etcd lease of a copied key, hex
	Subnet      *string `json:"Subnet"`
	PublicIP    *string `json:"PublicIP"`
	BackendType *string `json:"BackendType"`
	VtepMAC     *string `json:"VtepMAC"`
	Detail      string  `json:"Detail"`

	config bool
}

// migrateReport is migrate-v2's output; `-o json` prints it.
type migrateReport struct {
	DryRun bool `json:"DryRun"`
	// Written is false for a dry run and a refused run: nothing was
	// written, and WouldCopy counts what a run would copy.
	Written        bool         `json:"Written"`
	Copied         int          `json:"Copied"`
	WouldCopy      int          `json:"WouldCopy"`
	AlreadyPresent int          `json:"AlreadyPresent"`
	Skipped        int          `json:"Skipped"`
	Conflicts      int          `json:"Conflicts"`
	Failed         int          `json:"Failed"` // a write failed; keys after it were not tried
	Keys           []migrateRow `json:"Keys"`
}

func newRow(it keyspace.Item) migrateRow {
	r := migrateRow{Key: it.Key, Action: string(it.Action), Detail: it.Reason, config: it.Config}
	if it.Action == keyspace.Copy {
		r.Action = "would-copy"
	}
	if it.Config {
		return r
	}
	l := it.Lease
	if l.Subnet.IsValid() {
		r.Subnet = prefixp(l.Subnet)
		r.PublicIP = addrp(l.Attrs.PublicIP)
		if l.Attrs.BackendType != "" {
			r.BackendType = strp(l.Attrs.BackendType)
		}
		r.VtepMAC = vtepMAC(l.Attrs.BackendData)
		r.Reservation = !it.Expires
		if it.Expires && it.TTL > 0 {
			ttl := int64(it.TTL / time.Second)
			r.TTLSeconds = &ttl
		}
	}
	return r
}

func (rep *migrateReport) add(r migrateRow) {
	switch r.Action {
	case "copied":
		rep.Copied++
	case "would-copy":
		rep.WouldCopy++
	case "failed", "not-copied":
		rep.Failed++
	case string(keyspace.Present):
		rep.AlreadyPresent++
	case string(keyspace.Skip):
		rep.Skipped++
	case string(keyspace.Conflict):
		rep.Conflicts++
	}
	rep.Keys = append(rep.Keys, r)
}

// migrator carries out a plan against v3.
type migrator struct {
	cli     *clientv3.Client
	timeout time.Duration
	readAt  time.Time // when v2 was read: TTLs count down from here
}

// copyItem writes one Copy item into v3: a transaction that puts the key
// only while it does not exist (Version == 0), with a new etcd lease of
// the v2 key's remaining TTL for a lease, none for a reservation or the
// config. A key a daemon wrote since the plan is compared again
// (keyspace.Recheck) and never overwritten.
func (m *migrator) copyItem(ctx context.Context, it keyspace.Item) (migrateRow, error) {
	row := newRow(it)
	var id clientv3.LeaseID
	if it.Expires {
		ttl := keyspace.RemainingTTL(it.TTL, time.Since(m.readAt))
		if ttl <= 0 {
			row.Action, row.Detail, row.TTLSeconds = string(keyspace.Skip), "expired in v2 before it was copied", nil
			return row, nil
		}
		cctx, cancel := context.WithTimeout(ctx, m.timeout)
		g, err := m.cli.Grant(cctx, int64(ttl/time.Second))
		cancel()
		if err != nil {
			return row, fmt.Errorf("grant an etcd lease of %s for %s: %w", ttl, it.Key, err)
		}
		id = g.ID
		row.TTLSeconds = &g.TTL // etcd may raise a TTL to its minimum
		row.EtcdLease = strp(strconv.FormatInt(int64(id), 16))
	}
	var opts []clientv3.OpOption
	if id != 0 {
		opts = append(opts, clientv3.WithLease(id))
	}
	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	resp, err := m.cli.Txn(cctx).
		If(clientv3.Compare(clientv3.Version(it.Key), "=", 0)).
		Then(clientv3.OpPut(it.Key, string(it.Value), opts...)).
		Else(clientv3.OpGet(it.Key)).
		Commit()
	cancel()
	if err != nil {
		// The put may have been applied: revoking the lease would
		// delete the key, and a lease with no key expires by itself.
		return row, fmt.Errorf("copy %s into v3: %w", it.Key, err)
	}
	if resp.Succeeded {
		row.Action = "copied"
		return row, nil
	}
	if id != 0 {
		cctx, cancel := context.WithTimeout(ctx, m.timeout)
		_, _ = m.cli.Revoke(cctx, id) // holds no key; it would expire anyway
		cancel()
		row.EtcdLease = nil
		if it.TTL > 0 {
			ttl := int64(it.TTL / time.Second)
			row.TTLSeconds = &ttl
		}
	}
	var value []byte
	var expires bool
	if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
		value, expires = rr.Kvs[0].Value, rr.Kvs[0].Lease != 0
	}
	a, reason := keyspace.Recheck(it, value, expires)
	row.Action = string(a)
	row.Detail = joinDetail("written in v3 meanwhile", reason)
	return row, nil
}

func joinDetail(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}

func cmdMigrateV2(ctx context.Context, a *app, o *options, c *cmdFlags, _ []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	prefix := v2Prefix(o)
	v2c, err := newV2Client(o)
	if err != nil {
		return err
	}
	defer v2c.Close()
	s, err := connect(o)
	if err != nil {
		return err
	}
	defer s.Close()

	v2, err := readV2(ctx, v2c, prefix, s.m.SubnetsPrefix())
	if errors.Is(err, etcdv2.ErrNoV2API) {
		return errNoV2API(o, err)
	}
	if err != nil {
		return err
	}
	readAt := time.Now()
	if v2.Config == nil {
		return fmt.Errorf("no flannel config at %s in etcd's v2 store at %s: nothing to migrate. "+
			"Check --etcd-prefix (flannel v0.11's default is /coreos.com/network) and that these are the cluster's etcd endpoints",
			prefix+"/config", strings.Join(o.Etcd.Endpoints, ","))
	}
	v3, _, err := readV3(ctx, s)
	if err != nil {
		return err
	}
	plan := keyspace.MakePlan(s.m.ConfigKey(), v2, v3, time.Since(readAt))
	if c.configOnly {
		plan.Items = plan.Items[:1] // the config comes first
	}
	if it := plan.Items[0]; it.Action == keyspace.Copy {
		_, warnings, err := checkConfig(it.Value)
		if err != nil {
			return fmt.Errorf("the config at %s in the v2 store is not valid for flanneld: %w. Fix it there first (ETCDCTL_API=2 etcdctl set %s '<json>'), nothing was written", it.Key, err, it.Key)
		}
		for _, w := range warnings {
			fmt.Fprintf(a.stderr, "warning: %s\n", w)
		}
	}

	conflicts := plan.Count(keyspace.Conflict)
	refused := plan.ConfigConflict() || conflicts > 0 && !c.skipConflicts
	rep := migrateReport{DryRun: c.dryRun}
	if c.dryRun || refused {
		for _, it := range plan.Items {
			rep.add(newRow(it))
		}
		if err := renderMigrate(a.stdout, rep, c.output); err != nil {
			return err
		}
		switch {
		case plan.ConfigConflict():
			return fmt.Errorf("refused: v3 holds another config at %s (--skip-conflicts does not apply to the config); nothing was written", s.m.ConfigKey())
		case refused:
			return fmt.Errorf("refused: %s in v3 disagree with v2; nothing was written. Resolve them, or pass --skip-conflicts to copy the other keys", plural(conflicts, "key", "keys"))
		case conflicts > 0:
			return fmt.Errorf("dry run: %s in v3 disagree with v2", plural(conflicts, "key", "keys"))
		}
		return nil
	}

	m := &migrator{cli: s.cli, timeout: o.Timeout, readAt: readAt}
	rep.Written = true
	var runErr error
	for _, it := range plan.Items {
		switch {
		case it.Action != keyspace.Copy:
			rep.add(newRow(it))
		case runErr != nil:
			row := newRow(it)
			row.Action, row.Detail = "not-copied", "not tried after the failure above"
			rep.add(row)
		default:
			row, err := m.copyItem(ctx, it)
			if err != nil {
				// Stop at the first failure: what was copied stays,
				// and a second run picks up where this one ended
				// (keys already present are not written again).
				runErr = err
				row.Action, row.Detail = "failed", err.Error()
			}
			rep.add(row)
		}
	}
	if err := renderMigrate(a.stdout, rep, c.output); err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("%w (%s copied before it; run migrate-v2 again to copy the rest)", runErr, plural(rep.Copied, "key", "keys"))
	}
	if rep.Conflicts > 0 {
		return fmt.Errorf("%s in v3 disagree with v2 and were left as they are", plural(rep.Conflicts, "key", "keys"))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// ttlText is the TTL column.
func (r migrateRow) ttlText() string {
	switch {
	case r.config:
		return "-"
	case r.Reservation:
		return "reservation"
	case r.TTLSeconds == nil:
		return "-"
	}
	return (time.Duration(*r.TTLSeconds) * time.Second).String()
}

// detailText is the DETAIL column: the lease's owner, then the reason.
func (r migrateRow) detailText() string {
	owner := ""
	if r.Subnet != nil {
		owner = orDash(r.PublicIP)
		if r.BackendType != nil {
			owner += " " + *r.BackendType
		}
		if r.VtepMAC != nil {
			owner += " " + *r.VtepMAC
		}
	}
	return joinDetail(owner, r.Detail)
}

func renderMigrate(w io.Writer, rep migrateReport, format string) error {
	if rep.Keys == nil {
		rep.Keys = []migrateRow{}
	}
	if !isTable(format) {
		return renderData(w, format, rep)
	}
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	if format == "wide" {
		// The detail's parts in columns of their own.
		fmt.Fprintln(tw, "KEY\tACTION\tTTL\tSUBNET\tPUBLIC IP\tBACKEND\tVTEP MAC\tDETAIL")
		for _, r := range rep.Keys {
			backend := "-"
			if r.BackendType != nil {
				backend = *r.BackendType
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Key, r.Action, r.ttlText(), orDash(r.Subnet), orDash(r.PublicIP), backend, orDash(r.VtepMAC), r.Detail)
		}
	} else {
		fmt.Fprintln(tw, "KEY\tACTION\tTTL\tDETAIL")
		for _, r := range rep.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Key, r.Action, r.ttlText(), r.detailText())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(table.String(), "\n") {
		// An empty DETAIL leaves the padding of the TTL column behind.
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+strings.Repeat("\n", strings.Count(line, "\n"))); err != nil {
			return err
		}
	}
	var sum string
	switch {
	case rep.DryRun:
		sum = fmt.Sprintf("dry run, nothing written: %d to copy", rep.WouldCopy)
	case !rep.Written:
		sum = fmt.Sprintf("refused, nothing written: %d to copy", rep.WouldCopy)
	default:
		sum = fmt.Sprintf("%d copied", rep.Copied)
	}
	sum += fmt.Sprintf(", %d already present, %d skipped, %s", rep.AlreadyPresent, rep.Skipped, plural(rep.Conflicts, "conflict", "conflicts"))
	if rep.Failed > 0 {
		sum += fmt.Sprintf(", %d failed or not tried", rep.Failed)
	}
	_, err := fmt.Fprintln(w, sum)
	return err
}
