package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner starts one external program: name with args, stdin fed from stdin
// (none when nil), stdout returned. Every OS effect of the iptables and
// nftables managers goes through it, so a test can count processes or run
// them in another network namespace (`ip netns exec NS name args...`).
type Runner interface {
	Run(ctx context.Context, name string, stdin []byte, args ...string) ([]byte, error)
}

// ExecRunner runs programs with os/exec in the caller's network namespace.
type ExecRunner struct{}

// Run implements Runner. A failure is a *CommandError carrying stderr.
func (ExecRunner) Run(ctx context.Context, name string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CommandError{Name: name, Args: args, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// CommandError is a failed program run; Stderr lets callers tell "no such
// table" from real failures.
type CommandError struct {
	Name   string
	Args   []string
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s %s: %v", e.Name, strings.Join(e.Args, " "), e.Err)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// stderrOf returns the stderr text of a failed run, "" when unknown.
func stderrOf(err error) string {
	var ce *CommandError
	if errors.As(err, &ce) {
		return ce.Stderr
	}
	return ""
}

// notInstalled reports whether err says the program does not exist, which the
// cleanup of the other mode counts as "nothing to clean".
func notInstalled(err error) bool {
	return errors.Is(err, exec.ErrNotFound)
}
