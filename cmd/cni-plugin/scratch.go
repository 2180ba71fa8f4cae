package main

// Scratch files: ADD saves the rendered delegate config under dataDir, and
// DEL and CHECK replay it, so they work without subnet.env.
//
// File names. Upstream names the file after the container ID alone, so two
// flannel interfaces in one container overwrite each other's state. We key
// it by container ID and interface name, "<containerID>:<ifname>", except
// for the interface "eth0", which keeps upstream's name "<containerID>".
// Neither a container ID nor an interface name may contain ':' (the CNI
// skeleton validates both), so the two forms can never collide.
//
// Why this keeps DEL working both ways on a node that runs, or ran, either
// plugin:
//   - eth0, the interface of nearly every pod, is byte for byte upstream's
//     format and name: each plugin deletes what the other added.
//   - another interface added by us: only we find its file. Upstream would
//     find nothing after a downgrade and report success; that is the price
//     of not letting a second interface clobber the first.
//   - another interface added by upstream (for example a multus attachment
//     named net1): our DEL finds no "<cid>:net1" and falls back to
//     "<cid>", if that file is for the same network. The fallback file may
//     just as well be the state of this container's eth0 attachment (and
//     then this DEL is a repeated DEL of an interface we already deleted).
//     Replaying it for net1 is harmless either way, since the delegates key
//     their state by interface (bridge deletes the link CNI_IFNAME,
//     host-local releases by container ID and interface), but removing it
//     could lose eth0's state. So a fallback DEL never removes the file; GC
//     removes it once the container is gone.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
)

// legacyIfName is the interface whose scratch file keeps upstream's name.
const legacyIfName = "eth0"

// scratchName is the file name, under dataDir, of one attachment's saved
// delegate config.
func scratchName(containerID, ifName string) string {
	if ifName == legacyIfName {
		return containerID
	}
	return containerID + ":" + ifName
}

// parseScratchName is the inverse of scratchName. For an upstream-style name
// (container ID only) it returns legacy=true and ifName "". Names that
// neither plugin writes (temporary files, anything else) give ok=false.
func parseScratchName(name string) (containerID, ifName string, legacy, ok bool) {
	containerID, ifName, keyed := strings.Cut(name, ":")
	if utils.ValidateContainerID(containerID) != nil {
		return "", "", false, false
	}
	if !keyed {
		return containerID, "", true, true
	}
	if utils.ValidateInterfaceName(ifName) != nil || ifName == legacyIfName {
		return "", "", false, false
	}
	return containerID, ifName, false, true
}

// scratch is one saved delegate config.
type scratch struct {
	path   string
	data   []byte
	legacy bool // found under upstream's name by the fallback for a non-eth0 interface
}

// readScratch reads the saved config of an attachment, falling back to
// upstream's name for interfaces other than eth0 (see the top of this file).
// A missing file gives an error matching fs.ErrNotExist.
func readScratch(dataDir, containerID, ifName string) (scratch, error) {
	path := filepath.Join(dataDir, scratchName(containerID, ifName))
	data, err := os.ReadFile(path)
	if err == nil {
		return scratch{path: path, data: data}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || ifName == legacyIfName {
		return scratch{}, err
	}
	legacyPath := filepath.Join(dataDir, containerID)
	data, err = os.ReadFile(legacyPath)
	if err != nil {
		return scratch{}, err
	}
	return scratch{path: legacyPath, data: data, legacy: true}, nil
}

// savedConf is what DEL, CHECK and GC need to know about a saved config.
type savedConf struct {
	cniVersion, name, typ string
}

// parseScratch reads saved bytes far enough to run a delegate with them: a
// JSON object with a plugin type. It is deliberately lenient about all other
// keys (upstream parses a full types.NetConf, so a delegate key of an
// unexpected JSON type makes its DEL give up): whatever ADD saved, DEL must
// be able to replay, and the delegate is the judge of the rest.
func parseScratch(data []byte) (savedConf, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return savedConf{}, fmt.Errorf("failed to parse netconf: %w", err)
	}
	if m == nil {
		return savedConf{}, errors.New("failed to parse netconf: not a JSON object")
	}
	typ, _ := m["type"].(string)
	if typ == "" {
		return savedConf{}, errors.New("failed to parse netconf: no plugin type")
	}
	name, _ := m["name"].(string)
	cniVersion, _ := m["cniVersion"].(string)
	return savedConf{cniVersion: cniVersion, name: name, typ: typ}, nil
}

// saveScratch writes data to path: directory 0700 and file 0600 as upstream,
// but through a temporary file and a rename, so that a crash never leaves a
// truncated file that DEL cannot use. The temporary name starts with '.',
// which no container ID does, so neither plugin mistakes it for state.
func saveScratch(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	committed = true
	// Make the rename itself durable; DEL after a power loss needs the file.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// removeScratch removes a saved config; one already gone is fine.
func removeScratch(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove saved delegate config: %w", err)
	}
	return nil
}

// unusablePrefix starts the name of a saved config DEL could not parse,
// moved aside. A '.' starts no container ID, so neither plugin reads such
// a file as an attachment's state, and GC leaves it alone.
const unusablePrefix = ".unusable-"

// moveScratchAside renames the saved config at path to unusablePrefix +
// its name, in the same directory, and returns the new path. An earlier
// file moved aside under that name is replaced.
func moveScratchAside(path string) (string, error) {
	aside := filepath.Join(filepath.Dir(path), unusablePrefix+filepath.Base(path))
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("move unusable delegate config aside: %w", err)
	}
	return aside, nil
}

// sweepScratch removes the saved configs of network that belong to none of
// the valid attachments. Files of other networks sharing dataDir, files that
// do not parse, and names neither plugin writes are left alone. An
// upstream-style file (container ID only) stays while any valid attachment
// has that container ID, since it may be the state of any of its interfaces.
// Every file is tried; the errors are joined.
func sweepScratch(dataDir, network string, valid []types.GCAttachment) error {
	entries, err := os.ReadDir(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gc saved delegate configs: %w", err)
	}
	validAttachment := make(map[types.GCAttachment]bool, len(valid))
	validContainer := make(map[string]bool, len(valid))
	for _, a := range valid {
		validAttachment[a] = true
		validContainer[a.ContainerID] = true
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		cid, ifName, legacy, ok := parseScratchName(e.Name())
		if !ok {
			continue
		}
		if legacy && validContainer[cid] || !legacy && validAttachment[types.GCAttachment{ContainerID: cid, IfName: ifName}] {
			continue
		}
		path := filepath.Join(dataDir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if saved, err := parseScratch(data); err != nil || saved.name != network {
			continue
		}
		if err := removeScratch(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}
