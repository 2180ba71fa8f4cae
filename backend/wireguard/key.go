package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// KeyFile returns the private key file's path: $WIREGUARD_KEY_FILE when it
// is set, else DefaultKeyFile. An empty value is refused (upstream would
// fail later with a confusing "open : no such file").
func KeyFile(lookup func(string) (string, bool)) (string, error) {
	p, ok := lookup(KeyFileEnv)
	if !ok {
		return DefaultKeyFile, nil
	}
	if p == "" {
		return "", fmt.Errorf("%s is set but empty; unset it to use %s", KeyFileEnv, DefaultKeyFile)
	}
	return p, nil
}

// LoadOrCreateKey returns the private key kept in path, creating it when
// the file does not exist: a fresh Curve25519 key written as upstream
// writes it (44 characters of standard base64, no newline, mode 0400, the
// directory made 0755). A file that exists but holds no key is an error:
// rotating the key silently would cut the node off until every peer has
// seen the new lease, and would hide whatever damaged the file. The key
// never appears in an error or a log line.
func LoadOrCreateKey(path string) (key wgtypes.Key, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, perr := wgtypes.ParseKey(string(b))
		if perr != nil {
			// wgtypes' errors name a byte offset or a size, never the
			// content.
			return wgtypes.Key{}, false, fmt.Errorf("could not parse private key from file %s: %w (fix or remove the file; removing it makes a new key that every peer must learn)", path, perr)
		}
		return k, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return wgtypes.Key{}, false, fmt.Errorf("could not read key file %s: %w", path, err)
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("could not generate private key: %w", err)
	}
	if err := writeKeyFile(path, k); err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("could not write key file: %w", err)
	}
	return k, true, nil
}

// writeKeyFile writes the key to a temporary file in the same directory
// and renames it into place, so a crash never leaves a half-written key
// (which the next start would refuse).
func writeKeyFile(path string, k wgtypes.Key) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".wgkey-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o400); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(k.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}
