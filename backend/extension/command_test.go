package extension

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The argument vector is upstream's: strings.Fields, then os.Expand per
// word, no quoting, no globbing.
func TestArgv(t *testing.T) {
	env := []string{"SUBNET=10.5.77.0/24", "PUBLIC_IP=192.168.50.2", "SPACED=a b", "PATH=/bin", "SUBNET=10.5.9.0/24"}
	for _, tc := range []struct {
		raw  string
		want []string
	}{
		{"ip route add $SUBNET via $PUBLIC_IP", []string{"ip", "route", "add", "10.5.9.0/24", "via", "192.168.50.2"}}, // the last SUBNET wins
		{"  ip\troute   add ${SUBNET}  ", []string{"ip", "route", "add", "10.5.9.0/24"}},
		{`echo "$SUBNET"`, []string{"echo", `"10.5.9.0/24"`}}, // quotes stay: upstream's docs are wrong
		{"echo $SPACED", []string{"echo", "a b"}},             // expanded after splitting: one argument
		{"echo $NOPE x$1y $$ $? *", []string{"echo", "", "xy", "", "", "*"}},
		{"echo a;b && c | d $(id)", []string{"echo", "a;b", "&&", "c", "|", "d", "$(id)"}},
		{"echo $", []string{"echo", "$"}},
		{"   ", []string{}},
	} {
		got := argv(tc.raw, env, false)
		if strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") || len(got) != len(tc.want) {
			t.Errorf("argv(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
	if got := argv("echo $SUBNET | tr / _", env, true); len(got) != 3 || got[0] != "/bin/sh" || got[2] != "echo $SUBNET | tr / _" {
		t.Errorf("shell argv = %q", got)
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cmd.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecRunner(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("uses /bin/sh scripts")
	}
	environ := func() []string {
		return []string{"PATH=" + os.Getenv("PATH"), "FROM_FLANNELD=yes", "SUBNET=flanneld's"}
	}
	r := execRunner{timeout: 5 * time.Second, environ: environ}
	ctx := context.Background()

	// Arguments, environment (extras override flanneld's), stdin, combined
	// trimmed output.
	s := script(t, `echo "args:$#:$1:$2"; echo "env:$SUBNET:$FROM_FLANNELD:$PUBLIC_IP"; read line; echo "stdin:$line"; echo err >&2`+"\n")
	res := r.run(ctx, command{raw: s + " $SUBNET a\"b", extra: []string{"SUBNET=10.5.2.0/24", "PUBLIC_IP=172.31.0.2"}, stdin: "KEY=\n"})
	want := "args:2:10.5.2.0/24:a\"b\nenv:10.5.2.0/24:yes:172.31.0.2\nstdin:KEY=\nerr"
	if res.err != nil || res.status != 0 || res.output != want {
		t.Errorf("run = %+v\nwant output %q", res, want)
	}

	// Exit status and output of a failure, in upstream's words.
	res = r.run(ctx, command{raw: script(t, "echo no route; exit 3\n")})
	if res.status != 3 || res.err == nil || res.output != "no route" {
		t.Fatalf("failing run = %+v", res)
	}
	if f := res.failure("x y"); f != "failed to run command: x y Err: exit status 3 Output: no route" {
		t.Errorf("failure = %q", f)
	}

	// Not on PATH.
	res = r.run(ctx, command{raw: "no-such-flannel-command arg"})
	if res.err == nil || !strings.Contains(res.err.Error(), `exec: "no-such-flannel-command": executable file not found in $PATH`) {
		t.Errorf("missing command: %+v", res)
	}

	// The timeout kills the command and its children, and says so.
	r.timeout = 300 * time.Millisecond
	start := time.Now()
	res = r.run(ctx, command{raw: script(t, "sleep 30 & sleep 30\n")})
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("timed-out command held the caller %s", d)
	}
	if res.err == nil || !strings.Contains(res.err.Error(), "timed out after 300ms") || res.status != -1 {
		t.Errorf("timeout: %+v", res)
	}

	// More stdin than a pipe holds does not block (upstream's would).
	r.timeout = 5 * time.Second
	big := strings.Repeat("x", 200<<10)
	res = r.run(ctx, command{raw: script(t, "wc -c\n"), stdin: big + "\n"})
	if res.err != nil || res.output != "204801" {
		t.Errorf("big stdin: %+v", res)
	}
	res = r.run(ctx, command{raw: script(t, "exit 0\n"), stdin: big})
	if res.err != nil {
		t.Errorf("command that reads no stdin: %+v", res)
	}

	// Shell mode: the shell expands from the environment.
	r.shell = true
	res = r.run(ctx, command{raw: `echo "$SUBNET" | tr / _`, extra: []string{"SUBNET=10.5.2.0/24"}})
	if res.err != nil || res.output != "10.5.2.0_24" {
		t.Errorf("shell: %+v", res)
	}
}
