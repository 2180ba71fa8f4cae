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
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
)

// errProblems makes doctor exit 1 after it printed its findings.
var errProblems = errors.New("problems found")

func cmdDoctor(ctx context.Context, a *app, o *options, c *cmdFlags, _ []string) error {
	in := doctor.Input{SubnetFile: o.SubnetFile, PublicIP: o.nodeIP()}
	in.Env, in.EnvErr = subnet.ReadEnvFile(o.SubnetFile)
	in.ConfigKey = path.Join(o.Prefix, "config")
	s, err := connect(o)
	if err != nil {
		in.EtcdErr = err
	} else {
		defer s.Close()
		in.ConfigKey = s.m.ConfigKey()
		var raw []byte
		in.Config, raw, err = s.m.GetConfig(ctx)
		switch {
		case err == nil:
			es, err := s.list(ctx)
			in.Leases, in.LeasesErr = leasesOf(es), err
			in.Reservations = map[string]bool{}
			for _, e := range es {
				if e.Err == nil && e.EtcdLease == 0 {
					in.Reservations[e.Lease.Key()] = true
				}
			}
		case raw != nil || errors.Is(err, etcdsubnet.ErrNoConfig):
			in.ConfigErr = err // missing or invalid
		default:
			in.EtcdErr = err
		}
	}
	in.Facts = doctor.Gather(ctx, gatherRequest(in, c))
	results := doctor.Run(in)
	printResults(a.stdout, results, c.quiet)
	if doctor.Failed(results) {
		return errProblems
	}
	return nil
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
