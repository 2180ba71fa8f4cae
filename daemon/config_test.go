package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// permanentConfigSource answers GetConfig with an error waiting cannot fix.
type permanentConfigSource struct {
	*fakeSource
	asked int
}

func (p *permanentConfigSource) GetConfig(context.Context) (*subnet.Config, []byte, error) {
	p.asked++
	return nil, nil, subnet.Permanent(errors.New("the network config differs between the etcd v3 keyspace and the v2 store (Network: ...)"))
}

// A config error marked permanent (two keyspaces that disagree, say) ends
// the daemon with that error at once instead of waiting for a fix.
func TestRunPermanentConfigError(t *testing.T) {
	h := newHarness(t)
	src := &permanentConfigSource{fakeSource: h.src}
	h.deps.Connect = func(context.Context) (subnet.Manager, func(), error) { return src, h.src.close, nil }
	select {
	case err := <-h.start(context.Background()):
		if err == nil || !strings.Contains(err.Error(), "Couldn't fetch network config: the network config differs") {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept waiting on a permanent config error")
	}
	if src.asked != 1 {
		t.Errorf("GetConfig asked %d times, want once", src.asked)
	}
}
