//go:build linux

package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a daemon the lab started inside a namespace. Its stdout and
// stderr go, appended, to LogPath.
type Process struct {
	Pid     int
	NS      string
	Argv    []string
	LogPath string

	logStart  int64  // offset in LogPath where this run's output begins
	startTime uint64 // /proc/<pid>/stat starttime, to recognise the process after Load

	cmd      *exec.Cmd     // nil for a process loaded from a state file
	done     chan struct{} // closed when cmd.Wait returned
	mu       sync.Mutex
	exitCode int
}

// stopGrace bounds how long Close waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// start runs argv inside ns via `ip netns exec`, which execs the program in
// place, so Pid is the program's own PID.
func startProcess(ns string, env []string, logPath string, detached bool, argv ...string) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("start process: no command")
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	fmt.Fprintf(f, "==== lab: %s start in %s: %s\n", time.Now().Format(time.RFC3339Nano), ns, strings.Join(argv, " "))
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("seek log: %w", err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = env
	cmd.Stdout = f
	cmd.Stderr = f
	// Its own process group (or session, when it must outlive us) keeps a
	// Ctrl-C meant for the test runner or the shell from reaching it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: !detached, Setsid: detached}
	if !detached {
		// If the test process dies without running its cleanups (a
		// timeout panic, a kill), its daemons die with it. The signal is
		// tied to the OS thread that forked; Go only retires threads of
		// goroutines that exit locked, which InNS avoids unless it
		// cannot switch back.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", argv[0], ns, err)
	}
	p := &Process{
		Pid:      cmd.Process.Pid,
		NS:       ns,
		Argv:     append([]string(nil), argv...),
		LogPath:  logPath,
		logStart: off,
		cmd:      cmd,
		done:     make(chan struct{}),
	}
	p.startTime, _ = procStartTime(p.Pid)
	go func() {
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = exitCodeOf(ee.ProcessState)
		case err != nil:
			code = -1
		}
		p.mu.Lock()
		p.exitCode = code
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// exitCodeOf follows the shell convention: 128+N for death by signal N.
func exitCodeOf(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Signal sends sig to the process. Signalling a process that has exited is an
// error.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("signal pid %d: process already exited", p.Pid)
	}
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal pid %d: unsupported signal %v", p.Pid, sig)
	}
	if p.cmd != nil {
		if err := p.cmd.Process.Signal(s); err != nil {
			return fmt.Errorf("signal %v to pid %d: %w", sig, p.Pid, err)
		}
		return nil
	}
	if err := syscall.Kill(p.Pid, s); err != nil {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.Pid, err)
	}
	return nil
}

// Kill sends SIGKILL and waits (bounded) until the process is gone. Killing
// a process that already exited is not an error.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && !p.Exited() {
		return err
	}
	if _, err := p.Wait(stopGrace); err != nil {
		return err
	}
	return nil
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL. It returns the exit
// code as Wait does.
func (p *Process) Stop(grace time.Duration) (int, error) {
	if !p.Exited() {
		_ = p.Signal(syscall.SIGTERM)
	}
	code, err := p.Wait(grace)
	if err == nil {
		return code, nil
	}
	if err := p.Kill(); err != nil {
		return -1, err
	}
	return p.Wait(time.Second)
}

// Wait waits up to timeout for the process to exit and returns its exit code
// (128+N if signal N killed it). The error is non-nil only if it is still
// running after timeout. For a process re-opened with Load the code is
// unknown and reported as -1.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	if p.cmd != nil {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			// An exit racing with the timer still counts.
			select {
			case <-p.done:
			default:
				return -1, fmt.Errorf("pid %d (%s) still running after %s", p.Pid, p.name(), timeout)
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exitCode, nil
	}
	deadline := time.Now().Add(timeout)
	for !p.Exited() {
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("pid %d (%s) still running after %s", p.Pid, p.name(), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1, nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	if p.cmd != nil {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	st, err := procStartTime(p.Pid)
	return err != nil || st != p.startTime
}

// Log returns what this run of the process wrote so far (its log file from
// the marker line of this start on).
func (p *Process) Log() string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(p.logStart, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 64<<20))
	return string(b)
}

func (p *Process) name() string {
	if len(p.Argv) == 0 {
		return "?"
	}
	return p.Argv[0]
}

// procStartTime reads field 22 of /proc/<pid>/stat, the start time in clock
// ticks since boot, which tells a PID's process from a later one that
// reuses the PID. A zombie counts as gone.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	if fields[0] == "Z" || fields[0] == "X" {
		return 0, fmt.Errorf("pid %d is a zombie", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// tail returns at most the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
