package nsenter

import (
	"testing"

	"github.com/vishvananda/netns"

	"github.com/flannelng/flannel/internal/testns"
)

func TestPrivilegedRun(t *testing.T) {
	ns := testns.New(t, "flnsenter")
	name := ns.Name
	target := ns.NsHandle(t)
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	var inside netns.NsHandle
	if err := Run(target, name, func() (err error) { inside, err = netns.Get(); return err }); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(target) || inside.Equal(self) {
		t.Errorf("fn ran in %v, want %v", inside, target)
	}
	after, _ := netns.Get()
	defer after.Close()
	if !after.Equal(self) {
		t.Error("the calling thread was left in another namespace")
	}
	ran := false
	if err := Run(netns.None(), "", func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("closed handle: %v %v", ran, err)
	}
}
