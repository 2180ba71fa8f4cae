package health

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
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
