package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/flannelng/flannel/daemon"
)

func TestLogLevel(t *testing.T) {
	for v, want := range map[int]slog.Level{-1: slog.LevelInfo, 0: slog.LevelInfo, 1: slog.LevelInfo - 1, 2: daemon.LevelPeers, 4: slog.LevelDebug, 10: slog.LevelDebug} {
		if got := logLevel(v); got != want {
			t.Errorf("-v=%d: level %v, want %v", v, got, want)
		}
	}
	// The per-peer lines show at -v=2, not at the default -v=0, and read
	// as INFO lines.
	for v, want := range map[int]string{0: "", 2: "level=INFO msg=\"Peer added\"", 4: "level=INFO msg=\"Peer added\""} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: logLevel(v), ReplaceAttr: levelNames}))
		log.Log(context.Background(), daemon.LevelPeers, "Peer added")
		log.Debug("debug line")
		if got := buf.String(); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("-v=%d: logged %q, want %q", v, got, want)
		}
		if strings.Contains(buf.String(), "debug line") != (v >= 4) {
			t.Errorf("-v=%d: debug line %q", v, buf.String())
		}
	}
}
