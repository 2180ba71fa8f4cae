package wireguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestParseOptions(t *testing.T) {
	psk := "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	for _, tc := range []struct {
		raw  string
		want string // Options.String(), or the error
	}{
		{``, "wireguard config: Mode=separate ListenPort=51820 ListenPortV6=51821 MTU=0 PersistentKeepaliveInterval=0 PSK=false Implementation=auto"},
		{`{"Type":"wireguard"}`, "wireguard config: Mode=separate ListenPort=51820 ListenPortV6=51821 MTU=0 PersistentKeepaliveInterval=0 PSK=false Implementation=auto"},
		{`{"listenport":5000,"ListenPortV6":5001,"mtu":1400,"PersistentKeepaliveInterval":25,"Mode":"auto","PSK":"` + psk + `","Implementation":"Userspace"}`,
			"wireguard config: Mode=auto ListenPort=5000 ListenPortV6=5001 MTU=1400 PersistentKeepaliveInterval=25 PSK=true Implementation=userspace"},
		{`{"Mode":""}`, "no valid Mode configured"},
		{`{"Mode":"Auto"}`, "no valid Mode configured"},
		{`{"PersistentKeepaliveInterval":"25s"}`, "error decoding backend config: json: cannot unmarshal string into Go struct field .PersistentKeepaliveInterval of type int64"},
		{`{"PersistentKeepaliveInterval":2.5}`, "error decoding backend config: json: cannot unmarshal number 2.5 into Go struct field .PersistentKeepaliveInterval of type int64"},
		{`{"ListenPort":"x"}`, "error decoding backend config: json: cannot unmarshal string into Go struct field .ListenPort of type int"},
		{`{"ListenPort":70000}`, "invalid Backend.ListenPort 70000: must be between 1 and 65535"},
		{`{"MTU":100}`, "invalid Backend.MTU 100: it is the underlay MTU and must be at least 148 (0 means the external interface's MTU)"},
		{`{"PSK":"not a key"}`, "could not parse psk: wgtypes: failed to parse base64-encoded key: illegal base64 data at input byte 3"},
		{`{"Implementation":"boringtun"}`, `invalid Backend.Implementation "boringtun": must be "auto", "kernel" or "userspace"`},
	} {
		o, err := ParseOptions([]byte(tc.raw))
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = o.String()
		}
		if got != tc.want {
			t.Errorf("ParseOptions(%s):\n got %s\nwant %s", tc.raw, got, tc.want)
		}
	}
	o, _ := ParseOptions([]byte(`{"PersistentKeepaliveInterval":25,"PSK":"` + psk + `"}`))
	if o.Keepalive != 25*time.Second || o.PSK == nil || o.PSK.String() != psk {
		t.Errorf("keepalive %v psk %v", o.Keepalive, o.PSK)
	}
}

func FuzzParseOptions(f *testing.F) {
	f.Add(`{"ListenPort":1,"Mode":"ipv6","PSK":""}`)
	f.Fuzz(func(t *testing.T, raw string) {
		o, err := ParseOptions([]byte(raw))
		if err != nil {
			return
		}
		if o.ListenPort < 1 || o.ListenPort > 65535 || (o.MTU != 0 && o.MTU < 148) || strings.Contains(o.String(), "PSK=true") != (o.PSK != nil) {
			t.Fatalf("accepted %+v", o)
		}
	})
}

func TestLeaseData(t *testing.T) {
	k, _ := wgtypes.GeneratePrivateKey()
	pub := k.PublicKey()
	raw, err := encodeLeaseData(pub, 51820)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"PublicKey":"` + pub.String() + `","Port":51820}`; string(raw) != want {
		t.Fatalf("encoded %s, want %s", raw, want)
	}
	got, port, err := decodeLeaseData(raw)
	if err != nil || got != pub || port != 51820 {
		t.Fatalf("decoded %v %d %v", got, port, err)
	}
	// flannel < v0.26.6: no Port.
	if _, port, err := decodeLeaseData([]byte(`{"PublicKey":"` + pub.String() + `"}`)); err != nil || port != 0 {
		t.Fatalf("old lease: %d %v", port, err)
	}
	for _, bad := range []string{``, `null`, `"x"`, `{"PublicKey":"abc"}`, `{"PublicKey":""}`} {
		if _, _, err := decodeLeaseData([]byte(bad)); err == nil {
			t.Errorf("decodeLeaseData(%s) accepted", bad)
		}
	}
}

func TestKeyFile(t *testing.T) {
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if p, err := KeyFile(lookup); p != DefaultKeyFile || err != nil {
		t.Errorf("unset: %q %v", p, err)
	}
	env[KeyFileEnv] = "/x/key"
	if p, err := KeyFile(lookup); p != "/x/key" || err != nil {
		t.Errorf("set: %q %v", p, err)
	}
	env[KeyFileEnv] = ""
	if _, err := KeyFile(lookup); err == nil {
		t.Error("empty WIREGUARD_KEY_FILE accepted")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "wgkey")
	k, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != k.String() || len(b) != 44 {
		t.Fatalf("file holds %q, want the 44-char key with no newline", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o400 {
		t.Errorf("mode %v, want 0400", st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v, want 0755", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || k2 != k {
		t.Fatalf("reload: same=%v created=%v %v", k2 == k, created, err)
	}
	// A trailing newline (an operator's editor) is accepted, as upstream.
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte(k.String()+"\n"), 0o600)
	if k3, _, err := LoadOrCreateKey(path); err != nil || k3 != k {
		t.Fatalf("with newline: %v", err)
	}
	// Corrupt: an error that names the file but not its content, and
	// the file is left alone.
	secret := "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmF!"
	for _, bad := range []string{"", secret, k.String()[:40]} {
		os.WriteFile(path, []byte(bad), 0o600)
		_, created, err := LoadOrCreateKey(path)
		if err == nil || created {
			t.Fatalf("corrupt %q accepted (created %v)", bad, created)
		}
		if !strings.Contains(err.Error(), "could not parse private key from file "+path) || (bad != "" && strings.Contains(err.Error(), bad)) {
			t.Errorf("error %q", err)
		}
		if b, _ := os.ReadFile(path); string(b) != bad {
			t.Errorf("corrupt key file was rewritten")
		}
	}
}
