package subnet

import "testing"

func TestConfigChanges(t *testing.T) {
	tests := []struct{ running, next, want string }{
		{`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`, `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`,
			`Backend.Type: "vxlan" -> "host-gw"`},
		{`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":1}}`, `{"Backend":{"VNI":2,"Type":"vxlan"},"SubnetLen":22,"Network":"10.5.0.0/16"}`,
			`Backend.VNI: 1 -> 2; SubnetLen: (unset) -> 22`},
		{`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`, `{"Network":"10.5.0.0/16"}`,
			`Backend.Type: "vxlan" -> (unset)`},
		{`{"Network":"10.5.0.0/16","EnableNFTables":false}`, `{"Network":"10.5.0.0/16","EnableNFTables":true}`,
			`EnableNFTables: false -> true`},
		// Key order and spacing are no change.
		{`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`, `{ "Backend": {"Type": "vxlan"}, "Network": "10.5.0.0/16" }`, ``},
		// A number keeps its spelling: 1.0 and 1 are different texts to
		// the parser upstream uses too.
		{`{"SubnetLen":24}`, `{"SubnetLen":24.0}`, `SubnetLen: 24 -> 24.0`},
		{`{"Network":"10.5.0.0/16"}`, `not json`, ``},
		{`{"Network":"10.5.0.0/16"}`, `null`, ``},
		{`{"Network":"10.5.0.0/16"}`, `["10.5.0.0/16"]`, ``},
	}
	for _, tc := range tests {
		if got := ConfigChanges([]byte(tc.running), []byte(tc.next)); got != tc.want {
			t.Errorf("ConfigChanges(%s, %s) = %q, want %q", tc.running, tc.next, got, tc.want)
		}
	}
}
