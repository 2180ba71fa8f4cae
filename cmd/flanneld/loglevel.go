package main

import "log/slog"

// logLevel is the slog level -v=N enables, as klog's verbosity: 0 (the
// default) info and above; each step one level more, so that -v=2 adds
// the per-peer lines (daemon.LevelPeers, Info-2) and -v=4 and above is
// debug.
func logLevel(v int) slog.Level {
	return slog.LevelInfo - slog.Level(min(max(v, 0), 4))
}

// levelNames prints the levels between debug and info (-v=1 to 3) as
// INFO, as klog prints its V(n) lines, rather than slog's "DEBUG+2".
func levelNames(_ []string, a slog.Attr) slog.Attr {
	if a.Key != slog.LevelKey {
		return a
	}
	if l, ok := a.Value.Any().(slog.Level); ok && l > slog.LevelDebug && l < slog.LevelInfo {
		a.Value = slog.StringValue("INFO")
	}
	return a
}
