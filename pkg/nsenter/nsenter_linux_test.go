package nsenter

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netns"
)

func TestPrivilegedRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	name := fmt.Sprintf("flnsenter%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	target, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
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
