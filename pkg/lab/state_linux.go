//go:build linux

package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// StateFile is the name of the file in Dir where a lab records its
// namespaces, addresses and processes, so that `flannel-lab down` (or Load)
// can clean up a lab whose program is gone.
const StateFile = "lab.json"

// State is the recorded shape of a lab.
type State struct {
	Prefix       string         `json:"prefix"`
	Dir          string         `json:"dir"`
	FabricNS     string         `json:"fabricNS"`
	IPv6         bool           `json:"ipv6"`
	EtcdEndpoint string         `json:"etcdEndpoint"`
	Binaries     Binaries       `json:"binaries"`
	Hosts        []HostState    `json:"hosts"`
	Pods         []PodState     `json:"pods,omitempty"`
	Processes    []ProcessState `json:"processes,omitempty"`
}

type HostState struct {
	Name     string     `json:"name"`
	NS       string     `json:"ns"`
	IP       netip.Addr `json:"ip"`
	IPv6     netip.Addr `json:"ipv6,omitzero"`
	Dir      string     `json:"dir"`
	External bool       `json:"external,omitempty"`
	Index    int        `json:"index"`
	Veth     string     `json:"veth"`
}

type PodState struct {
	Name string     `json:"name"`
	NS   string     `json:"ns"`
	Host string     `json:"host"`
	IP   netip.Addr `json:"ip,omitzero"`
	IPv6 netip.Addr `json:"ipv6,omitzero"`
}

type ProcessState struct {
	Pid       int      `json:"pid"`
	StartTime uint64   `json:"startTime"` // /proc/<pid>/stat field 22, to tell a reused PID
	NS        string   `json:"ns"`
	Argv      []string `json:"argv"`
	LogPath   string   `json:"log"`
	Running   bool     `json:"running"`
}

// State returns the lab's current shape.
func (l *Lab) State() State {
	ep := l.EtcdEndpoint()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := State{
		Prefix:       l.prefix,
		Dir:          l.dir,
		FabricNS:     l.fabricNS,
		IPv6:         l.ipv6,
		EtcdEndpoint: ep,
		Binaries:     l.bin,
	}
	for _, h := range append(append([]*Host(nil), l.hosts...), l.externals...) {
		s.Hosts = append(s.Hosts, HostState{
			Name: h.Name, NS: h.NS, IP: h.IP, IPv6: h.IPv6, Dir: h.Dir,
			External: h.external, Index: h.index, Veth: h.veth,
		})
	}
	for _, p := range l.pods {
		s.Pods = append(s.Pods, PodState{Name: p.Name, NS: p.NS, Host: p.Host.Name, IP: p.IP, IPv6: p.IPv6})
	}
	for _, p := range l.procs {
		s.Processes = append(s.Processes, ProcessState{
			Pid: p.Pid, StartTime: p.startTime, NS: p.NS, Argv: p.Argv, LogPath: p.LogPath,
			Running: !p.Exited(),
		})
	}
	return s
}

// saveState writes Dir/lab.json. It is best effort: a lab works without it,
// so a failure is only logged.
func (l *Lab) saveState() {
	s := l.State()
	b, err := json.MarshalIndent(s, "", "  ")
	if err == nil {
		path := filepath.Join(l.dir, StateFile)
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, append(b, '\n'), 0o644); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		l.logf("lab %s: save state: %v", l.prefix, err)
	}
}

// ReadState reads dir/lab.json.
func ReadState(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return State{}, fmt.Errorf("read lab state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("parse %s: %w", filepath.Join(dir, StateFile), err)
	}
	if !prefixRE.MatchString(s.Prefix) {
		return State{}, fmt.Errorf("%s: bad prefix %q", filepath.Join(dir, StateFile), s.Prefix)
	}
	return s, nil
}

// Load re-opens the lab recorded in dir/lab.json by another program (such
// as `flannel-lab up`). The returned lab controls the recorded namespaces
// and processes (it signals a recorded PID only while that PID still names
// the process that was started); its Close stops them, deletes every
// namespace with the prefix and keeps dir. Processes it reports cannot give
// exit codes.
func Load(dir string) (*Lab, error) {
	s, err := ReadState(dir)
	if err != nil {
		return nil, err
	}
	l := &Lab{
		prefix:   s.Prefix,
		dir:      s.Dir,
		fabricNS: s.FabricNS,
		ipv6:     s.IPv6,
		detached: true,
		bin:      s.Binaries,
		logf:     func(string, ...any) {},
		etcdTLS:  strings.HasPrefix(s.EtcdEndpoint, "https:"),
	}
	if l.dir == "" {
		l.dir = dir
	}
	byName := map[string]*Host{}
	for _, hs := range s.Hosts {
		h := &Host{Name: hs.Name, NS: hs.NS, IP: hs.IP, IPv6: hs.IPv6, Dir: hs.Dir,
			index: hs.Index, veth: hs.Veth, external: hs.External, nextPod: 1}
		byName[h.Name] = h
		if h.external {
			l.externals = append(l.externals, h)
		} else {
			l.hosts = append(l.hosts, h)
		}
		l.nextIndex = max(l.nextIndex, h.index)
	}
	for _, ps := range s.Pods {
		h := byName[ps.Host]
		if h == nil {
			return nil, fmt.Errorf("lab state: pod %s on unknown host %s", ps.Name, ps.Host)
		}
		l.pods = append(l.pods, &Pod{Name: ps.Name, NS: ps.NS, Host: h, IP: ps.IP, IPv6: ps.IPv6})
		h.nextPod++
	}
	for _, ps := range s.Processes {
		p := &Process{Pid: ps.Pid, NS: ps.NS, Argv: ps.Argv, LogPath: ps.LogPath, startTime: ps.StartTime}
		l.procs = append(l.procs, p)
		if len(p.Argv) > 0 && p.NS == l.fabricNS && isEtcdProgram(p.Argv[0], s.Binaries) {
			l.etcd = p
		}
	}
	return l, nil
}
