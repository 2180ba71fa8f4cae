package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

const (
	defaultSubnetFile = "/run/flannel/subnet.env"
	defaultDataDir    = "/var/lib/cni/flannel"

	// debugEnv=1 turns on the debug log on stderr (the rendered delegate
	// config). Upstream always dumps it, which clutters runtime logs.
	debugEnv = "FLANNEL_CNI_DEBUG"
)

// netConf is the plugin's network configuration, read from stdin.
type netConf struct {
	types.NetConf

	// IPAM replaces the embedded IPAM struct, which only knows "type", so that
	// every key of the user's ipam object reaches the delegate.
	IPAM          map[string]any `json:"ipam,omitempty"`
	SubnetFile    string         `json:"subnetFile"`
	DataDir       string         `json:"dataDir"`
	Delegate      map[string]any `json:"delegate"`
	RuntimeConfig map[string]any `json:"runtimeConfig,omitempty"`
}

// loadNetConf parses the stdin config and fills in the defaults. Unknown keys
// are ignored, as upstream does.
func loadNetConf(data []byte) (*netConf, error) {
	n := &netConf{
		SubnetFile: defaultSubnetFile,
		DataDir:    defaultDataDir,
	}
	if err := json.Unmarshal(data, n); err != nil {
		return nil, fmt.Errorf("failed to load netconf: %w", err)
	}
	// An explicit "" means "not set": upstream would open "" (an error) or
	// write scratch files into the runtime's working directory.
	if n.SubnetFile == "" {
		n.SubnetFile = defaultSubnetFile
	}
	if n.DataDir == "" {
		n.DataDir = defaultDataDir
	}
	return n, nil
}

// validateDelegate applies upstream's checks, with upstream's messages, to
// the user's "delegate" object. An empty type is rejected too: upstream would
// fail later with "no plugin name provided".
func validateDelegate(d map[string]any) error {
	if v, ok := d["type"]; ok {
		if s, isString := v.(string); !isString || s == "" {
			return errors.New("'delegate' dictionary, if present, must have (string) 'type' field")
		}
	}
	if _, ok := d["name"]; ok {
		return errors.New("'delegate' dictionary must not have 'name' field, it'll be set by flannel")
	}
	if _, ok := d["ipam"]; ok {
		return errors.New("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel")
	}
	return nil
}

// subnetEnvError wraps a subnet.env load error in upstream's exact wording;
// runbooks and alerts grep for it.
func subnetEnvError(err error) error {
	return fmt.Errorf("failed to load flannel 'subnet.env' file: %w. Check the flannel pod log for this node.", err)
}

// renderDelegate loads subnet.env and builds the delegate config: the map and
// its JSON (Go map encoding, so keys sorted, the bytes upstream saves). For
// an ADD (adding) it also looks at the bridge: see staleBridge.
func renderDelegate(n *netConf, adding bool) (conf map[string]any, confBytes []byte, err error) {
	env, err := loadSubnetEnv(n.SubnetFile)
	if err != nil {
		return nil, nil, subnetEnvError(err)
	}
	conf, err = buildDelegate(n, env)
	if err != nil {
		return nil, nil, err
	}
	if adding {
		if why := staleBridge(conf, env, bridgeAddrs); why != "" {
			logger.Warn("replacing the bridge address (forceAddress)", "reason", why)
			conf["forceAddress"] = true
		}
	}
	confBytes, err = json.Marshal(conf)
	if err != nil {
		return nil, nil, fmt.Errorf("error serializing delegate netconf: %w", err)
	}
	return conf, confBytes, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	ctx := context.Background()
	n, err := loadNetConf(args.StdinData)
	if err != nil {
		return fmt.Errorf("failed to load flannel netconf file: %w", err)
	}
	conf, confBytes, err := renderDelegate(n, true)
	if err != nil {
		return err
	}
	typ := conf["type"].(string) // buildDelegate guarantees a non-empty string
	logger.Debug("delegateAdd: netconf sent to delegate plugin", "type", typ, "netconf", string(confBytes))

	// Find the delegate before saving anything: a missing binary is a common
	// broken install, and then there is nothing to undo.
	if _, err := invoke.FindInPath(typ, filepath.SplitList(os.Getenv("CNI_PATH"))); err != nil {
		return fmt.Errorf("failed to delegate add: %w", err)
	}

	// Save the rendered config for DEL and CHECK: DEL must work without
	// subnet.env (daemon down, lease changed), so it replays these bytes.
	path := filepath.Join(n.DataDir, scratchName(args.ContainerID, args.IfName))
	if err := saveScratch(path, confBytes); err != nil {
		return fmt.Errorf("save delegate config for DEL: %w", err)
	}

	result, err := invoke.DelegateAdd(ctx, typ, confBytes, nil)
	if err != nil {
		undoAdd(ctx, typ, confBytes, path, err)
		return fmt.Errorf("failed to delegate add: %w", err)
	}
	// The delegate's result is passed on as is, in whatever version it chose.
	return result.Print()
}

// undoAdd rolls back a failed delegate ADD, as the CNI spec asks of a plugin
// whose delegate fails. Upstream leaves the scratch file and whatever the
// delegate had set up (containernetworking/plugins#426); the bridge plugin,
// for one, leaves the veth behind when it fails after creating it.
//
// The scratch file is kept when the delegate's DEL fails too (see
// delegateDelDone for what counts as failing), so that the DEL the runtime
// sends after a failed ADD can retry the cleanup. A delegate that rejected
// the config outright set nothing up, so then the file goes regardless.
func undoAdd(ctx context.Context, typ string, confBytes []byte, path string, addErr error) {
	delErr := invoke.DelegateDel(ctx, typ, confBytes, nil)
	if !delegateDelDone(delErr) && !isConfigRejected(addErr) {
		logger.Warn("rollback of failed ADD: delegate DEL failed; keeping the saved config for the runtime's DEL",
			"type", typ, "path", path, "err", delErr)
		return
	}
	if delErr != nil {
		logger.Debug("rollback of failed ADD: delegate DEL failed, but left nothing a retry could remove", "type", typ, "err", delErr)
	}
	if err := removeScratch(path); err != nil {
		logger.Warn("rollback of failed ADD: remove saved config", "path", path, "err", err)
	}
}

// isConfigRejected reports whether a delegate refused a config outright:
// its cniVersion (code 1) or its JSON (code 6). The CNI skeleton checks both
// before the plugin's own code runs, so such a delegate did nothing.
func isConfigRejected(err error) bool {
	var e *types.Error
	return errors.As(err, &e) && (e.Code == types.ErrIncompatibleCNIVersion || e.Code == types.ErrDecodingFailure)
}

// goneMarkers are error texts of delegates failing to remove something that
// is not there (iptables, netlink, files).
var goneMarkers = []string{"does not exist", "no such file or directory", "no such device", "no such process", "link not found"}

// delegateDelDone reports whether a delegate DEL that returned err left
// nothing that retrying it could still remove, so that the saved config has
// served its purpose:
//   - it succeeded;
//   - it rejected the config outright (version, JSON): it never set up
//     anything from it, and a retry would fail the same way forever, even
//     after the operator fixes the config, since DEL replays the saved bytes
//     (upstream leaked such files on failed ADDs);
//   - it failed removing something already gone. The spec makes DEL of
//     missing resources a success, but not every delegate manages: Debian's
//     bridge 1.1.1 with iptables-nft fails on the masquerade chain that a
//     failed ADD never created, so its DEL would fail on every retry.
func delegateDelDone(err error) bool {
	if err == nil || isConfigRejected(err) {
		return true
	}
	msg := strings.ToLower(err.Error())
	var e *types.Error
	if errors.As(err, &e) {
		msg = strings.ToLower(e.Msg + " " + e.Details)
	}
	for _, m := range goneMarkers {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

func cmdDel(args *skel.CmdArgs) error {
	ctx := context.Background()
	n, err := loadNetConf(args.StdinData)
	if err != nil {
		return fmt.Errorf("failed to load flannel netconf file: %w", err)
	}
	sc, err := readScratch(n.DataDir, args.ContainerID, args.IfName)
	if errors.Is(err, fs.ErrNotExist) {
		// Per spec, DEL of something already removed (or never added) is
		// success. Without the saved config there is nothing to hand the
		// delegate anyway: DEL never reads subnet.env.
		return nil
	}
	if err != nil {
		return err
	}
	saved, err := parseScratch(sc.data)
	if err != nil {
		// Nothing can replay this file: not us, not a retry. An error
		// here keeps the pod Terminating for ever (the runtime retries DEL
		// with the same file), so DEL succeeds, as upstream's does
		// (flannel-io/cni-plugin#33), and the file is moved aside for the
		// operator. The delegate's state for this attachment (the veth,
		// the IP) is left to the runtime's GC and the delegate's own.
		aside, mvErr := moveScratchAside(sc.path)
		if mvErr != nil {
			logger.Warn("saved delegate config is unusable and could not be moved aside; DEL counted as done",
				"path", sc.path, "err", err, "move_err", mvErr)
			return nil
		}
		logger.Warn("saved delegate config is unusable; DEL counted as done without calling the delegate, and the file moved aside for inspection",
			"path", sc.path, "moved_to", aside, "err", err)
		return nil
	}
	if sc.legacy && saved.name != n.Name {
		// The container-ID-only file belongs to another network sharing
		// dataDir, not to this attachment.
		return nil
	}

	err = invoke.DelegateDel(ctx, saved.typ, sc.data, nil)
	if !delegateDelDone(err) {
		// Keep the file: the runtime retries DEL and must find it again.
		return fmt.Errorf("failed to delegate del: %w", err)
	}
	if err != nil {
		logger.Warn("delegate DEL failed, but left nothing a retry could remove; counting it as done", "path", sc.path, "err", err)
	}
	if sc.legacy {
		// See scratch.go: the upstream-named file may hold another interface's
		// state, so it is left for GC.
		return nil
	}
	return removeScratch(sc.path)
}

func cmdCheck(args *skel.CmdArgs) error {
	ctx := context.Background()
	n, err := loadNetConf(args.StdinData)
	if err != nil {
		return fmt.Errorf("failed to load flannel netconf file: %w", err)
	}
	sc, err := readScratch(n.DataDir, args.ContainerID, args.IfName)
	if errors.Is(err, fs.ErrNotExist) {
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("no saved delegate config for container %s interface %s in %s: not added by this plugin, or already deleted",
				args.ContainerID, args.IfName, n.DataDir), "")
	}
	if err != nil {
		return err
	}
	saved, err := parseScratch(sc.data)
	if err != nil {
		return fmt.Errorf("saved delegate config %s is unusable: %w", sc.path, err)
	}
	if sc.legacy && saved.name != n.Name {
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("no saved delegate config for network %s, container %s interface %s in %s",
				n.Name, args.ContainerID, args.IfName, n.DataDir), "")
	}
	var conf map[string]any
	if err := json.Unmarshal(sc.data, &conf); err != nil {
		return fmt.Errorf("saved delegate config %s is unusable: %w", sc.path, err)
	}
	if n.RawPrevResult != nil {
		prev, err := checkPrevResult(n, saved.cniVersion)
		if err != nil {
			return err
		}
		conf["prevResult"] = prev
	}
	confBytes, err := json.Marshal(conf)
	if err != nil {
		return fmt.Errorf("error serializing delegate netconf: %w", err)
	}
	if err := invoke.DelegateCheck(ctx, saved.typ, confBytes, nil); err != nil {
		return fmt.Errorf("failed to delegate check: %w", err)
	}
	return nil
}

// checkPrevResult returns the runtime's prevResult for the delegate's CHECK:
// in the version of the saved delegate config (they differ only when
// cniVersion changed since ADD; the delegate parses prevResult as its own
// config's version), and with the gateway filled in on routes that have
// none.
//
// The routes flannel adds (one per network) have no gateway; the delegates
// that use CNI's ipam.ConfigureIface (bridge, ptp, ipvlan, macvlan) install
// them via the first gateway of their family. Before
// containernetworking/plugins#887 (v1.3.0) their CHECK looked such a route up
// with an empty gateway and failed on every pod, and Debian bookworm ships
// 1.1.1. Naming the gateway the route was installed with describes the same
// state and passes old and new delegates alike.
func checkPrevResult(n *netConf, want string) (any, error) {
	if want == "" {
		want = n.CNIVersion
	}
	pc := n.NetConf
	pc.RawPrevResult = maps.Clone(n.RawPrevResult)
	if err := cniversion.ParsePrevResult(&pc); err != nil {
		return nil, fmt.Errorf("parse prevResult: %w", err)
	}
	res, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return nil, fmt.Errorf("parse prevResult: %w", err)
	}
	filled := fillRouteGateways(res)
	if !filled && want == n.CNIVersion {
		return n.RawPrevResult, nil
	}
	r, err := res.GetAsVersion(want)
	if err != nil {
		return nil, fmt.Errorf("convert prevResult from %s to the saved config's version %s: %w", n.CNIVersion, want, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("marshal prevResult: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("marshal prevResult: %w", err)
	}
	return m, nil
}

// fillRouteGateways gives every gateway-less route the first gateway of its
// family among the result's IPs, as ipam.ConfigureIface does when it installs
// them. It reports whether it changed anything.
func fillRouteGateways(res *current.Result) bool {
	var v4gw, v6gw net.IP
	for _, ipc := range res.IPs {
		switch {
		case ipc.Gateway == nil:
		case ipc.Gateway.To4() != nil && v4gw == nil:
			v4gw = ipc.Gateway
		case ipc.Gateway.To4() == nil && v6gw == nil:
			v6gw = ipc.Gateway
		}
	}
	changed := false
	for _, r := range res.Routes {
		if r == nil || r.GW != nil {
			continue
		}
		gw := v6gw
		if r.Dst.IP.To4() != nil {
			gw = v4gw
		}
		if gw != nil {
			r.GW = gw
			changed = true
		}
	}
	return changed
}

// cmdStatus reports whether an ADD could succeed now: subnet.env must be
// readable and complete (the daemon writes it once it holds a lease), the
// config must render, and the delegate must be ready too (the spec asks a
// plugin to forward STATUS to its delegates).
func cmdStatus(args *skel.CmdArgs) error {
	ctx := context.Background()
	n, err := loadNetConf(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("failed to load flannel netconf file: %v", err), "")
	}
	conf, confBytes, err := renderDelegate(n, false)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	typ := conf["type"].(string)
	if err := invoke.DelegateStatus(ctx, typ, confBytes, nil); err != nil {
		var e *types.Error
		if errors.As(err, &e) {
			return e
		}
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("delegate %s: %v", typ, err), "")
	}
	return nil
}

// gcKeys are passed from our stdin to the delegate on GC. The second is the
// misspelt key that libcni also sends (containernetworking/cni#1101).
var gcKeys = []string{"cni.dev/valid-attachments", "cni.dev/attachments"}

// cmdGC forwards GC to the delegate, which releases what it holds (IPAM
// reservations) for attachments the runtime no longer knows. Once that
// succeeded, our own saved configs for those attachments are useless and are
// removed too, including ones leaked by upstream's failed ADDs.
func cmdGC(args *skel.CmdArgs) error {
	ctx := context.Background()
	n, err := loadNetConf(args.StdinData)
	if err != nil {
		return fmt.Errorf("failed to load flannel netconf file: %w", err)
	}
	conf, _, err := renderDelegate(n, false)
	if err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(args.StdinData, &raw); err != nil {
		return fmt.Errorf("failed to load flannel netconf file: %w", err)
	}
	for _, k := range gcKeys {
		if v, ok := raw[k]; ok {
			conf[k] = v
		}
	}
	confBytes, err := json.Marshal(conf)
	if err != nil {
		return fmt.Errorf("error serializing delegate netconf: %w", err)
	}
	typ := conf["type"].(string)
	if err := invoke.DelegateGC(ctx, typ, confBytes, nil); err != nil {
		return fmt.Errorf("failed to delegate gc: %w", err)
	}
	if _, told := raw[gcKeys[0]]; !told {
		// Without the list we cannot tell stale attachments from live ones.
		return nil
	}
	return sweepScratch(n.DataDir, n.Name, n.ValidAttachments)
}

// logger writes to stderr, which runtimes keep in their logs. Debug records
// (the rendered delegate config) only with FLANNEL_CNI_DEBUG=1.
var logger = newLogger(os.Getenv(debugEnv), os.Stderr)

func newLogger(debug string, w io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if debug == "1" || debug == "true" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("plugin", "flannel")
}
