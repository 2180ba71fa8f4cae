package extension

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// command is one run of a configured command string.
type command struct {
	key   string   // the config key it comes from: "SubnetAddCommand"
	raw   string   // the string as configured
	extra []string // NAME=value pairs added to (and overriding) flanneld's environment
	stdin string   // written to the command's stdin, then closed
}

// argv builds the argument vector exactly as upstream v0.28.2 and later
// do (spec more-backends 2.2): split on runs of whitespace, with no quoting
// or escaping, then os.Expand each word ($NAME, ${NAME}) from flanneld's
// environment plus the extras; unknown names become "". Expansion comes
// after splitting, so a value with spaces stays one argument, and nothing
// is globbed. In shell mode the string goes to /bin/sh as it is and the
// shell expands the variables from the environment itself.
func argv(raw string, env []string, shell bool) []string {
	if shell {
		return []string{"/bin/sh", "-c", raw}
	}
	lookup := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			lookup[k] = v
		}
	}
	words := strings.Fields(raw)
	for i, w := range words {
		words[i] = os.Expand(w, func(k string) string { return lookup[k] })
	}
	return words
}

// result is what a command did.
type result struct {
	output string // stdout and stderr, combined and trimmed
	err    error  // nil, an *exec.ExitError, a start error, or a timeout
	status int    // exit status; -1 when it did not exit on its own
}

// failure renders a failed run with upstream's words, so log searches
// written for upstream still find it.
func (r result) failure(raw string) string {
	return fmt.Sprintf("failed to run command: %s Err: %v Output: %s", raw, r.err, r.output)
}

// runner runs commands; tests replace it.
type runner interface {
	run(ctx context.Context, c command) result
}

// execRunner runs commands as child processes of flanneld: flanneld's
// environment plus the extras, flanneld's working directory, uid and
// capabilities, stdin a pipe holding c.stdin.
type execRunner struct {
	shell   bool
	timeout time.Duration
	environ func() []string // os.Environ
}

func (r execRunner) run(ctx context.Context, c command) result {
	env := append(r.environ(), c.extra...)
	args := argv(c.raw, env, r.shell)
	if len(args) == 0 {
		return result{err: errors.New("empty command"), status: -1}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = env // exec keeps the last value of a repeated name: the extras win
	// Upstream writes stdin into a pipe before the command starts, which
	// blocks flanneld for good past the pipe buffer (64 KiB); a Reader is
	// copied by exec while the command runs.
	cmd.Stdin = strings.NewReader(c.stdin)
	killGroup(cmd)
	// A child that keeps our output pipe open after its parent died must
	// not hold the daemon either.
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	res := result{output: strings.TrimSpace(string(out)), err: err, status: -1}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		res.status = ee.ExitCode()
	}
	if err == nil {
		res.status = 0
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.err = fmt.Errorf("timed out after %s and was killed (%w)", r.timeout, err)
	}
	return res
}
