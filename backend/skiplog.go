package backend

import (
	"log/slog"

	"github.com/flannelng/flannel/subnet"
)

// SkipLog remembers which leases a backend did not program and why, so
// that each reason is logged once and not on every pass. The zero value is
// not usable; make one with NewSkipLog. Not safe for concurrent use: a
// backend uses it inside its reconcile passes, which are serialised.
type SkipLog struct {
	log  *slog.Logger
	seen map[string]string // lease key -> reason logged
}

// NewSkipLog returns a SkipLog that writes to log at Info level.
func NewSkipLog(log *slog.Logger) *SkipLog {
	return &SkipLog{log: log, seen: map[string]string{}}
}

// Pass records the outcome of a pass over all peers: skipped maps the key
// of every lease skipped to its reason. Leases no longer skipped are
// forgotten, so a later reason for them is logged again.
func (s *SkipLog) Pass(skipped map[string]string) {
	for k := range s.seen {
		if _, still := skipped[k]; !still {
			delete(s.seen, k)
		}
	}
	s.note(skipped)
}

// Delta records the outcome of a pass over the leases that changed (see
// Incremental.Update): skipped holds the reasons for those of came not
// programmed.
func (s *SkipLog) Delta(gone, came []subnet.Lease, skipped map[string]string) {
	for _, l := range gone {
		delete(s.seen, l.Key())
	}
	for _, l := range came {
		if _, still := skipped[l.Key()]; !still {
			delete(s.seen, l.Key())
		}
	}
	s.note(skipped)
}

func (s *SkipLog) note(skipped map[string]string) {
	for k, why := range skipped {
		if s.seen[k] != why {
			s.log.Info(why)
			s.seen[k] = why
		}
	}
}
