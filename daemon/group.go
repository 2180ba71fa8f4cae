package daemon

import (
	"context"
	"sync"
)

// group is the daemon's one lifetime: every long-running part (the peer
// source, the lease keeper, the firewall keeper, the config watcher, the
// blackhole check) runs in it. When one part fails, the group's context
// ends and every other part stops; Wait returns only when all have, so
// nothing runs on after the lease source's client is closed.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	err error
}

func newGroup(ctx context.Context) *group {
	g := &group{}
	g.ctx, g.cancel = context.WithCancel(ctx)
	return g
}

// Go runs fn in the group. A non-nil error from fn stops the group; the
// first one is what Err returns.
func (g *group) Go(fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(g.ctx); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
			g.cancel()
		}
	}()
}

// Done fires when the group stops, for a failure or because its parent
// context ended.
func (g *group) Done() <-chan struct{} { return g.ctx.Done() }

// Err is the first part's error, if a part failed.
func (g *group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Stop ends the group and waits for every part.
func (g *group) Stop() {
	g.cancel()
	g.wg.Wait()
}
