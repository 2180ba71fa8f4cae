package subnet

import (
	"errors"
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

// The exact syntax (upstream's split) sets nothing for a key with blanks
// around it and keeps quotes; both syntaxes report a bad value with its
// file, line, key and value.
func TestParseEnvFileExact(t *testing.T) {
	in := []byte("FLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU = 1400\nFLANNEL_IPMASQ=true\n")
	f, err := ParseEnvFileExact(in, "")
	if err != nil || f.HasMTU || f.Subnet.String() != "10.5.3.0/24" || !f.IPMasq {
		t.Errorf("exact: %+v %v", f, err)
	}
	if f, err = ParseEnvFile(in, ""); err != nil || !f.HasMTU || f.MTU != 1400 {
		t.Errorf("lenient: %+v %v", f, err)
	}
	if _, err := ParseEnvFileExact([]byte(`FLANNEL_MTU="1400"`), ""); err == nil {
		t.Error("exact: quotes removed")
	}
	_, err = ParseEnvFile([]byte("# x\nFLANNEL_MTU= big \n"), "/run/flannel/subnet.env")
	var ee *EnvError
	if !errors.As(err, &ee) || ee.File != "/run/flannel/subnet.env" || ee.Line != 2 || ee.Key != "FLANNEL_MTU" || ee.Value != "big" ||
		err.Error() != `/run/flannel/subnet.env line 2: FLANNEL_MTU: strconv.ParseUint: parsing "big": invalid syntax` {
		t.Errorf("error %#v: %v", ee, err)
	}
}
