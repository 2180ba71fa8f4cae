package subnet

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func setLease(i int, ip string) Lease {
	return Lease{Subnet: netip.MustParsePrefix(fmt.Sprintf("10.5.%d.0/24", i)), Attrs: LeaseAttrs{PublicIP: netip.MustParseAddr(ip)}}
}

func subnets(ls []Lease) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Subnet.String()+"@"+l.Attrs.PublicIP.String())
	}
	slices.Sort(out)
	return out
}

func TestLeaseSetChanges(t *testing.T) {
	s := NewLeaseSet()
	if _, _, all := s.Changes(); !all {
		t.Fatal("an unsynced set must be taken whole")
	}
	s.Reset(map[string]Lease{"a": setLease(1, "192.0.2.1"), "b": setLease(2, "192.0.2.2")})
	if _, _, all := s.Changes(); !all {
		t.Fatal("a relisted set must be taken whole")
	}
	if ls, synced := s.TakeAll(); !synced || len(ls) != 2 {
		t.Fatalf("TakeAll: %v %v", ls, synced)
	}
	// a replaced twice (one change from what the consumer saw), b deleted,
	// c new then deleted (no change at all), d new.
	s.Put("a", setLease(1, "192.0.2.11"))
	s.Put("a", setLease(1, "192.0.2.21"))
	if !s.Delete("b") || s.Delete("b") {
		t.Error("Delete reports whether the key was there")
	}
	s.Put("c", setLease(3, "192.0.2.3"))
	s.Delete("c")
	s.Put("d", setLease(4, "192.0.2.4"))
	gone, came, all := s.Changes()
	if all {
		t.Fatal("a few changes must be listed")
	}
	if g, want := subnets(gone), []string{"10.5.1.0/24@192.0.2.1", "10.5.2.0/24@192.0.2.2"}; !slices.Equal(g, want) {
		t.Errorf("gone %v, want %v", g, want)
	}
	if c, want := subnets(came), []string{"10.5.1.0/24@192.0.2.21", "10.5.4.0/24@192.0.2.4"}; !slices.Equal(c, want) {
		t.Errorf("came %v, want %v", c, want)
	}
	if gone, came, all := s.Changes(); all || len(gone)+len(came) != 0 {
		t.Errorf("changes are forgotten once read: %v %v %v", gone, came, all)
	}
	// More changes than MaxPendingLeases: take the set whole.
	for i := range MaxPendingLeases + 1 {
		s.Put(fmt.Sprint("k", i), setLease(i%250, "192.0.2.9"))
	}
	if _, _, all := s.Changes(); !all {
		t.Error("an overflow must make the consumer take the set whole")
	}
	s.TakeAll()
	if _, _, all := s.Changes(); all {
		t.Error("TakeAll clears the overflow")
	}
}

// Sync applies a listing as changes: only the keys that differ (new,
// gone, or another value, BackendData included) are reported.
func TestLeaseSetSync(t *testing.T) {
	s := NewLeaseSet()
	if n := s.Sync(map[string]Lease{"a": setLease(1, "192.0.2.1")}); n != 1 || !s.Synced() {
		t.Fatalf("Sync of an unsynced set: %d changes, synced %v", n, s.Synced())
	}
	vx := func(mac string) Lease {
		l := setLease(2, "192.0.2.2")
		l.Attrs.BackendData = []byte(`{"VNI":1,"VtepMAC":"` + mac + `"}`)
		return l
	}
	s.Reset(map[string]Lease{"a": setLease(1, "192.0.2.1"), "b": vx("02:00:00:00:00:01"), "c": setLease(3, "192.0.2.3")})
	s.TakeAll()
	if n := s.Sync(map[string]Lease{"a": setLease(1, "192.0.2.1"), "b": vx("02:00:00:00:00:01"), "c": setLease(3, "192.0.2.3")}); n != 0 {
		t.Fatalf("the same set: %d changes", n)
	}
	n := s.Sync(map[string]Lease{"a": setLease(1, "192.0.2.1"), "b": vx("02:00:00:00:00:02"), "d": setLease(4, "192.0.2.4")})
	gone, came, all := s.Changes()
	if n != 3 || all {
		t.Fatalf("%d changes (all %v), want 3 listed", n, all)
	}
	if g, want := subnets(gone), []string{"10.5.2.0/24@192.0.2.2", "10.5.3.0/24@192.0.2.3"}; !slices.Equal(g, want) {
		t.Errorf("gone %v, want %v", g, want)
	}
	if c, want := subnets(came), []string{"10.5.2.0/24@192.0.2.2", "10.5.4.0/24@192.0.2.4"}; !slices.Equal(c, want) {
		t.Errorf("came %v, want %v", c, want)
	}
}
