package subnet

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// ConfigChanges names what differs between two network configs as stored
// in etcd, field by field with nested objects flattened, e.g.
// `Backend.Type: "vxlan" -> "host-gw"; SubnetLen: (unset) -> 22`. It
// returns "" when either is not a JSON object: the caller logs both raw
// texts anyway, and an operator must see what to change before restarting
// every node.
func ConfigChanges(running, next []byte) string {
	a, ok1 := flattenJSON(running)
	b, ok2 := flattenJSON(next)
	if !ok1 || !ok2 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		old, inOld := a[k]
		now, inNew := b[k]
		if inOld && inNew && old == now {
			continue
		}
		if !inOld {
			old = "(unset)"
		}
		if !inNew {
			now = "(unset)"
		}
		out = append(out, k+": "+old+" -> "+now)
	}
	return strings.Join(out, "; ")
}

// flattenJSON maps the dotted path of every non-object value in a JSON
// object to its compact JSON text.
func flattenJSON(raw []byte) (map[string]string, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var top map[string]any
	if err := d.Decode(&top); err != nil || top == nil {
		return nil, false
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, x := range m {
				walk(prefix+k+".", x)
			}
			return
		}
		b, _ := json.Marshal(v)
		out[strings.TrimSuffix(prefix, ".")] = string(b)
	}
	for k, v := range top {
		walk(k+".", v)
	}
	return out, true
}
