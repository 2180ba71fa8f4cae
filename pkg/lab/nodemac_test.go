package lab

import (
	"net"
	"testing"
)

func TestNodeMAC(t *testing.T) {
	seen := map[string]int{}
	for i := 1; i <= maxNodes; i++ {
		v4, _, err := nodeAddrs(i)
		if err != nil {
			t.Fatal(err)
		}
		mac := nodeMAC(v4)
		if len(mac) != 6 || mac[0]&0x01 != 0 || mac[0]&0x02 == 0 {
			t.Fatalf("node %d: %s is not a locally administered unicast MAC", i, mac)
		}
		if j, dup := seen[mac.String()]; dup {
			t.Fatalf("node %d: %s already given to node %d", i, mac, j)
		}
		seen[mac.String()] = i
	}
	v4, _, _ := nodeAddrs(1)
	if got, want := nodeMAC(v4).String(), (net.HardwareAddr{2, 0, 172, 30, 0, 11}).String(); got != want {
		t.Errorf("nodeMAC(h1) = %s, want %s", got, want)
	}
}
