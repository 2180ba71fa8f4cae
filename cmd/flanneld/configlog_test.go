package main

import (
	"bytes"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// The start-up config line holds every field of config, with the etcd
// password redacted wherever it came from (flag or variable).
func TestConfigLogRedactsSecrets(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"flag": {args: []string{"--etcd-password=s3cr3t-pw", "--etcd-username=flannel", "--etcd-keyfile=/etc/flannel/key.pem", "--iface=eth0", "--iface=eth1"}},
		"env": {env: map[string]string{"FLANNELD_ETCD_PASSWORD": "s3cr3t-pw", "FLANNELD_ETCD_USERNAME": "flannel",
			"FLANNELD_ETCD_KEYFILE": "/etc/flannel/key.pem", "FLANNELD_IFACE": "eth0"}, args: []string{"--iface=eth0", "--iface=eth1"}},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Etcd.Password != "s3cr3t-pw" {
				t.Fatalf("password not parsed: %q", c.Etcd.Password)
			}
			var buf bytes.Buffer
			slog.New(slog.NewTextHandler(&buf, nil)).Info("CLI flags config", configAttrs(c)...)
			line := buf.String()
			if strings.Contains(line, "s3cr3t") {
				t.Fatalf("password logged: %s", line)
			}
			for _, want := range []string{
				`msg="CLI flags config"`, "Etcd.Password=" + redacted, "Etcd.Username=flannel",
				"Etcd.KeyFile=/etc/flannel/key.pem", "Ifaces=eth0,eth1", "SubnetFile=/run/flannel/subnet.env",
				"IPTablesForwardRule=true", "LeaseTTL=24h0m0s",
			} {
				if !strings.Contains(line, want) {
					t.Errorf("missing %s in %s", want, line)
				}
			}
			if strings.Count(line, "\n") != 1 {
				t.Errorf("not one line: %q", line)
			}
		})
	}
}

// Every field of config is in the line, nested ones (Etcd.*) by path.
func TestConfigLogHasEveryField(t *testing.T) {
	attrs := configAttrs(&config{})
	keys := map[string]bool{}
	for _, a := range attrs {
		keys[a.(slog.Attr).Key] = true
	}
	var walk func(prefix string, t reflect.Type) int
	n := 0
	walk = func(prefix string, typ reflect.Type) int {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Type.Kind() == reflect.Struct {
				walk(prefix+f.Name+".", f.Type)
				continue
			}
			n++
			if !keys[prefix+f.Name] {
				t.Errorf("field %s%s not logged", prefix, f.Name)
			}
		}
		return n
	}
	if walk("", reflect.TypeOf(config{})); len(keys) != n {
		t.Errorf("%d attributes for %d fields", len(keys), n)
	}
	if got := configAttrs(&config{})[0]; got == nil {
		t.Fatal("no attributes")
	}
}
