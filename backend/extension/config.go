package extension

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Options is the "Backend" object of an extension network. Keys match
// case-insensitively and unknown keys are ignored (encoding/json), as
// upstream decodes them; upstream's own are the four commands.
type Options struct {
	PreStartupCommand   string
	PostStartupCommand  string
	SubnetAddCommand    string
	SubnetRemoveCommand string

	// RunInShell (ours) runs each command with `/bin/sh -c <command>`
	// instead of upstream's split-and-expand. It is off by default: the
	// variables and stdin of SubnetAdd/SubnetRemove come from other
	// nodes' leases, and a shell turns a careless script into code any
	// lease writer can run as root. Values reach the shell only as
	// environment variables, never spliced into the command text.
	RunInShell bool
	// CommandTimeout (ours) bounds every command, in seconds; 0 means
	// DefaultCommandTimeout. Upstream waits forever.
	CommandTimeout int
}

// DefaultCommandTimeout is how long a command may run when the config
// does not say.
const DefaultCommandTimeout = 60 * time.Second

// ParseOptions decodes the Backend object.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &o); err != nil {
			return Options{}, fmt.Errorf("error decoding backend config: %w", err)
		}
	}
	if o.CommandTimeout < 0 {
		return Options{}, fmt.Errorf("error decoding backend config: CommandTimeout must be a number of seconds >= 0, got %d", o.CommandTimeout)
	}
	return o, nil
}

func (o Options) timeout() time.Duration {
	if o.CommandTimeout == 0 {
		return DefaultCommandTimeout
	}
	return time.Duration(o.CommandTimeout) * time.Second
}

// configured reports whether a command string names anything to run.
// Upstream panics on a whitespace-only string; we treat it as empty.
func configured(cmd string) bool { return strings.TrimSpace(cmd) != "" }
