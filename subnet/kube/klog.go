package kube

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// quietHandler passes client-go's log records on at Debug, whatever level
// they were made at. client-go logs every failed watch and list at Error
// and retries them forever; what matters to an operator (an outage, its
// end, a forbidden request) is logged once by this package instead.
type quietHandler struct{ h slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return q.h.Enabled(ctx, slog.LevelDebug)
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return q.h.Handle(ctx, r)
}

func (q quietHandler) WithAttrs(as []slog.Attr) slog.Handler { return quietHandler{q.h.WithAttrs(as)} }
func (q quietHandler) WithGroup(name string) slog.Handler    { return quietHandler{q.h.WithGroup(name)} }

// clientGoLogger is the logr.Logger client-go's code gets.
func clientGoLogger(log *slog.Logger) logr.Logger {
	return logr.FromSlogHandler(quietHandler{log.Handler().WithAttrs([]slog.Attr{slog.String("component", "client-go")})})
}

// routeKlog sends klog's global output (client-go code that logs without a
// context) to log at Debug; otherwise klog writes its own lines to stderr.
func routeKlog(log *slog.Logger) {
	klog.SetLogger(clientGoLogger(log))
}
