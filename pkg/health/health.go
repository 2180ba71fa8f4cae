// Package health serves flanneld's /healthz and /readyz endpoints with
// upstream's bodies and status codes.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// timeouts bound what one client can hold of the server. The health port
// is often open to the whole node network (upstream's default address is
// 0.0.0.0): without them a client that sends its request slowly, reads the
// answer slowly or keeps idle connections open ties up a goroutine and a
// socket each, without limit.
type timeouts struct {
	readHeader time.Duration // request line and headers
	read       time.Duration // the whole request
	write      time.Duration // from the end of the headers to the end of the answer
	idle       time.Duration // between requests on a kept-alive connection
}

// defaultTimeouts are generous for a probe or a scrape of /metrics (a few
// kB, answered in microseconds), and keep a scraper's connection across
// the usual 15 s to 60 s scrape intervals.
var defaultTimeouts = timeouts{
	readHeader: 5 * time.Second,
	read:       10 * time.Second,
	write:      30 * time.Second,
	idle:       2 * time.Minute,
}

// Server is the health HTTP server. Its readiness starts false.
type Server struct {
	ready atomic.Bool
	srv   *http.Server
	ln    net.Listener
}

// Listen binds addr (host:port) and returns a server ready to Serve. A
// listen failure is an error, not a panic as upstream's.
func Listen(addr string, extra map[string]http.Handler) (*Server, error) {
	return listen(addr, extra, defaultTimeouts)
}

func listen(addr string, extra map[string]http.Handler, t timeouts) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health server: listen on %s: %w", addr, err)
	}
	s := &Server{ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("flanneld is running"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.ready.Load() {
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("flanneld is ready"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("flanneld is not ready yet"))
	})
	for p, h := range extra {
		mux.Handle(p, h)
	}
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
	}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// SetReady sets the /readyz answer.
func (s *Server) SetReady(r bool) {
	if s != nil {
		s.ready.Store(r)
	}
}

// Serve serves until ctx ends, then shuts down gracefully (3 s at most).
func (s *Server) Serve(ctx context.Context, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server failed", "err", err)
		}
	}()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.srv.Shutdown(sctx)
	<-done
}
