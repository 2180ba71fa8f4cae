package kube

import (
	"strings"
	"testing"
)

func TestNormalizePrefix(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "flannel.alpha.coreos.com", want: "flannel.alpha.coreos.com/"},
		{in: "flannel.alpha.coreos.com/", want: "flannel.alpha.coreos.com/"},
		{in: "example.com/fl", want: "example.com/fl-"},
		{in: "example.com/fl-", want: "example.com/fl-"},
		{in: "example.com/my_net", want: "example.com/my_net-"},
		{in: "a-b.cd.example/x_y", want: "a-b.cd.example/x_y-"},
		// Upstream takes an underscore in the DNS part; the API server
		// refuses such keys.
		{in: "a-b.c_d.example/x", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{in: "example.com/" + strings.Repeat("x", 44), err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{in: "example.com/" + strings.Repeat("x", 43), want: "example.com/" + strings.Repeat("x", 43) + "-"},
		{in: "nodots", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{in: "Bad_Prefix", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{in: "a/b/c", err: "subnet/kube: prefix can contain at most single slash"},
		{in: "example.com//", err: "subnet/kube: prefix can contain at most single slash"},
		{in: "", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{in: "example.com/Fl", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{in: "example.com/f.l", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		// Upstream matches its pattern anywhere in the prefix and takes
		// these; the API server then refuses their keys at the first
		// PATCH. Refused here at start, with the same message.
		{in: "Foo.example.com", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{in: "a b.example.com", err: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
	} {
		got, err := NormalizePrefix(tc.in)
		switch {
		case tc.err != "":
			if err == nil || err.Error() != tc.err {
				t.Errorf("NormalizePrefix(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
		case err != nil || got != tc.want:
			t.Errorf("NormalizePrefix(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestKeysFor(t *testing.T) {
	k, err := KeysFor("example.com/fl")
	if err != nil {
		t.Fatal(err)
	}
	want := Keys{
		Prefix:              "example.com/fl-",
		Managed:             "example.com/fl-kube-subnet-manager",
		BackendType:         "example.com/fl-backend-type",
		BackendData:         "example.com/fl-backend-data",
		BackendV6Data:       "example.com/fl-backend-v6-data",
		PublicIP:            "example.com/fl-public-ip",
		PublicIPv6:          "example.com/fl-public-ipv6",
		PublicIPOverwrite:   "example.com/fl-public-ip-overwrite",
		PublicIPv6Overwrite: "example.com/fl-public-ipv6-overwrite",
		NodePublicIP:        "example.com/fl-node-public-ip",
		NodePublicIPv6:      "example.com/fl-node-public-ipv6",
	}
	if k != want {
		t.Errorf("KeysFor = %+v\nwant %+v", k, want)
	}
	d, _ := KeysFor(DefaultPrefix)
	if d.BackendData != "flannel.alpha.coreos.com/backend-data" {
		t.Errorf("default BackendData key = %q", d.BackendData)
	}
}
