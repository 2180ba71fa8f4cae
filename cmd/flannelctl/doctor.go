package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"path/filepath"
	"strings"

	"github.com/flannelng/flannel/backend/vxlan"
	"github.com/flannelng/flannel/cmd/flannelctl/internal/doctor"
	"github.com/flannelng/flannel/cmd/flannelctl/internal/keyspace"
	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
)

// errProblems makes doctor exit 1 after it printed its findings.
var errProblems = errors.New("problems found")

func cmdDoctor(ctx context.Context, a *app, o *options, c *cmdFlags, _ []string) error {
	in := doctor.Input{SubnetFile: o.SubnetFile, PublicIP: o.nodeIP()}
	in.Env, in.EnvErr = subnet.ReadEnvFile(o.SubnetFile)
	in.ConfigKey = path.Join(o.Prefix, "config")
	var keyspaces []doctor.Result
	s, err := connect(o)
	if err != nil {
		in.EtcdErr = err
	} else {
		defer s.Close()
		in.ConfigKey = s.m.ConfigKey()
		var raw []byte
		in.Config, raw, err = s.m.GetConfig(ctx)
		switch {
		case err == nil || raw != nil || errors.Is(err, etcdsubnet.ErrNoConfig):
			in.ConfigErr = err // nil, missing or invalid
			es, lerr := s.list(ctx)
			if err == nil {
				in.Leases, in.LeasesErr = leasesOf(es), lerr
				in.Reservations = map[string]bool{}
				for _, e := range es {
					if e.Err == nil && e.EtcdLease == 0 {
						in.Reservations[e.Lease.Key()] = true
					}
				}
			}
			if lerr == nil {
				v3 := keyspace.Store{Config: raw, Subnets: v3Keys(s.m.SubnetsPrefix(), es)}
				keyspaces = checkKeyspaces(ctx, o, s, v3, &in)
			}
		default:
			in.EtcdErr = err
		}
	}
	in.Facts = doctor.Gather(ctx, gatherRequest(in, c))
	results := append(keyspaces, doctor.Run(in)...)
	printResults(a.stdout, results, c.quiet)
	if doctor.Failed(results) {
		return errProblems
	}
	return nil
}

// checkKeyspaces reads the v2 store next to v3 (already read) and says which
// keyspaces the cluster uses and where a migration from flannel v0.11
// stands (keyspace.Assess). A server without the v2 API is not a problem.
//
// When the v2 store holds leases, the node checks get the leases of both
// keyspaces (keyspace.Union), as a node in --etcd-api=both programs them
// (spec etcd-v2 8.1): during a migration those are the only nodes of ours,
// and before it (v3 empty) and after it (every v2 lease has its v3 twin)
// the union is what any node programs. Without a v3 config the node checks
// use the v2 one, as both mode does.
func checkKeyspaces(ctx context.Context, o *options, s *store, v3 keyspace.Store, in *doctor.Input) []doctor.Result {
	prefix := v2Prefix(o)
	v2c, err := newV2Client(o)
	if err != nil {
		return []doctor.Result{{Status: doctor.Fail, Text: fmt.Sprintf("keyspaces: v2 client: %v", err)}}
	}
	defer v2c.Close()
	v2, err := readV2(ctx, v2c, prefix, s.m.SubnetsPrefix())
	served := !errors.Is(err, etcdv2.ErrNoV2API)
	if err != nil && served {
		return []doctor.Result{{Status: doctor.Fail, Text: fmt.Sprintf("keyspaces: cannot read the v2 store: %v", err),
			Fix: "etcd's v2 API has its own users (v2 auth is separate from v3's): give flannelctl credentials that v2 accepts, or check the endpoints"}}
	}
	var out []doctor.Result
	for _, f := range keyspace.Assess(prefix, served, v2, v3) {
		r := doctor.Result{Status: doctor.OK, Text: f.Text}
		if f.Problem {
			r.Status, r.Fix = doctor.Fail, f.Fix
		}
		out = append(out, r)
	}
	if !served || v2.Empty() {
		return out
	}
	if errors.Is(in.ConfigErr, etcdsubnet.ErrNoConfig) && v2.Config != nil {
		in.ConfigKey = prefix + "/config (v2 store)"
		in.Config, in.ConfigErr = subnet.ParseConfig(v2.Config)
	}
	if in.Config != nil && len(v2.Subnets) > 0 {
		in.Leases, in.Reservations = keyspace.Union(v2, v3)
		in.LeasesErr = nil
		text := "node checks below use the leases of both keyspaces, as a node in --etcd-api=both programs them (the v2 record where the two disagree)"
		if len(v3.Subnets) == 0 {
			text = "node checks below use the leases in the v2 store (v3 holds none), as a node of flannel v0.11 or in --etcd-api=v2 programs them"
		}
		out = append(out, doctor.Result{Status: doctor.OK, Text: text})
	}
	return out
}

// gatherRequest says what to read from the node, given the config.
func gatherRequest(in doctor.Input, c *cmdFlags) doctor.Request {
	req := doctor.Request{CNIConfDir: c.cniConfDir, ProcSys: c.procSys}
	for _, d := range filepath.SplitList(c.cniBinDir) {
		if d != "" {
			req.CNIBinDirs = append(req.CNIBinDirs, d)
		}
	}
	cfg := in.Config
	if cfg == nil {
		return req
	}
	req.IPv4, req.IPv6, req.NFTables = cfg.EnableIPv4, cfg.EnableIPv6, cfg.EnableNFTables
	req.Masq = in.EnvErr == nil && in.Env.IPMasq
	if cfg.BackendType == vxlan.BackendType {
		if opts, err := vxlan.ParseOptions(cfg.Backend); err == nil {
			if cfg.EnableIPv4 {
				req.Devices = append(req.Devices, vxlan.DeviceName(opts.VNI))
			}
			if cfg.EnableIPv6 {
				req.Devices = append(req.Devices, vxlan.DeviceNameV6(opts.VNI))
			}
			if opts.DirectRouting {
				seen := map[netip.Addr]bool{}
				for _, l := range in.Leases {
					for _, ip := range []netip.Addr{l.Attrs.PublicIP, l.Attrs.PublicIPv6} {
						if ip.IsValid() && !seen[ip] {
							seen[ip] = true
							req.DirectIPs = append(req.DirectIPs, ip)
						}
					}
				}
			}
		}
	}
	return req
}

// printResults writes one line per check ("ok", "FAIL", "skip"), a fix line
// under each failure, and a summary. quiet leaves out the ok and skip lines.
func printResults(w io.Writer, rs []doctor.Result, quiet bool) {
	var ok, failed, skipped int
	for _, r := range rs {
		switch r.Status {
		case doctor.OK:
			ok++
		case doctor.Fail:
			failed++
		default:
			skipped++
		}
		if quiet && r.Status != doctor.Fail {
			continue
		}
		fmt.Fprintf(w, "%-5s %s\n", r.Status, r.Text)
		if r.Status == doctor.Fail && r.Fix != "" {
			fmt.Fprintf(w, "      fix: %s\n", r.Fix)
		}
	}
	var b strings.Builder
	if failed == 0 {
		fmt.Fprintf(&b, "healthy: %d checks passed", ok)
	} else {
		fmt.Fprintf(&b, "%d problem", failed)
		if failed > 1 {
			b.WriteString("s")
		}
		fmt.Fprintf(&b, " found (%d passed)", ok)
	}
	if skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", skipped)
	}
	fmt.Fprintln(w, b.String())
}
