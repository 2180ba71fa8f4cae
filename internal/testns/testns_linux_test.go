package testns

import (
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// Namespaces have unique names, are the test's to use, and are gone when
// the test that made them ends (t.Cleanup, which also runs on failure).
func TestPrivilegedNew(t *testing.T) {
	var a, b *NS
	t.Run("make", func(t *testing.T) {
		a, b = New(t, "flt-testns"), New(t, "flt-testns")
		if a.Name == b.Name || !strings.HasPrefix(a.Name, "flt-testns-") {
			t.Fatalf("names %q %q: want unique, with the prefix", a.Name, b.Name)
		}
		if _, err := os.Stat(a.Path); err != nil {
			t.Fatal(err)
		}
		self, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer self.Close()
		if a.NsHandle(t).Equal(self) {
			t.Error("the namespace is the test's own")
		}
		if out := a.IP(t, "-o", "link", "show", "lo"); !strings.Contains(out, "DOWN") {
			t.Errorf("lo is up in a new namespace: %s", out)
		}
		a.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
		if _, err := a.Handle(t).LinkByName("v1"); err != nil {
			t.Errorf("netlink handle: %v", err)
		}
		a.Sysctl(t, "net.ipv4.ip_forward", "1")
		if out, err := a.Exec("cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(out) != "1" {
			t.Errorf("sysctl: %q %v", out, err)
		}
	})
	for _, ns := range []*NS{a, b} {
		if _, err := os.Stat(ns.Path); !os.IsNotExist(err) {
			t.Errorf("%s still exists after its test: %v", ns.Name, err)
		}
	}
}
