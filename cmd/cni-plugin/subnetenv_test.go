package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestParseSubnetEnv(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want subnetEnv
	}{
		{
			name: "upstream ipv4",
			in:   "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: subnetEnv{Networks: prefixes("10.5.0.0/16"), Subnet: netip.MustParsePrefix("10.5.21.0/24"), MTU: 1450, HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
		{
			name: "upstream dual stack",
			in:   "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.27.1/24\nFLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:5a::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
			want: subnetEnv{
				Networks: prefixes("10.5.0.0/16"), Subnet: netip.MustParsePrefix("10.5.27.0/24"),
				IPv6Networks: prefixes("fd00:10::/56"), IPv6Subnet: netip.MustParsePrefix("fd00:10:0:5a::/64"),
				MTU: 1450, HasMTU: true, HasIPMasq: true,
			},
		},
		{
			name: "ipv6 only",
			in:   "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true",
			want: subnetEnv{IPv6Networks: prefixes("fd00:10:244::/56"), IPv6Subnet: netip.MustParsePrefix("fd00:10:244:3::/64"), MTU: 1430, HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
		{
			name: "blanks around = and values, CRLF, quotes, booleans in any case",
			in:   "  FLANNEL_NETWORK = 10.5.0.0/16 \r\nFLANNEL_SUBNET=\"10.5.21.1/24\"\r\nFLANNEL_MTU = '1450'\r\nFLANNEL_IPMASQ=True\r\n",
			want: subnetEnv{Networks: prefixes("10.5.0.0/16"), Subnet: netip.MustParsePrefix("10.5.21.0/24"), MTU: 1450, HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
		{
			name: "FALSE",
			in:   "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=FALSE\n",
			want: subnetEnv{Networks: prefixes("10.5.0.0/16"), Subnet: netip.MustParsePrefix("10.5.21.0/24"), MTU: 1450, HasMTU: true, HasIPMasq: true},
		},
		{
			name: "several networks, duplicates dropped, order kept",
			in:   "FLANNEL_NETWORK=10.244.0.0/16,192.168.0.0/16,10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: subnetEnv{Networks: prefixes("10.244.0.0/16", "192.168.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24"), MTU: 1450, HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
		{
			name: "host bits make the same network a duplicate; blanks and empty elements tolerated",
			in:   "FLANNEL_NETWORK=10.244.0.0/16, 10.244.9.9/16 ,,172.16.0.0/12,\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: subnetEnv{Networks: prefixes("10.244.0.0/16", "172.16.0.0/12"), Subnet: netip.MustParsePrefix("10.244.3.0/24"), MTU: 1450, HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
		{
			name: "last value wins, comments and unknown keys ignored",
			in:   "# written by hand\nFLANNEL_MTU=1500\nFOO=bar\nnot a pair\nFLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: subnetEnv{Networks: prefixes("10.5.0.0/16"), Subnet: netip.MustParsePrefix("10.5.21.0/24"), MTU: 1450, HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
		{
			name: "MTU zero is accepted, as upstream",
			in:   "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MTU=0\nFLANNEL_IPMASQ=true\n",
			want: subnetEnv{Networks: prefixes("10.5.0.0/16"), Subnet: netip.MustParsePrefix("10.5.21.0/24"), HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
		{
			name: "ipv4-mapped network is read as upstream prints it",
			in:   "FLANNEL_NETWORK=::ffff:10.0.0.0/104\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: subnetEnv{Networks: prefixes("10.0.0.0/8"), Subnet: netip.MustParsePrefix("10.5.21.0/24"), MTU: 1450, HasMTU: true, IPMasq: true, HasIPMasq: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSubnetEnv([]byte(tt.in), "/run/flannel/subnet.env")
			if err != nil {
				t.Fatalf("parseSubnetEnv: %v", err)
			}
			if !slices.Equal(got.Networks, tt.want.Networks) || !slices.Equal(got.IPv6Networks, tt.want.IPv6Networks) ||
				got.Subnet != tt.want.Subnet || got.IPv6Subnet != tt.want.IPv6Subnet ||
				got.MTU != tt.want.MTU || got.HasMTU != tt.want.HasMTU ||
				got.IPMasq != tt.want.IPMasq || got.HasIPMasq != tt.want.HasIPMasq {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestParseSubnetEnvErrors(t *testing.T) {
	const name = "/etc/cni/bad.env"
	tests := []struct {
		name, in, want string
	}{
		{"empty file", "", name + " is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ"},
		{"subnets missing", "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", name + " is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET"},
		{"truncated after a key", "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.21.1/24\nFLANNEL_MT", name + " is missing FLANNEL_MTU, FLANNEL_IPMASQ"},
		{"truncated inside a CIDR", "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.", name + " line 2: FLANNEL_SUBNET: invalid CIDR address: 10.5."},
		{"address without length", "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.244.3.1\n", name + " line 2: FLANNEL_SUBNET: invalid CIDR address: 10.244.3.1"},
		{"bad network in a list", "FLANNEL_NETWORK=10.5.0.0/16,bogus\n", name + " line 1: FLANNEL_NETWORK: invalid CIDR address: bogus"},
		{"empty network", "FLANNEL_NETWORK=\n", name + " line 1: FLANNEL_NETWORK: empty value: want one or more CIDRs separated by commas"},
		{"empty subnet", "FLANNEL_IPV6_SUBNET= \n", name + " line 1: FLANNEL_IPV6_SUBNET: empty value: want a CIDR"},
		{"MTU not a number", "FLANNEL_MTU=big\n", name + ` line 1: FLANNEL_MTU: strconv.ParseUint: parsing "big": invalid syntax`},
		{"MTU negative", "FLANNEL_MTU=-1\n", name + ` line 1: FLANNEL_MTU: strconv.ParseUint: parsing "-1": invalid syntax`},
		{"MTU too large", "FLANNEL_MTU=4294967296\n", name + ` line 1: FLANNEL_MTU: strconv.ParseUint: parsing "4294967296": value out of range`},
		{"ipmasq neither true nor false", "FLANNEL_IPMASQ=1\n", name + ` line 1: FLANNEL_IPMASQ: invalid boolean "1": want true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSubnetEnv([]byte(tt.in), name)
			if err == nil {
				t.Fatalf("parseSubnetEnv succeeded with %+v, want error %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got  %q\n want %q", err, tt.want)
			}
		})
	}
}

func TestLoadSubnetEnvMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	_, err := loadSubnetEnv(path)
	if !os.IsNotExist(err) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
	// The wording operators grep for.
	want := "failed to load flannel 'subnet.env' file: open " + path + ": no such file or directory. Check the flannel pod log for this node."
	if got := subnetEnvError(err).Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestLoadSubnetEnvLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	if err := os.WriteFile(path, []byte("FLANNEL_NETWORK="+strings.Repeat("x", 100_000)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadSubnetEnv(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want an error naming %s", err, path)
	}
}
