package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

const (
	runningCfg = `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`
	hostGWCfg  = `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`
	invalidCfg = `{"Network":"10.5.0.0/16","SubnetLen":40}`
)

// watchingSource is a lease source that can watch its config: WatchConfig
// hands on what arrives on changes. Its GetConfig counts the reads.
type watchingSource struct {
	fakeSource
	changes  chan []byte
	notWatch bool // WatchConfig answers ErrConfigNotWatched (a v2 source behind dual.Auto)

	rmu   sync.Mutex
	reads int
	cur   string
}

func (w *watchingSource) WatchConfig(ctx context.Context, running []byte, changed func([]byte, error)) error {
	if w.notWatch {
		return subnet.ErrConfigNotWatched
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case raw := <-w.changes:
			_, err := subnet.ParseConfig(raw)
			changed(raw, err)
		}
	}
}

func (w *watchingSource) GetConfig(context.Context) (*subnet.Config, []byte, error) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	w.reads++
	c, err := subnet.ParseConfig([]byte(w.cur))
	return c, []byte(w.cur), err
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitLogged(t *testing.T, log *syncBuf, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged:\n%s", msg, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A source that watches its config is never read by WatchConfig, and each
// change it reports gets its line once.
func TestWatchConfigFollowsAWatcher(t *testing.T) {
	src := &watchingSource{changes: make(chan []byte)}
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { WatchConfig(ctx, src, []byte(runningCfg), "etcd", log); close(done) }()

	src.changes <- []byte(hostGWCfg)
	waitLogged(t, &buf, `The network config in etcd changed; still running on the previous config. Restart flanneld on every node to apply it" changed="Backend.Type: \"vxlan\" -> \"host-gw\""`)
	src.changes <- []byte(hostGWCfg) // not a change: no second line
	src.changes <- []byte(invalidCfg)
	waitLogged(t, &buf, "The network config in etcd changed and is invalid; still running on the previous config")
	src.changes <- []byte(runningCfg)
	waitLogged(t, &buf, "The network config in etcd is back to the running config")
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchConfig did not return at cancel")
	}
	for _, msg := range []string{"The network config in etcd changed;", "changed and is invalid", "back to the running config"} {
		if n := strings.Count(buf.String(), msg); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", msg, n, buf.String())
		}
	}
	src.rmu.Lock()
	defer src.rmu.Unlock()
	if src.reads != 0 {
		t.Errorf("GetConfig read %d times while the source watched", src.reads)
	}
}

// A source that turns out unable to watch (dual.Auto in v2 mode) is read
// every configPoll, with the same lines, naming the config's place.
func TestWatchConfigPollsWithoutAWatcher(t *testing.T) {
	defer func(p time.Duration) { configPoll = p }(configPoll)
	configPoll = 20 * time.Millisecond
	src := &watchingSource{notWatch: true, cur: runningCfg}
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() { WatchConfig(ctx, src, []byte(runningCfg), "/etc/kube-flannel/net-conf.json", log); close(done) }()
	src.rmu.Lock()
	src.cur = hostGWCfg
	src.rmu.Unlock()
	waitLogged(t, &buf, "The network config in /etc/kube-flannel/net-conf.json changed; still running on the previous config")
	time.Sleep(100 * time.Millisecond)
	if n := strings.Count(buf.String(), "changed; still running"); n != 1 {
		t.Errorf("change logged %d times:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), "Cannot watch") {
		t.Errorf("ErrConfigNotWatched is no warning:\n%s", buf.String())
	}
}
