//go:build unix

package extension

import (
	"os/exec"
	"syscall"
)

// killGroup puts the command in a process group of its own and makes a
// timeout kill the whole group: a script's children (`sleep`, a hung
// `ip`) go with it.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
