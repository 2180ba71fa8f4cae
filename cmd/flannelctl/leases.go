package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// leaseView is one row of `flannelctl leases`; its JSON form is the
// `-o json` output. Absent values are null, so every object has every key.
type leaseView struct {
	Key         string  `json:"Key"`
	Value       string  `json:"Value"`
	Subnet      *string `json:"Subnet"`
	IPv6Subnet  *string `json:"IPv6Subnet"`
	PublicIP    *string `json:"PublicIP"`
	PublicIPv6  *string `json:"PublicIPv6"`
	BackendType string  `json:"BackendType"`
	VtepMAC     *string `json:"VtepMAC"`
	VtepMACv6   *string `json:"VtepMACv6,omitempty"`
	Reservation bool    `json:"Reservation"`
	// EtcdLease is the etcd lease ID in hex, as etcdctl prints it.
	EtcdLease *string `json:"EtcdLease"`
	// Live says whether the key's etcd lease exists (false: it expired
	// or was revoked, and etcd is deleting the key); null for a
	// reservation.
	Live *bool `json:"Live"`
	// Expires is RFC 3339 UTC and TTLSeconds what remains; both only with
	// --ttl (null otherwise, and for a reservation).
	Expires    *string `json:"Expires"`
	TTLSeconds *int64  `json:"TTLSeconds"`
	Error      string  `json:"Error,omitempty"`

	sub4, sub6 netip.Prefix
	expires    time.Time
	expired    bool // the key's etcd lease is gone (the key goes with it)
}

func strp(s string) *string { return &s }

func prefixp(p netip.Prefix) *string {
	if !p.IsValid() {
		return nil
	}
	return strp(p.String())
}

func addrp(a netip.Addr) *string {
	if !a.IsValid() {
		return nil
	}
	return strp(a.String())
}

// vtepMAC returns the VtepMAC of a vxlan BackendData (subnet.DecodeVXLANData),
// nil otherwise. One that is not a MAC is shown as written, so that an
// operator sees what is wrong.
func vtepMAC(raw json.RawMessage) *string {
	p, err := subnet.DecodeVXLANData(raw)
	if me := (*subnet.VtepMACError)(nil); errors.As(err, &me) && me.VtepMAC != "" {
		return strp(me.VtepMAC)
	}
	if err != nil {
		return nil
	}
	return strp(p.VtepMAC())
}

// buildViews turns keys into rows sorted by subnet (IPv4, then IPv6, then
// key); keys that do not parse come last. ttls holds the remaining seconds
// per etcd lease.
func buildViews(es []entry, ttls map[int64]int64, now time.Time) []leaseView {
	out := make([]leaseView, 0, len(es))
	for _, e := range es {
		v := leaseView{Key: e.Key, Value: string(e.Value), Reservation: e.EtcdLease == 0}
		if e.EtcdLease != 0 {
			v.EtcdLease = strp(strconv.FormatInt(e.EtcdLease, 16))
			ttl, ok := ttls[e.EtcdLease]
			switch {
			case !ok:
			case ttl < 0:
				v.expired = true
				v.TTLSeconds = &ttl
				v.Live = boolp(false)
			default:
				v.Live = boolp(true)
				v.expires = now.Add(time.Duration(ttl) * time.Second).UTC().Truncate(time.Second)
				v.Expires = strp(v.expires.Format(time.RFC3339))
				v.TTLSeconds = &ttl
			}
		}
		if e.Err != nil {
			v.Error = e.Err.Error()
		}
		l := e.Lease
		v.sub4, v.sub6 = l.Subnet, l.IPv6Subnet
		v.Subnet, v.IPv6Subnet = prefixp(l.Subnet), prefixp(l.IPv6Subnet)
		if e.Err == nil {
			v.PublicIP, v.PublicIPv6 = addrp(l.Attrs.PublicIP), addrp(l.Attrs.PublicIPv6)
			v.BackendType = l.Attrs.BackendType
			v.VtepMAC = vtepMAC(l.Attrs.BackendData)
			v.VtepMACv6 = vtepMAC(l.Attrs.BackendV6Data)
		}
		out = append(out, v)
	}
	slices.SortStableFunc(out, func(a, b leaseView) int {
		if c := cmp.Compare(boolInt(a.Error != ""), boolInt(b.Error != "")); c != 0 {
			return c
		}
		if c := comparePrefix(a.sub4, b.sub4); c != 0 {
			return c
		}
		if c := comparePrefix(a.sub6, b.sub6); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out
}

func boolp(b bool) *bool { return &b }

// setLive records which etcd leases exist (store.liveLeases), for the
// views whose TTL was not read.
func setLive(views []leaseView, live map[int64]bool) {
	for i := range views {
		v := &views[i]
		if v.Reservation || v.Live != nil || v.EtcdLease == nil {
			continue
		}
		id, err := strconv.ParseInt(*v.EtcdLease, 16, 64)
		if err != nil {
			continue
		}
		v.Live = boolp(live[id])
		v.expired = !live[id]
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// comparePrefix orders by address, then length; a missing prefix sorts last.
func comparePrefix(a, b netip.Prefix) int {
	switch {
	case !a.IsValid() || !b.IsValid():
		return cmp.Compare(boolInt(!a.IsValid()), boolInt(!b.IsValid()))
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func orDash(p *string) string {
	if p == nil {
		return "-"
	}
	return *p
}

// expiresText is the EXPIRES column: absolute time and what remains.
func (v leaseView) expiresText() string {
	switch {
	case v.Reservation:
		return "reservation"
	case v.expired:
		return "expired"
	case v.Expires == nil && v.Live != nil:
		return "live"
	case v.Expires == nil:
		return "-"
	}
	return fmt.Sprintf("%s (%s)", *v.Expires, (time.Duration(*v.TTLSeconds) * time.Second).String())
}

// renderTable writes the lease table. The PUBLIC IPV6 and VTEP MAC V6
// columns appear only when some lease has a value for them.
func renderTable(w io.Writer, views []leaseView) error { return renderLeaseTable(w, views, false) }

// renderLeaseTable writes the table; wide adds the etcd lease ID and the
// key.
func renderLeaseTable(w io.Writer, views []leaseView, wide bool) error {
	var v6ip, v6mac bool
	for _, v := range views {
		v6ip = v6ip || v.PublicIPv6 != nil
		v6mac = v6mac || v.VtepMACv6 != nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) {
		for i, c := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	head := []string{"SUBNET", "IPV6 SUBNET", "PUBLIC IP"}
	if v6ip {
		head = append(head, "PUBLIC IPV6")
	}
	head = append(head, "BACKEND", "VTEP MAC")
	if v6mac {
		head = append(head, "VTEP MAC V6")
	}
	head = append(head, "EXPIRES")
	if wide {
		head = append(head, "ETCD LEASE", "KEY")
	}
	row(head...)
	for _, v := range views {
		if v.Error != "" {
			continue
		}
		cols := []string{orDash(v.Subnet), orDash(v.IPv6Subnet), orDash(v.PublicIP)}
		if v6ip {
			cols = append(cols, orDash(v.PublicIPv6))
		}
		backend := v.BackendType
		if backend == "" {
			backend = "-"
		}
		cols = append(cols, backend, orDash(v.VtepMAC))
		if v6mac {
			cols = append(cols, orDash(v.VtepMACv6))
		}
		cols = append(cols, v.expiresText())
		if wide {
			cols = append(cols, orDash(v.EtcdLease), v.Key)
		}
		row(cols...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range views {
		if v.Error != "" {
			if _, err := fmt.Fprintf(w, "unreadable key %s (flanneld ignores it): %s\n", v.Key, v.Error); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderJSON writes the views (etcd keys or Nodes) as an indented JSON
// array ([] when empty).
func renderJSON[V any](w io.Writer, views []V) error { return renderList(w, "json", views) }

func cmdLeases(ctx context.Context, a *app, o *options, c *cmdFlags, _ []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	if c.kubeconfig != "" {
		if c.ttl {
			return usageError{"--ttl needs etcd: a Node's podCIDR does not expire"}
		}
		return cmdKubeLeases(ctx, a, o, c)
	}
	if c.kubePrefix != "" {
		return usageError{"--kube-annotation-prefix needs --kubeconfig: leases in etcd carry no annotations"}
	}
	s, err := connect(o)
	if err != nil {
		return err
	}
	defer s.Close()
	views, err := s.leaseViews(ctx, c.ttl, a.now())
	if err != nil {
		return err
	}
	if isTable(c.output) {
		return renderLeaseTable(a.stdout, views, c.output == "wide")
	}
	return renderList(a.stdout, c.output, views)
}

// leaseViews reads the leases in one pass of two requests, whatever their
// number: one range over <prefix>/subnets/ (the keys, their values and
// their etcd lease IDs) and one LeaseLeases (the etcd leases that exist),
// which together tell each key's state: reservation, live, or expired.
//
// etcd has no request that returns the remaining TTL of several leases
// (LeaseLeases returns IDs only; its LeaseStatus has the TTL as a TODO):
// the only source of a lease's TTL is LeaseTimeToLive, one request per
// lease. With withTTL those are sent, concurrently (s.ttls), one per
// distinct etcd lease of a live key; without it, none.
func (s *store) leaseViews(ctx context.Context, withTTL bool, now time.Time) ([]leaseView, error) {
	es, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	// After the range: a lease granted in between has no key in it; one
	// that expired in between shows as expired, as its key is going.
	live, err := s.liveLeases(ctx)
	if err != nil {
		return nil, err
	}
	var ttls map[int64]int64
	if withTTL {
		var alive []entry
		for _, e := range es {
			if live[e.EtcdLease] {
				alive = append(alive, e)
			}
		}
		if ttls, err = s.ttls(ctx, alive); err != nil {
			return nil, err
		}
	}
	views := buildViews(es, ttls, now)
	setLive(views, live)
	return views, nil
}
