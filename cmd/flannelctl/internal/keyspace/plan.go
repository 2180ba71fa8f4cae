package keyspace

import (
	"fmt"
	"strings"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// Action is what migrate-v2 does, or did, with one v2 key.
type Action string

const (
	// Copy: v3 lacks the key; it is written there with the v2 value.
	Copy Action = "copy"
	// Present: v3 already holds the same config, or the same lease
	// (Differences is empty); nothing is written.
	Present Action = "already-present"
	// Skip: the v2 key is not a lease (bad name, undecodable value, a
	// directory) or has expired; it is never copied.
	Skip Action = "skipped"
	// Conflict: v3 holds something else under the key, or a lease under
	// another key that overlaps it; nothing is written for it.
	Conflict Action = "conflict"
)

// Item is one key of a plan.
type Item struct {
	Key    string // the full key, the same in both keyspaces
	Config bool   // <prefix>/config
	Action Action
	Value  []byte // the v2 value, written unchanged
	// Expires: the v2 key has a TTL, so its copy gets an etcd lease of
	// TTL, the v2 key's remaining time to live. A lease key without it
	// is a reservation, copied without an etcd lease.
	Expires bool
	TTL     time.Duration
	Lease   subnet.Lease // the v2 lease; zero for the config and keys that do not parse
	Reason  string       // why skipped or conflicting; a note for a key already present
}

// Plan is what migrate-v2 does: the config first, then the leases by
// subnet, then the keys that are not leases.
type Plan struct {
	Items []Item
}

// Count returns how many items have action a.
func (p Plan) Count(a Action) int {
	n := 0
	for _, it := range p.Items {
		if it.Action == a {
			n++
		}
	}
	return n
}

// ConfigConflict reports whether v3 holds another config.
func (p Plan) ConfigConflict() bool {
	for _, it := range p.Items {
		if it.Config && it.Action == Conflict {
			return true
		}
	}
	return false
}

// RemainingTTL is what is left of a v2 TTL read elapsed ago, in whole
// seconds, rounded down; zero or less means expired. etcd rounds the TTL
// it reports up, so the copy never outlives the v2 key by a second or
// more. Both durations come from the server and the local monotonic clock:
// no wall clocks are compared, so clock skew between etcd and this machine
// plays no part (the v2 key's absolute expiration would bring it in).
func RemainingTTL(ttl, elapsed time.Duration) time.Duration {
	return (ttl - elapsed).Truncate(time.Second)
}

// MakePlan decides, for the config and each key below <prefix>/subnets/ in
// v2, what migrate-v2 does, given what v3 holds (spec 5: same paths, value
// bytes unchanged). elapsed is the time since v2 was read. configKey is
// <prefix>/config; v2.Config nil leaves the config out of the plan.
//
// A lease is copied only when v3 has no key of that name and no lease
// that overlaps it: a v3 key with the same owner (Differences) is already
// there, one with another owner, or an overlapping one under another key
// (another prefix length), is a conflict.
func MakePlan(configKey string, v2, v3 Store, elapsed time.Duration) Plan {
	var p Plan
	if v2.Config != nil {
		it := Item{Key: configKey, Config: true, Value: v2.Config}
		switch {
		case v3.Config == nil:
			it.Action = Copy
		case SameConfig(v2.Config, v3.Config):
			it.Action = Present
		default:
			it.Action = Conflict
			it.Reason = "v3 holds another config: " + configChanges(v2.Config, v3.Config) + " (v2 vs v3)"
		}
		p.Items = append(p.Items, it)
	}

	v3s := parseAll(v3.Subnets, parseV3)
	v3byName := byName(v3s)
	for _, k := range parseAll(v2.Subnets, parseV2) {
		it := Item{Key: k.Path, Value: k.Value, Expires: k.Expires, Lease: k.Lease}
		if k.Expires {
			it.TTL = RemainingTTL(k.TTL, elapsed)
		}
		switch {
		case k.Err != nil:
			it.Action, it.Reason, it.TTL = Skip, k.Err.Error(), 0
		case k.Expires && it.TTL <= 0:
			it.Action, it.Reason, it.TTL = Skip, "expired in v2", 0
		default:
			it.Action, it.Reason = compareLease(k, v3byName[k.Name], v3s)
		}
		p.Items = append(p.Items, it)
	}
	return p
}

// compareLease decides what to do with valid v2 lease k, given the v3 key
// of the same name (nil if none) and every v3 key.
func compareLease(k parsed, twin *parsed, v3s []parsed) (Action, string) {
	var problems []string
	action, note := Copy, ""
	switch {
	case twin == nil:
	case twin.Err != nil:
		problems = append(problems, "v3 holds a value that is not a lease: "+twin.Err.Error())
	default:
		if d := Differences(k.Lease, twin.Lease); len(d) > 0 {
			problems = append(problems, "v3 holds another lease: "+strings.Join(d, ", ")+" (v2 vs v3)")
		} else {
			action = Present
			switch {
			case k.Expires && !twin.Expires:
				note = "the v3 key is a reservation (no etcd lease)"
			case !k.Expires && twin.Expires:
				note = "a reservation in v2; the v3 key has an etcd lease"
			}
		}
	}
	for _, o := range v3s {
		if o.Err == nil && o.Name != k.Name && overlaps(k.Lease, o.Lease) {
			problems = append(problems, fmt.Sprintf("overlaps the v3 lease %s of %s", o.Path, Describe(o.Lease)))
		}
	}
	if len(problems) > 0 {
		return Conflict, strings.Join(problems, "; ")
	}
	return action, note
}

// Recheck decides again for an item planned as Copy whose write found the
// key taken in v3 (a daemon wrote it in between): v3Value is what the key
// holds now, v3Expires whether it has an etcd lease. The answer is
// Present or Conflict.
func Recheck(it Item, v3Value []byte, v3Expires bool) (Action, string) {
	if it.Config {
		if SameConfig(it.Value, v3Value) {
			return Present, ""
		}
		return Conflict, "v3 holds another config: " + configChanges(it.Value, v3Value) + " (v2 vs v3)"
	}
	k := parsed{Key: Key{Path: it.Key, Value: it.Value, Expires: it.Expires}, Lease: it.Lease}
	name := it.Key[strings.LastIndexByte(it.Key, '/')+1:]
	k.Name = name
	twin := parseV3(Key{Path: it.Key, Name: name, Value: v3Value, Expires: v3Expires})
	return compareLease(k, &twin, nil)
}
