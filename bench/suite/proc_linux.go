//go:build linux

package suite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of the times in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// ProcCPU is a process's CPU time so far: its own threads (live and
// exited) and its reaped children.
type ProcCPU struct {
	Self     time.Duration // utime + stime
	Children time.Duration // cutime + cstime (children that were waited for)
}

// ReadProcCPU reads /proc/<pid>/stat. Its resolution is 10 ms.
func ReadProcCPU(pid int) (ProcCPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcCPU{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (ProcCPU, error) {
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ProcCPU{}, errors.New("parse /proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime, cstime are 14 to 17.
	if len(f) < 15 {
		return ProcCPU{}, fmt.Errorf("parse /proc stat: %d fields", len(f)+2)
	}
	var t [4]int64
	for j := range t {
		v, err := strconv.ParseInt(f[11+j], 10, 64)
		if err != nil {
			return ProcCPU{}, fmt.Errorf("parse /proc stat field %d: %w", 14+j, err)
		}
		t[j] = v
	}
	tick := time.Second / userHZ
	return ProcCPU{Self: time.Duration(t[0]+t[1]) * tick, Children: time.Duration(t[2]+t[3]) * tick}, nil
}

// ReadThreadsCPU sums the nanosecond run times of the process's live
// threads (/proc/<pid>/task/*/schedstat). It is precise where ReadProcCPU
// counts 10 ms ticks, but misses threads that exited; a Go daemon keeps its
// threads, so over an idle window the two agree up to the tick.
func ReadThreadsCPU(pid int) (time.Duration, error) {
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(paths) == 0 {
		return 0, fmt.Errorf("threads of pid %d: none found", pid)
	}
	var sum time.Duration
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that just exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", p, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// ReadRSS returns the resident set now, split into anonymous memory (heap,
// stacks) and file pages (the executable's code and data that were
// touched), in bytes.
func ReadRSS(pid int) (anon, file uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	if anon, err = statusKB(b, "RssAnon:"); err != nil {
		return 0, 0, err
	}
	file, err = statusKB(b, "RssFile:")
	return anon, file, err
}

// statusKB reads a "Name:   123 kB" line of /proc/<pid>/status.
func statusKB(b []byte, name string) (uint64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", name, rest, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s line in /proc status", name)
}

// ReadPeakRSS returns VmHWM, the process's peak resident set, in bytes.
func ReadPeakRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return statusKB(b, "VmHWM:")
}

// ForkCounter counts the processes a daemon starts, with all their
// descendants, through the kernel's process events connector (cn_proc):
// every fork in the system is reported, so a short-lived iptables-save is
// never missed the way sampling /proc could miss it. It needs root in the
// initial network, user and PID namespaces.
type ForkCounter struct {
	fd   int
	root int
	stop chan struct{} // closed by Stop
	done chan struct{} // closed when the reader returned

	mu    sync.Mutex
	tree  map[int]bool   // the daemon and its descendants (tgids)
	names map[int]string // descendant → command line, read at exec
	order []int          // descendants in fork order
	err   error          // lost events or the receive error that ended counting
}

// Connector constants (linux/connector.h, linux/cn_proc.h).
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCNMcastListen = 1
	procCNMcastIgnore = 2
	procEventFork     = 0x00000001
	procEventExec     = 0x00000002
	nlmsgHdrLen       = 16
	cnMsgLen          = 20
)

// CountForks starts counting the processes started by pid and its
// descendants. Stop ends it.
func CountForks(pid int) (*ForkCounter, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("process events connector: socket: %w", err)
	}
	fc := &ForkCounter{fd: fd, root: pid, stop: make(chan struct{}), done: make(chan struct{}),
		tree: map[int]bool{pid: true}, names: map[int]string{}}
	fail := func(what string, err error) (*ForkCounter, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("process events connector: %s: %w", what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: 0}); err != nil {
		return fail("bind", err)
	}
	// A receive timeout lets the reader notice Stop.
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("set receive timeout", err)
	}
	// A busy machine forks a lot; do not drop our daemon's events.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := fc.control(procCNMcastListen); err != nil {
		return fail("listen", err)
	}
	go fc.read()
	return fc, nil
}

func (fc *ForkCounter) control(op uint32) error {
	b := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.NLMSG_DONE)
	ne.PutUint32(b[12:], uint32(os.Getpid()))
	ne.PutUint32(b[16:], cnIdxProc)
	ne.PutUint32(b[20:], cnValProc)
	ne.PutUint16(b[32:], 4)
	ne.PutUint32(b[36:], op)
	return unix.Sendto(fc.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (fc *ForkCounter) read() {
	defer close(fc.done)
	buf := make([]byte, 64<<10)
	ne := binary.NativeEndian
	for {
		n, _, err := unix.Recvfrom(fc.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				select {
				case <-fc.stop:
					return
				default:
					continue
				}
			}
			fc.mu.Lock()
			if errors.Is(err, unix.ENOBUFS) {
				fc.err = errors.New("events lost (receive buffer overflow): the count may be low")
			} else {
				fc.err = err
			}
			fc.mu.Unlock()
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return
		}
		for off := 0; off+nlmsgHdrLen <= n; {
			l := int(ne.Uint32(buf[off:]))
			if l < nlmsgHdrLen || off+l > n {
				break
			}
			msg := buf[off+nlmsgHdrLen : off+l]
			off += (l + 3) &^ 3
			if len(msg) < cnMsgLen+16 {
				continue
			}
			ev := msg[cnMsgLen:]
			what := ne.Uint32(ev[0:])
			data := ev[16:]
			switch {
			case what == procEventFork && len(data) >= 16:
				parentTgid, childPid, childTgid := int(ne.Uint32(data[4:])), int(ne.Uint32(data[8:])), int(ne.Uint32(data[12:]))
				if childPid != childTgid {
					continue // a new thread, not a process
				}
				fc.mu.Lock()
				if fc.tree[parentTgid] {
					fc.tree[childTgid] = true
					fc.order = append(fc.order, childTgid)
				}
				fc.mu.Unlock()
			case what == procEventExec && len(data) >= 8:
				tgid := int(ne.Uint32(data[4:]))
				fc.mu.Lock()
				mine := fc.tree[tgid] && tgid != fc.root
				fc.mu.Unlock()
				if !mine {
					continue
				}
				// Read at once: iptables-save lives a few milliseconds.
				// A process that already exited has no cmdline but keeps
				// its (truncated) comm until it is reaped.
				name := ""
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", tgid)); err == nil {
					name = commandName(b)
				}
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", tgid)); name == "" && err == nil {
					name = strings.TrimSpace(string(b))
				}
				fc.mu.Lock()
				fc.names[tgid] = name
				fc.mu.Unlock()
			}
		}
	}
}

// commandName renders argv (NUL-separated) as "prog arg1 arg2" with the
// program's base name.
func commandName(cmdline []byte) string {
	parts := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(parts) == 0 || parts[0] == "" {
		return ""
	}
	parts[0] = filepath.Base(parts[0])
	return strings.Join(parts, " ")
}

// Stop ends counting and returns the count.
func (fc *ForkCounter) Stop() ForkCount {
	_ = fc.control(procCNMcastIgnore)
	close(fc.stop)
	select {
	case <-fc.done:
		unix.Close(fc.fd)
	case <-time.After(2 * time.Second):
		// The reader is stuck; leave the socket to it rather than close
		// a descriptor number another goroutine may reuse.
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := ForkCount{Processes: len(fc.order), ByCommand: map[string]int{}, Err: fc.err}
	for _, pid := range fc.order {
		name, ok := fc.names[pid]
		if !ok || name == "" {
			name = "?"
		}
		out.ByCommand[name]++
	}
	return out
}
