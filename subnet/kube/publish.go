package kube

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// publishedType is the backend-type a backend publishes in kube mode.
// Upstream's udp backend writes none there (spec 4.3); a node of ours must
// look the same to its peers, and our udp backend accepts both.
func publishedType(t string) string {
	if t == "udp" {
		return ""
	}
	return t
}

// publishedData is a BackendData as upstream writes it: the JSON verbatim,
// and "null" when there is none (host-gw, udp).
func publishedData(d json.RawMessage) string {
	if len(d) == 0 {
		return "null"
	}
	return string(d)
}

// wanted returns the annotations our Node must carry for attrs (spec 4.3),
// given the Node's current annotations (for the overwrites, spec 1.4 and
// 4.2): kube-subnet-manager, backend-type, and per family the backend data
// and the public address. An overwrite that is not an address of its
// family is ignored and reported in notes, so that nothing invalid is
// published.
func (k Keys) wanted(cfg *subnet.Config, attrs subnet.LeaseAttrs, current map[string]string) (want map[string]string, notes []string) {
	want = map[string]string{
		k.Managed:     "true",
		k.BackendType: publishedType(attrs.BackendType),
	}
	// Upstream writes the IPv4 keys unless the backend is vxlan with no
	// IPv4 device; a v6-only host-gw node publishes public-ip 0.0.0.0.
	if cfg.EnableIPv4 || attrs.BackendType != "vxlan" {
		want[k.BackendData] = publishedData(attrs.BackendData)
		ip := "0.0.0.0"
		if attrs.PublicIP.IsValid() {
			ip = attrs.PublicIP.String()
		}
		want[k.PublicIP] = overwrite(current, k.PublicIPOverwrite, ip, true, &notes)
	}
	if cfg.EnableIPv6 && attrs.PublicIPv6.IsValid() {
		want[k.BackendV6Data] = publishedData(attrs.BackendV6Data)
		want[k.PublicIPv6] = overwrite(current, k.PublicIPv6Overwrite, attrs.PublicIPv6.String(), false, &notes)
	}
	return want, notes
}

// overwrite returns the value of the overwrite annotation key when it holds
// a usable address of the family, else def.
func overwrite(current map[string]string, key, def string, is4 bool, notes *[]string) string {
	v, ok := current[key]
	if !ok || v == "" {
		return def
	}
	ip, err := parseIP(v, is4)
	if err != nil {
		*notes = append(*notes, fmt.Sprintf("ignoring %s %q: %v; publishing %s", key, v, err, def))
		return def
	}
	return ip.String()
}

// changed returns the wanted keys whose current value differs.
func changed(want, current map[string]string) map[string]string {
	var out map[string]string
	for k, v := range want {
		if cur, ok := current[k]; !ok || cur != v {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// annotationPatch is the strategic-merge patch of nodes/<n>/status that
// sets the given annotations, in upstream's bytes (spec 4.4): keys sorted,
// nothing else in it. Only these keys change; the rest of the map stays.
func annotationPatch(set map[string]string) []byte {
	type metadata struct {
		Annotations map[string]string `json:"annotations"`
	}
	b, err := json.Marshal(struct {
		Metadata metadata `json:"metadata"`
	}{metadata{set}})
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	return b
}

// Condition values of the NetworkUnavailable condition we set (spec 4.6).
const (
	conditionType    = "NetworkUnavailable"
	conditionReason  = "FlannelIsUp"
	conditionMessage = "Flannel is running on this node"
)

// conditionPatch is upstream's NetworkUnavailable=False patch of
// nodes/<n>/status: the conditions list merges on type, so the other
// conditions stay. Fields in upstream's order, times in RFC 3339 UTC.
func conditionPatch(now time.Time) []byte {
	ts := now.UTC().Format(time.RFC3339)
	type condition struct {
		Type               string `json:"type"`
		Status             string `json:"status"`
		LastHeartbeatTime  string `json:"lastHeartbeatTime"`
		LastTransitionTime string `json:"lastTransitionTime"`
		Reason             string `json:"reason"`
		Message            string `json:"message"`
	}
	type status struct {
		Conditions []condition `json:"conditions"`
	}
	b, err := json.Marshal(struct {
		Status status `json:"status"`
	}{status{[]condition{{conditionType, "False", ts, ts, conditionReason, conditionMessage}}}})
	if err != nil {
		panic(err)
	}
	return b
}

// addrOrNone is for logs.
func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}
