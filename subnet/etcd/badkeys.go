package etcd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/flannelng/flannel/subnet"
)

// maxBadKeys bounds the bad keys remembered so that each is logged once:
// any program with write access to the prefix can write keys without end.
const maxBadKeys = 1024

// badKeys remembers the keys below <prefix>/subnets/ that are no lease we
// use, so that each is logged once while it exists. A key is forgotten
// when it is deleted, when it becomes a good lease, or when a listing no
// longer holds it. Beyond maxBadKeys no key is remembered and one line
// says so. Guarded by Manager.mu.
type badKeys struct {
	keys map[string]struct{}
	// full is set once the line saying that more keys are not logged
	// one by one was written; a listing with fewer bad keys clears it.
	full bool
}

// noteBad logs a bad key, once while it exists.
func (m *Manager) noteBad(key string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.bad
	if _, seen := b.keys[key]; seen {
		return
	}
	if len(b.keys) >= maxBadKeys {
		if !b.full {
			b.full = true
			m.log.Warn(fmt.Sprintf("More than %d bad subnet nodes; not logging each of the others", maxBadKeys), "prefix", m.subnets)
		}
		return
	}
	b.keys[key] = struct{}{}
	m.log.Warn("Ignoring bad subnet node", "key", key, "err", err)
}

// forgetBad forgets a key that was deleted or now holds a good lease.
func (m *Manager) forgetBad(key string) {
	m.mu.Lock()
	if len(m.bad.keys) > 0 {
		delete(m.bad.keys, key)
	}
	m.mu.Unlock()
}

// keepBad forgets every remembered key but the bad keys of a listing.
func (m *Manager) keepBad(listed []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.bad
	if len(b.keys) == 0 && !b.full {
		return
	}
	now := make(map[string]struct{}, len(listed))
	for _, k := range listed {
		if _, ok := b.keys[k]; ok {
			now[k] = struct{}{}
		}
	}
	b.keys = now
	b.full = len(listed) > maxBadKeys
}

// decode parses a lease key and value. A key that is no lease we use is
// logged once and returned as an error: its name or value does not parse,
// or its name is not the key flannel writes for the subnets it names (host
// bits set, junk around the subnet, "-024"). Such a key is skipped
// everywhere, so the watcher never holds it under another key and
// Acquire never adopts or replaces it; l still holds the subnets its name
// gives, when it gives any, which Acquire keeps clear of: upstream nodes
// read such keys as leases.
func (m *Manager) decode(key string, value []byte) (l subnet.Lease, err error) {
	name := strings.TrimPrefix(key, m.subnets)
	v4, v6, err := subnet.ParseKey(name)
	if err == nil {
		l.Subnet, l.IPv6Subnet = v4, v6
		var buf [96]byte
		if canon := appendKeyName(buf[:0], v4, v6); string(canon) != name {
			err = fmt.Errorf("subnet key %q is not the key of %s, which is %q", name, l.String(), canon)
		}
	}
	if err == nil {
		l.Attrs, err = subnet.DecodeAttrs(value)
	}
	if err != nil {
		m.noteBad(key, err)
		return l, err
	}
	m.forgetBad(key)
	return l, nil
}

// appendKeyName appends the key name of a lease's subnets: subnet.MakeKey's
// bytes ("10.5.21.0-24", "0.0.0.0-0&fd00:10::-64"), without fmt, since it
// runs for every lease of every listing and every daemon pass.
func appendKeyName(b []byte, v4, v6 netip.Prefix) []byte {
	if v4.IsValid() {
		b = v4.Addr().AppendTo(b)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(v4.Bits()), 10)
	} else {
		b = append(b, "0.0.0.0-0"...)
	}
	if v6.IsValid() {
		b = append(b, '&')
		b = v6.Addr().AppendTo(b)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(v6.Bits()), 10)
	}
	return b
}
