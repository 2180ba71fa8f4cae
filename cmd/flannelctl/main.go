// Command flannelctl shows and checks a flannel overlay: the network config
// and the subnet leases in etcd (with upstream's layout, so clusters of
// upstream flanneld nodes work too), reservations, and a node's kernel state
// against what the leases require (doctor).
//
// It takes flanneld's etcd, subnet-file and address flags and their
// FLANNELD_* environment variables, so it runs with a node's flanneld
// EnvironmentFile. Exit codes: 0 success (doctor: healthy), 1 failure
// (doctor: problems found), 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/flannelng/flannel/pkg/version"
)

// app is the process environment a command runs in; tests replace it.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
}

// cmdFlags are the flags of individual commands.
type cmdFlags struct {
	output     string // leases, migrate-v2 -o (output.go)
	ttl        bool   // leases --ttl
	kubeconfig string // leases: list the Nodes' leases (kube mode) instead of etcd's
	kubePrefix string // leases: the annotation prefix; "" means flanneld's default
	force      bool   // release --force
	// migrate-v2
	dryRun        bool
	skipConflicts bool
	configOnly    bool
	cniBinDir     string // doctor
	cniConfDir    string
	procSys       string
	quiet         bool
}

type command struct {
	name    string // "leases", "config get"
	args    string // positional arguments, for the usage text
	summary string
	minArgs int
	maxArgs int
	flags   func(fs *flag.FlagSet, c *cmdFlags)
	run     func(ctx context.Context, a *app, o *options, c *cmdFlags, args []string) error
}

var commands = []command{
	{name: "config get", summary: "print the network config (<prefix>/config)", run: cmdConfigGet},
	{name: "config set", args: "FILE|-", summary: "validate a network config as flanneld does, then write it", minArgs: 1, maxArgs: 1, run: cmdConfigSet},
	{name: "config validate", args: "FILE|-", summary: "check a network config and print its computed defaults", minArgs: 1, maxArgs: 1, run: cmdConfigValidate},
	{name: "leases", args: "[-o table|wide|json|yaml] [--ttl] [--kubeconfig FILE]", summary: "list the leases, sorted by subnet: etcd's, with reservations, or with --kubeconfig the Nodes' (kube mode)",
		flags: func(fs *flag.FlagSet, c *cmdFlags) {
			fs.StringVar(&c.output, "o", "table", outputHelp)
			fs.StringVar(&c.output, "output", "table", "same as -o")
			fs.BoolVar(&c.ttl, "ttl", false, "also read each live etcd lease's remaining TTL: one request per etcd lease (etcd has no request for several), where the listing without it takes two in all")
			fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kube mode (flanneld --kube-subnet-mgr): list the leases held by the Nodes of the cluster this kubeconfig reaches, instead of etcd's")
			fs.StringVar(&c.kubePrefix, "kube-annotation-prefix", "", `with --kubeconfig: flanneld's --kube-annotation-prefix (default "flannel.alpha.coreos.com")`)
		}, run: cmdLeases},
	{name: "reserve", args: "SUBNET PUBLIC_IP [IPV6_SUBNET PUBLIC_IPV6]", summary: "reserve a subnet for a node: a lease key without TTL",
		minArgs: 2, maxArgs: 4, run: cmdReserve},
	{name: "release", args: "SUBNET|KEY [--force]", summary: "delete a reservation (a live lease only with --force)", minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet, c *cmdFlags) {
			fs.BoolVar(&c.force, "force", false, "also delete a key that has a live etcd lease")
		}, run: cmdRelease},
	{name: "migrate-v2", args: "[--dry-run] [-o table|wide|json|yaml]", summary: "copy flannel v0.11's config and leases from etcd's v2 store into v3 (remaining TTLs kept, nothing overwritten)",
		flags: func(fs *flag.FlagSet, c *cmdFlags) {
			fs.BoolVar(&c.dryRun, "dry-run", false, "print the plan and write nothing (exit 1 if a key conflicts)")
			fs.BoolVar(&c.skipConflicts, "skip-conflicts", false, "copy the other keys when some lease keys conflict with v3 (the conflicting ones are left as they are, and the exit code is still 1); a conflicting config always refuses the run")
			fs.BoolVar(&c.configOnly, "config-only", false, "copy only <prefix>/config (migration step 1), no lease")
			fs.StringVar(&c.output, "o", "table", outputHelp)
			fs.StringVar(&c.output, "output", "table", "same as -o")
		}, run: cmdMigrateV2},
	{name: "doctor", summary: "check this node against the leases, and where a migration from etcd v2 stands (run it inside the node's network namespace)",
		flags: func(fs *flag.FlagSet, c *cmdFlags) {
			fs.StringVar(&c.cniBinDir, "cni-bin-dir", "/opt/cni/bin:/usr/lib/cni", "CNI plugin directories, searched in order (colon separated)")
			fs.StringVar(&c.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI network config directory")
			fs.StringVar(&c.procSys, "proc-sys", "/proc/sys", "where the forwarding sysctls are read")
			fs.BoolVar(&c.quiet, "q", false, "print only failures and the summary")
		}, run: cmdDoctor},
	{name: "completion", args: "bash|zsh", summary: "print a shell completion script (see docs/flannelctl.md to install it)", minArgs: 1, maxArgs: 1, run: cmdCompletion},
}

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func main() {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}
	os.Exit(a.main(context.Background(), os.Args[1:]))
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: flannelctl [FLAGS] COMMAND [ARGS] [FLAGS]\n\nCommands:\n")
	width := 0
	for _, c := range commands {
		width = max(width, len(strings.TrimSpace(c.name+" "+c.args)))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(w, "\nFlags of every command (the etcd, subnet and address flags fall back to FLANNELD_<NAME>, as flanneld's do):\n")
	var o options
	fs := newFlagSet("flannelctl", w)
	addCommon(fs, &o)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nRun `flannelctl COMMAND -h` for a command's own flags, `flannelctl --version` for the version.\nExit codes: 0 success (doctor: healthy), 1 failure (doctor: problems found), 2 bad usage.\n")
}

// commandUsage prints a command's own flags; the common ones are in usage.
func (a *app) commandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: flannelctl %s [FLAGS]\n\n%s.\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	if c.flags != nil {
		fs := newFlagSet("flannelctl "+c.name, w)
		c.flags(fs, &cmdFlags{})
		fmt.Fprintf(w, "\nFlags:\n")
		fs.PrintDefaults()
	}
	fmt.Fprintf(w, "\nIt also takes the flags of every command (etcd, subnet file, addresses): see `flannelctl help`.\n")
}

// main runs one command and returns the exit code.
func (a *app) main(ctx context.Context, args []string) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(a.stdout, version.Get())
		return 0
	}
	// First pass: the flags before the command word, to find it.
	var scratch options
	gfs := newFlagSet("flannelctl", a.stderr)
	addCommon(gfs, &scratch)
	gfs.Usage = func() { a.usage(a.stderr) }
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := gfs.Args()
	global := args[:len(args)-len(rest)]
	if len(rest) == 0 {
		fmt.Fprintln(a.stderr, "flannelctl: no command given")
		a.usage(a.stderr)
		return 2
	}
	name := rest[0]
	rest = rest[1:]
	if name == "help" {
		a.usage(a.stdout)
		return 0
	}
	if name == "config" {
		if len(rest) == 0 || findCommand("config "+rest[0]) == nil {
			fmt.Fprintln(a.stderr, "flannelctl: config needs a subcommand: get, set or validate")
			a.usage(a.stderr)
			return 2
		}
		name += " " + rest[0]
		rest = rest[1:]
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(a.stderr, "flannelctl: unknown command %q\n", name)
		a.usage(a.stderr)
		return 2
	}

	var o options
	var cf cmdFlags
	fs := newFlagSet("flannelctl "+name, a.stderr)
	addCommon(fs, &o)
	if cmd.flags != nil {
		cmd.flags(fs, &cf)
	}
	fs.Usage = func() { a.commandUsage(a.stderr, cmd) }
	pos, err := parseInterleaved(fs, append(slices.Clone(global), rest...))
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs {
		want := "no arguments"
		if cmd.args != "" {
			want = cmd.args
		}
		fmt.Fprintf(a.stderr, "flannelctl %s: got %d argument(s), want %s\n", name, len(pos), want)
		fs.Usage()
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := applyEnv(fs, set, a.getenv); err != nil {
		fmt.Fprintf(a.stderr, "flannelctl: %v\n", err)
		fs.Usage()
		return 2
	}
	if err := o.finish(); err != nil {
		fmt.Fprintf(a.stderr, "flannelctl: %v\n", err)
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout+30*time.Second)
	defer cancel()
	err = cmd.run(ctx, a, &o, &cf, pos)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errProblems):
		return 1
	case errors.Is(err, errUsage):
		fmt.Fprintf(a.stderr, "flannelctl %s: %v\n", name, err)
		fs.Usage()
		return 2
	}
	msg := err.Error()
	if o.Etcd.Password != "" {
		// Errors can quote what a library was given; the password stays out.
		msg = strings.ReplaceAll(msg, o.Etcd.Password, "<redacted>")
	}
	fmt.Fprintf(a.stderr, "flannelctl %s: %s\n", name, msg)
	return 1
}
