package subnet

import (
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestEnvRender(t *testing.T) {
	p := netip.MustParsePrefix
	e := Env{Network: p("10.5.0.0/16"), Subnet: p("10.5.21.0/24"), MTU: 1450, IPMasq: true}
	if got := string(e.Render()); got != "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n" {
		t.Errorf("v4:\n%s", got)
	}
	e = Env{Network: p("10.5.0.0/16"), Subnet: p("10.5.27.0/24"), IPv6Network: p("fd00:10::/56"), IPv6Subnet: p("fd00:10:0:5a::/64"), MTU: 1450, IPMasq: true}
	want := "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.27.1/24\nFLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:5a::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if got := string(e.Render()); got != want {
		t.Errorf("dual:\n%s", got)
	}
	back, err := ParseEnv(e.Render())
	if err != nil || back != e {
		t.Errorf("parse back: %+v %v", back, err)
	}
}

func TestParseEnvLenient(t *testing.T) {
	e, err := ParseEnv([]byte("# comment\r\nFLANNEL_NETWORK = 10.5.0.0/16,10.6.0.0/16\r\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU= 1400\nFLANNEL_IPMASQ=True\nOTHER=x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Network.String() != "10.5.0.0/16" || e.Subnet.String() != "10.5.3.0/24" || e.MTU != 1400 || !e.IPMasq {
		t.Errorf("got %+v", e)
	}
	if _, err := ParseEnv([]byte("FLANNEL_SUBNET=10.5.3.1\n")); err == nil {
		t.Error("bad CIDR accepted")
	}
	if _, err := ParseEnv([]byte("FLANNEL_MTU=-1\n")); err == nil {
		t.Error("bad MTU accepted")
	}
}

func TestWriteEnvFileAtomic(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "flannel", "subnet.env")
	e := Env{Network: netip.MustParsePrefix("10.5.0.0/16"), Subnet: netip.MustParsePrefix("10.5.21.0/24"), MTU: 1450}
	if err := WriteEnvFile(path, e); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %o, want 644 regardless of umask", st.Mode().Perm())
	}
	// An existing file keeps its mode.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	e.MTU = 1400
	if err := WriteEnvFile(path, e); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("existing mode not kept: %o", st.Mode().Perm())
	}
	got, _ := ReadEnvFile(path)
	if got.MTU != 1400 {
		t.Errorf("read back %+v", got)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
	if _, err := ReadEnvFile(filepath.Join(dir, "nope")); !IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParseEnv(f *testing.F) {
	f.Add([]byte("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"))
	f.Add([]byte("FLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:5a::1/64\nFLANNEL_MTU = 1450\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnv(data)
		if err != nil {
			return
		}
		if e.MTU < 0 {
			t.Fatal("negative MTU")
		}
		if e.Network.IsValid() && e.Subnet.IsValid() {
			back, err := ParseEnv(e.Render())
			if err != nil || back.Subnet != e.Subnet || back.Network != e.Network {
				t.Fatalf("render/parse mismatch: %+v vs %+v (%v)", e, back, err)
			}
		}
	})
}
