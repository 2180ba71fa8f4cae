//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// The reliability suite (reliability_*_test.go) puts faults and bad input
// in front of real daemons in the lab. Every scenario logs its result as
// one line starting with "FIGURE <scenario>:" so a run's figures can be
// collected with `go test -v ./e2e -run Reliability | grep FIGURE`
// (docs/reliability.md lists them).

const vxlanConfig = `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`

// figure logs one result line of a scenario.
func figure(t *testing.T, scenario, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURE %s: %s", scenario, fmt.Sprintf(format, args...))
}

// waitReady waits until this run of the daemon logged that it is ready and
// returns when that was seen (polled every 50 ms).
func waitReady(t *testing.T, l *lab.Lab, p *lab.Process, timeout time.Duration) time.Time {
	t.Helper()
	err := l.WaitFor(context.Background(), timeout, "flanneld ready (pid "+fmt.Sprint(p.Pid)+")", func() error {
		if strings.Contains(p.Log(), "flannel is ready") {
			return nil
		}
		if p.Exited() {
			return lab.Permanent(fmt.Errorf("flanneld exited:\n%s", p.Log()))
		}
		return fmt.Errorf("not ready yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// waitConnected waits until every pod of from reaches `to` and `to` reaches
// every pod of from (one ping each way per pair), and returns the time
// since `since`.
func waitConnected(t *testing.T, l *lab.Lab, from []*lab.Pod, to *lab.Pod, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := map[string]bool{}
	err := l.WaitFor(ctx, timeout, "pods connected to "+to.NS, func() error {
		for _, f := range from {
			for _, pair := range [][2]*lab.Pod{{f, to}, {to, f}} {
				k := pair[0].NS + ">" + pair[1].NS
				if done[k] {
					continue
				}
				if err := l.Ping(ctx, pair[0].NS, pair[1].IP, 1); err != nil {
					return err
				}
				done[k] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(since)
}

// pingPair runs a 10 Hz ping each way between two pods for d; the returned
// function waits for both and returns the totals.
func pingPair(t *testing.T, a, b *lab.Pod, d time.Duration) func() (sent, recv int) {
	t.Helper()
	ab := ping10Hz(t, a.NS, b.IP, d)
	ba := ping10Hz(t, b.NS, a.IP, d)
	return func() (int, int) {
		s1, r1 := ab()
		s2, r2 := ba()
		return s1 + s2, r1 + r2
	}
}

// lossLine formats ping totals as "loss 0.0% (600/600)".
func lossLine(sent, recv int) string {
	loss := 0.0
	if sent > 0 {
		loss = 100 * float64(sent-recv) / float64(sent)
	}
	return fmt.Sprintf("loss %.1f%% (%d/%d)", loss, recv, sent)
}

// logLines returns the lines of log that contain substr.
func logLines(log, substr string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// ms rounds a duration for a figure.
func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// etcdRetry runs an etcd request from the test until it succeeds (bounded):
// during a fault the test's own client sees the same elections and
// timeouts as the daemons.
func etcdRetry(t *testing.T, what string, fn func(ctx context.Context) error) {
	t.Helper()
	err := lab.WaitFor(context.Background(), 30*time.Second, what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return fn(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
}
