package health

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	s, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, slog.Default()); close(done) }()
	base := "http://" + s.Addr().String()
	if c, b := get(t, base+"/healthz"); c != 200 || b != "flanneld is running" {
		t.Errorf("/healthz %d %q", c, b)
	}
	if c, b := get(t, base+"/readyz"); c != 503 || b != "flanneld is not ready yet" {
		t.Errorf("/readyz %d %q", c, b)
	}
	s.SetReady(true)
	if c, b := get(t, base+"/readyz"); c != 200 || b != "flanneld is ready" {
		t.Errorf("/readyz %d %q", c, b)
	}
	if _, err := Listen(s.Addr().String(), nil); err == nil {
		t.Error("second listen on the same port succeeded")
	}
	cancel()
	<-done
}

// Every timeout of the server is set: without ReadTimeout and IdleTimeout a
// client holds a connection (a goroutine, a socket) open for as long as it
// likes, and without WriteTimeout one that never reads the answer does.
func TestServerTimeouts(t *testing.T) {
	s, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": s.srv.ReadHeaderTimeout,
		"ReadTimeout":       s.srv.ReadTimeout,
		"WriteTimeout":      s.srv.WriteTimeout,
		"IdleTimeout":       s.srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s is not set", name)
		}
	}
}

// The server closes a connection whose client stops in the middle of its
// headers, and a kept-alive connection left idle.
func TestServerDropsStalledClients(t *testing.T) {
	s, err := listen("127.0.0.1:0", nil, timeouts{readHeader: 100 * time.Millisecond, read: 200 * time.Millisecond,
		write: time.Second, idle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, slog.Default()); close(done) }()
	defer func() { cancel(); <-done }()

	closedWithin := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		return err == nil // EOF: the server closed it; a timeout is an error
	}

	slow, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	if !closedWithin(slow, 5*time.Second) {
		t.Error("a client stalled in its headers kept its connection")
	}

	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("answer: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 5*time.Second) {
		t.Error("an idle kept-alive connection was kept")
	}
}
