package subnet

import (
	"net"
	"testing"
)

// FuzzParseCIDR holds parseCIDR to upstream's semantics: it accepts what
// net.ParseCIDR accepts and prints the network as upstream's IPNet.String().
func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"10.244.3.1/24", "fd00:10:244:3::1/64", "::ffff:10.0.0.0/104", "::ffff:1.2.3.4/96", "10.0.0.0/08", "0.0.0.0/0", "::/0", "10.244.3.1", "1.2.3.4/33", "fe80::1%eth0/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseCIDR(s)
		_, ipn, upErr := net.ParseCIDR(s)
		if (err == nil) != (upErr == nil) {
			t.Fatalf("parseCIDR(%q) error %v, net.ParseCIDR error %v", s, err, upErr)
		}
		if err != nil {
			return
		}
		if got.String() != ipn.String() {
			t.Errorf("parseCIDR(%q) = %s, upstream prints %s", s, got, ipn)
		}
	})
}
