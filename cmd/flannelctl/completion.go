package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// commandTable is commands, set in init: the completion command is in the
// table it reads, and a direct reference would be an initialization cycle.
var commandTable []command

func init() { commandTable = commands }

// cmdCompletion prints a completion script for bash or zsh, generated from
// the command table and each command's flag set, so that it never lags
// behind them. zsh runs the bash function through bashcompinit.
func cmdCompletion(_ context.Context, a *app, _ *options, _ *cmdFlags, args []string) error {
	switch args[0] {
	case "bash":
		_, err := io.WriteString(a.stdout, bashCompletion())
		return err
	case "zsh":
		_, err := io.WriteString(a.stdout, "#compdef flannelctl\n# zsh completion for flannelctl: source <(flannelctl completion zsh), after compinit.\n"+
			"autoload -U +X bashcompinit && bashcompinit\n"+bashCompletion())
		return err
	}
	return usageError{fmt.Sprintf("unknown shell %q: want bash or zsh", args[0])}
}

// fileFlags take a path: their values complete as file names.
var fileFlags = map[string]bool{
	"kubeconfig": true, "subnet-file": true, "etcd-cafile": true, "etcd-certfile": true, "etcd-keyfile": true,
	"etcd-ca-file": true, "etcd-cert-file": true, "etcd-key-file": true, "etcd-password-file": true,
	"cni-conf-dir": true, "proc-sys": true,
}

// flagWords returns a command's flags (the common ones included) as
// --name words, and those of them that take a value.
func flagWords(c *command) (all, withValue []string) {
	fs := newFlagSet("flannelctl", io.Discard)
	addCommon(fs, &options{})
	if c != nil && c.flags != nil {
		c.flags(fs, &cmdFlags{})
	}
	fs.VisitAll(func(f *flag.Flag) {
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		all = append(all, dash+f.Name)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			withValue = append(withValue, dash+f.Name)
		}
	})
	return all, withValue
}

func bashCompletion() string {
	var b strings.Builder
	var top []string
	for _, c := range commandTable {
		if w, _, _ := strings.Cut(c.name, " "); !slices.Contains(top, w) {
			top = append(top, w)
		}
	}
	top = append(top, "help")
	common, _ := flagWords(nil)
	// Go's flag package takes -name and --name alike.
	var valueFlags []string
	for _, c := range commandTable {
		_, v := flagWords(&c)
		for _, f := range v {
			name := strings.TrimLeft(f, "-")
			for _, form := range []string{"-" + name, "--" + name} {
				if !slices.Contains(valueFlags, form) {
					valueFlags = append(valueFlags, form)
				}
			}
		}
	}
	slices.Sort(valueFlags)
	var files []string
	for f := range fileFlags {
		files = append(files, "--"+f, "-"+f)
	}
	slices.Sort(files)

	fmt.Fprintf(&b, `# bash completion for flannelctl (flannelctl completion bash)
_flannelctl() {
    local cur prev cmd="" i skip=0
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    COMPREPLY=()
    # The command: the first words that are neither flags nor flag values.
    for ((i = 1; i < COMP_CWORD; i++)); do
        local w="${COMP_WORDS[i]}"
        if ((skip)); then skip=0; continue; fi
        case "$w" in
            %s) skip=1; continue ;;
            -*) continue ;;
        esac
        if [[ -z "$cmd" ]]; then
            cmd="$w"
        elif [[ "$cmd" == config && "$cmd" != *" "* ]]; then
            cmd="config $w"
        else
            break
        fi
    done
    case "$prev" in
        -o|--o|-output|--output) COMPREPLY=($(compgen -W "%s" -- "$cur")); return 0 ;;
        %s) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        %s) return 0 ;;
    esac
    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "%s --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "%s" -- "$cur"))
        fi
        return 0
    fi
    if [[ "$cmd" == config ]]; then
        COMPREPLY=($(compgen -W "get set validate" -- "$cur"))
        return 0
    fi
    local flags="" args=""
    case "$cmd" in
`, strings.Join(valueFlags, "|"), strings.Join(outputFormats, " "), strings.Join(files, "|"), strings.Join(valueFlags, "|"),
		strings.Join(common, " "), strings.Join(top, " "))
	for _, c := range commandTable {
		all, _ := flagWords(&c)
		args := ""
		switch c.name {
		case "completion":
			args = "bash zsh"
		case "config set", "config validate":
			args = "-f"
		}
		fmt.Fprintf(&b, "        %q) flags=%q; args=%q ;;\n", c.name, strings.Join(all, " "), args)
	}
	b.WriteString(`    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [[ "$args" == -f ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    elif [[ -n "$args" ]]; then
        COMPREPLY=($(compgen -W "$args" -- "$cur"))
    fi
    return 0
}
complete -F _flannelctl flannelctl
`)
	return b.String()
}
