package subnet

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
)

// Env is the content of subnet.env.
type Env struct {
	Network     netip.Prefix // FLANNEL_NETWORK (invalid when IPv4 is off)
	Subnet      netip.Prefix // our IPv4 subnet (network address form)
	IPv6Network netip.Prefix
	IPv6Subnet  netip.Prefix
	MTU         int
	IPMasq      bool
}

// gateway returns "<subnet network + 1>/<len>", the form upstream writes.
func gateway(p netip.Prefix) string {
	return netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits()).String()
}

// Render returns upstream's exact bytes: the IPv4 pair when IPv4 is on, the
// IPv6 pair when IPv6 is on, then MTU and IPMASQ; KEY=value lines, no quotes.
func (e Env) Render() []byte {
	var b bytes.Buffer
	if e.Network.IsValid() && e.Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_NETWORK=%s\n", e.Network)
		fmt.Fprintf(&b, "FLANNEL_SUBNET=%s\n", gateway(e.Subnet))
	}
	if e.IPv6Network.IsValid() && e.IPv6Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_IPV6_NETWORK=%s\n", e.IPv6Network)
		fmt.Fprintf(&b, "FLANNEL_IPV6_SUBNET=%s\n", gateway(e.IPv6Subnet))
	}
	fmt.Fprintf(&b, "FLANNEL_MTU=%d\n", e.MTU)
	fmt.Fprintf(&b, "FLANNEL_IPMASQ=%t\n", e.IPMasq)
	return b.Bytes()
}

// WriteEnvFile writes subnet.env atomically: a temp file in the same
// directory, fsync, rename over the target, fsync the directory. A new file
// gets mode 0644 whatever the umask; an existing file keeps its mode, as
// upstream's renameio call does.
func WriteEnvFile(path string, e Env) error {
	return writeFileAtomic(path, e.Render(), 0o644)
}

func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory for %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: the rename is durable once the directory is
		d.Close()
	}
	return nil
}

// ParseEnv reads subnet.env with ParseEnvFile (blanks around keys and
// values trimmed, one pair of quotes, booleans in any case, comments and
// unknown keys ignored, subnets reduced to their network) and keeps the
// first network of each family. Keys that are absent stay zero.
func ParseEnv(data []byte) (Env, error) {
	f, err := ParseEnvFile(data, "")
	if err != nil {
		return Env{}, err
	}
	return f.env(), nil
}

// env is the daemon's view: the first network of each family.
func (f *EnvFile) env() Env {
	e := Env{Subnet: f.Subnet, IPv6Subnet: f.IPv6Subnet, MTU: int(f.MTU), IPMasq: f.IPMasq}
	if len(f.Networks) > 0 {
		e.Network = f.Networks[0]
	}
	if len(f.IPv6Networks) > 0 {
		e.IPv6Network = f.IPv6Networks[0]
	}
	return e
}

// ReadEnvFile reads and parses a subnet.env file. A missing file gives an
// error satisfying errors.Is(err, fs.ErrNotExist).
func ReadEnvFile(path string) (Env, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Env{}, err
	}
	e, err := ParseEnv(data)
	if err != nil {
		return Env{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return e, nil
}

// IsNotExist reports whether err means the file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
