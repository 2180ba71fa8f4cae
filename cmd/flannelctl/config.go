package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/flannelng/flannel/backend/vxlan"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// upstreamBackends are the Backend.Type values upstream flanneld registers.
// A config naming anything else fails on every node.
var upstreamBackends = []string{"alloc", "extension", "host-gw", "ipip", "ipsec", "tencent-vpc", "udp", "vxlan", "wireguard"}

// checkConfig validates a network config as flanneld does: subnet.ParseConfig
// (upstream's checks and messages), the backend type, and the vxlan keys.
// warnings are advice that does not make the config invalid.
func checkConfig(data []byte) (cfg *subnet.Config, warnings []string, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errors.New("empty network config")
	}
	cfg, err = subnet.ParseConfig(data)
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(upstreamBackends, cfg.BackendType) {
		return nil, nil, fmt.Errorf("Error fetching backend: unknown backend type %q in Backend.Type (known types: %s)",
			cfg.BackendType, strings.Join(upstreamBackends, ", "))
	}
	if cfg.BackendType == vxlan.BackendType {
		if _, err := vxlan.ParseOptions(cfg.Backend); err != nil {
			return nil, nil, err
		}
	}
	if cfg.BackendDefaulted {
		warnings = append(warnings, `the config has no "Backend": flanneld uses the udp backend, as upstream flannel does; set "Backend": {"Type": "vxlan"} (or host-gw) to choose another`)
	}
	return cfg, warnings, nil
}

// describeConfig lists what a valid config means, defaults included.
func describeConfig(cfg *subnet.Config) string {
	var b strings.Builder
	line := func(k string, v any) { fmt.Fprintf(&b, "%-15s %v\n", k+":", v) }
	line("Backend", cfg.BackendType)
	if cfg.EnableIPv4 {
		line("Network", cfg.Network)
		line("SubnetLen", cfg.SubnetLen)
		line("SubnetMin", cfg.SubnetMin)
		line("SubnetMax", cfg.SubnetMax)
		line("Subnets", cfg.SubnetCount(false))
	}
	if cfg.EnableIPv6 {
		line("IPv6Network", cfg.IPv6Network)
		line("IPv6SubnetLen", cfg.IPv6SubnetLen)
		line("IPv6SubnetMin", cfg.IPv6SubnetMin)
		line("IPv6SubnetMax", cfg.IPv6SubnetMax)
		line("IPv6Subnets", cfg.SubnetCount(true))
	}
	if cfg.EnableNFTables {
		line("EnableNFTables", true)
	}
	return b.String()
}

// readInput reads FILE, or stdin for "-".
func readInput(a *app, path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	return os.ReadFile(path)
}

func inputName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

func cmdConfigValidate(_ context.Context, a *app, _ *options, _ *cmdFlags, args []string) error {
	data, err := readInput(a, args[0])
	if err != nil {
		return err
	}
	cfg, warnings, err := checkConfig(data)
	if err != nil {
		return fmt.Errorf("invalid network config %s: %w", inputName(args[0]), err)
	}
	for _, w := range warnings {
		fmt.Fprintln(a.stderr, "warning: "+w)
	}
	fmt.Fprintf(a.stdout, "valid network config %s\n%s", inputName(args[0]), describeConfig(cfg))
	return nil
}

func cmdConfigGet(ctx context.Context, a *app, o *options, _ *cmdFlags, _ []string) error {
	s, err := connect(o)
	if err != nil {
		return err
	}
	defer s.Close()
	_, raw, err := s.m.GetConfig(ctx)
	if raw == nil {
		if errors.Is(err, etcdsubnet.ErrNoConfig) {
			return fmt.Errorf("%w (key %s; write one with `flannelctl config set FILE`)", err, s.m.ConfigKey())
		}
		return err
	}
	a.stdout.Write(raw)
	if !bytes.HasSuffix(raw, []byte("\n")) {
		fmt.Fprintln(a.stdout)
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "warning: flanneld refuses this config: %v\n", err)
	}
	return nil
}

func cmdConfigSet(ctx context.Context, a *app, o *options, _ *cmdFlags, args []string) error {
	data, err := readInput(a, args[0])
	if err != nil {
		return err
	}
	cfg, warnings, err := checkConfig(data)
	if err != nil {
		return fmt.Errorf("refusing to write an invalid network config (%s): %w", inputName(args[0]), err)
	}
	for _, w := range warnings {
		fmt.Fprintln(a.stderr, "warning: "+w)
	}
	s, err := connect(o)
	if err != nil {
		return err
	}
	defer s.Close()
	key := s.m.ConfigKey()
	data = bytes.TrimSpace(data)
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	resp, err := s.cli.Txn(cctx).Then(clientv3.OpGet(key), clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return fmt.Errorf("write %s on etcd %s: %w", key, s.endpoints(), err)
	}
	fmt.Fprintf(a.stdout, "wrote %s: backend %s, %s\n", key, cfg.BackendType, describeNetworks(cfg))
	if old := resp.Responses[0].GetResponseRange().Kvs; len(old) > 0 && !bytes.Equal(bytes.TrimSpace(old[0].Value), data) {
		fmt.Fprintln(a.stderr, "note: the config changed; running flanneld daemons keep the previous one until restarted (restart every node to apply it)")
	}
	return nil
}

func describeNetworks(cfg *subnet.Config) string {
	var parts []string
	if cfg.EnableIPv4 {
		parts = append(parts, fmt.Sprintf("Network %s", cfg.Network))
	}
	if cfg.EnableIPv6 {
		parts = append(parts, fmt.Sprintf("IPv6Network %s", cfg.IPv6Network))
	}
	return strings.Join(parts, ", ")
}
