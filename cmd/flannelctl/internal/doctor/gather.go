package doctor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/flannelng/flannel/pkg/firewall"
)

// Request says what Gather reads.
type Request struct {
	// Devices are the tunnel devices whose neighbour and FDB entries are read.
	Devices []string
	// DirectIPs are peers' public IPs to test for direct reachability
	// (DirectRouting).
	DirectIPs []netip.Addr
	// Masq asks for the masquerade rules: of nftables when NFTables is
	// set, else of the iptables variant the node uses; IPv4 and IPv6 select
	// the families.
	Masq, NFTables, IPv4, IPv6 bool

	CNIBinDirs []string
	CNIConfDir string
	// ProcSys is where the forwarding sysctls are read (/proc/sys).
	ProcSys string
	// Runner runs iptables-save and nft; nil means firewall.ExecRunner.
	Runner firewall.Runner
}

// Gather reads everything Run compares. Errors are recorded in Facts, not
// returned: each check then says what it could not read.
func Gather(ctx context.Context, req Request) Facts {
	f := gatherKernel(req)
	if req.ProcSys != "" {
		f.Forward4 = readBoolSysctl(filepath.Join(req.ProcSys, "net/ipv4/ip_forward"))
		f.Forward6 = readBoolSysctl(filepath.Join(req.ProcSys, "net/ipv6/conf/all/forwarding"))
	}
	if req.Masq {
		f.Firewall = gatherFirewall(ctx, req)
	}
	f.CNI = GatherCNI(req.CNIBinDirs, req.CNIConfDir)
	return f
}

func readBoolSysctl(path string) *bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	v := strings.TrimSpace(string(b)) != "0"
	return &v
}

func gatherFirewall(ctx context.Context, req Request) FirewallFacts {
	run := req.Runner
	if run == nil {
		run = firewall.ExecRunner{}
	}
	var ff FirewallFacts
	if req.NFTables {
		ff.Tool = "nft"
		read := func(on bool, table string) (string, error, bool) {
			if !on {
				return "", nil, false
			}
			out, err := run.Run(ctx, "nft", nil, "list", "table", table)
			var ce *firewall.CommandError
			if err != nil && errors.As(err, &ce) && strings.Contains(ce.Stderr, "No such file or directory") {
				return "", nil, true
			}
			return string(out), err, false
		}
		ff.NAT4, ff.NAT4Err, ff.Absent4 = read(req.IPv4, "ip flannel-ipv4")
		ff.NAT6, ff.NAT6Err, ff.Absent6 = read(req.IPv6, "ip6 flannel-ipv6")
		return ff
	}
	// The variant (legacy or nft) is chosen as the daemon chooses it, so we
	// read the rules it wrote.
	cmds := firewall.DetectIPTables(ctx, run, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ff.Tool = cmds.IPTablesSave
	if req.IPv4 {
		out, err := run.Run(ctx, cmds.IPTablesSave, nil, "-t", "nat")
		ff.NAT4, ff.NAT4Err = string(out), err
	}
	if req.IPv6 {
		out, err := run.Run(ctx, cmds.IP6TablesSave, nil, "-t", "nat")
		ff.NAT6, ff.NAT6Err = string(out), err
	}
	return ff
}
