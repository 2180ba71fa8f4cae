package suite

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The kube case's cluster: K fake peers are Node objects carrying what an
// upstream flanneld in kube mode publishes; the daemon under test runs on
// the lab host, whose own Node gets a podCIDR below every fake peer's.
const (
	// KubeNetConfig is the net-conf.json of the kube case: the scale
	// runs' Network, which holds every fake peer's /24.
	KubeNetConfig = `{"Network":"` + Network + `","Backend":{"Type":"vxlan"}}`
	// KubeOwnPodCIDR is the lab host's podCIDR (fake peers start at
	// 10.1.0.0/24).
	KubeOwnPodCIDR = "10.0.1.0/24"
	// kubePrefix is the default --kube-annotation-prefix, normalised.
	kubePrefix = "flannel.alpha.coreos.com/"
)

// NodeName is the fake peer's Node name.
func (p Peer) NodeName() string { return fmt.Sprintf("peer-%05d", p.Index) }

// NodeAnnotations are the annotations of the fake peer's Node, as an
// upstream vxlan node in kube mode publishes them, next to two a kubelet
// sets when it registers, e.g.
//
//	flannel.alpha.coreos.com/backend-data: {"VNI":1,"VtepMAC":"02:fb:00:00:00:fb"}
//	flannel.alpha.coreos.com/backend-type: vxlan
//	flannel.alpha.coreos.com/kube-subnet-manager: "true"
//	flannel.alpha.coreos.com/public-ip: 172.30.101.2
func (p Peer) NodeAnnotations() (map[string]string, error) {
	// Upstream's vxlanLeaseAttrs field order: VNI, then VtepMAC.
	data, err := json.Marshal(struct {
		VNI     int
		VtepMAC string
	}{1, p.MACString()})
	if err != nil {
		return nil, fmt.Errorf("backend-data of fake peer %d: %w", p.Index, err)
	}
	return map[string]string{
		kubePrefix + "kube-subnet-manager":                       "true",
		kubePrefix + "backend-type":                              VXLAN,
		kubePrefix + "backend-data":                              string(data),
		kubePrefix + "public-ip":                                 p.PublicIP.String(),
		"node.alpha.kubernetes.io/ttl":                           "0",
		"volumes.kubernetes.io/controller-managed-attach-detach": "true",
	}, nil
}

// KubeUpdate is one Node update flannel has no use for: the j-th of a run
// (0-based) on the Node named node. Nine in ten are a kubelet's status
// heartbeat (a strategic-merge PATCH of nodes/<node>/status that moves the
// Ready condition's lastHeartbeatTime), one in ten a label change (a merge
// PATCH of nodes/<node>). Each one changes the Node (the heartbeat time is
// base plus j seconds, the label value is j), so the API server stores it
// and every watcher gets an event.
type KubeUpdate struct {
	Path        string // request path, e.g. /api/v1/nodes/peer-00001/status
	ContentType string
	Body        []byte
	Heartbeat   bool // false: a label change
}

// NewKubeUpdate builds the j-th update of a run, on node.
func NewKubeUpdate(j int, node string, base time.Time) (KubeUpdate, error) {
	if j%10 == 9 {
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"labels": map[string]string{"bench.flannel.example/gen": strconv.Itoa(j)}}})
		return KubeUpdate{Path: "/api/v1/nodes/" + node, ContentType: "application/merge-patch+json", Body: body}, err
	}
	// What a kubelet sends every 10 s (or 5 min with node leases), cut
	// to the Ready condition; strategic merge keys conditions by type.
	type condition struct {
		Type               string `json:"type"`
		Status             string `json:"status"`
		Reason             string `json:"reason"`
		Message            string `json:"message"`
		LastHeartbeatTime  string `json:"lastHeartbeatTime"`
		LastTransitionTime string `json:"lastTransitionTime"`
	}
	var patch struct {
		Status struct {
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}
	patch.Status.Conditions = []condition{{
		Type: "Ready", Status: "True", Reason: "KubeletReady", Message: "kubelet is posting ready status",
		LastHeartbeatTime:  base.Add(time.Duration(j) * time.Second).UTC().Format(time.RFC3339),
		LastTransitionTime: base.UTC().Format(time.RFC3339),
	}}
	body, err := json.Marshal(&patch)
	return KubeUpdate{Path: "/api/v1/nodes/" + node + "/status", ContentType: "application/strategic-merge-patch+json", Body: body, Heartbeat: true}, err
}

// Log lines of flanneld the kube case reads (subnet/kube, daemon).
const (
	logSynced     = `msg="Node controller sync successful"`
	logProgrammed = `msg="Data plane programmed"`
	logIgnoring   = `msg="ignoring peer"`
)

// kubeLog is what the kube case reads from the daemon's log.
type kubeLog struct {
	Synced        time.Time // the informer's sync, "Node controller sync successful"
	Nodes         int       // Nodes the informer held then
	Programmed    time.Time // the first pass done, "Data plane programmed"
	Peers         int       // peers it programmed
	HasProgrammed bool
}

// parseKubeLog finds the sync line and the first "Data plane programmed"
// line in a flanneld log (slog's text format). The sync line is required;
// the other may not have been written yet.
func parseKubeLog(log string) (kubeLog, error) {
	var r kubeLog
	var synced bool
	for _, line := range strings.Split(log, "\n") {
		switch {
		case !synced && strings.Contains(line, logSynced):
			t, err := logTime(line)
			if err != nil {
				return r, err
			}
			n, err := strconv.Atoi(logField(line, "nodes"))
			if err != nil {
				return r, fmt.Errorf("sync line %q: nodes: %w", line, err)
			}
			r.Synced, r.Nodes, synced = t, n, true
		case synced && !r.HasProgrammed && strings.Contains(line, logProgrammed):
			t, err := logTime(line)
			if err != nil {
				return r, err
			}
			n, err := strconv.Atoi(logField(line, "peers"))
			if err != nil {
				return r, fmt.Errorf("programmed line %q: peers: %w", line, err)
			}
			r.Programmed, r.Peers, r.HasProgrammed = t, n, true
		}
	}
	if !synced {
		return r, errors.New("no " + logSynced + " line in the daemon's log")
	}
	return r, nil
}

// loggedIgnoring reports whether the daemon logged that it ignores the
// Node named node.
func loggedIgnoring(log, node string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, logIgnoring) && logField(line, "node") == node {
			return true
		}
	}
	return false
}

func logTime(line string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, logField(line, "time"))
	if err != nil {
		return t, fmt.Errorf("log line %q: %w", line, err)
	}
	return t, nil
}

// logField returns the value of key=value in a slog text line, unquoted;
// "" when the line has no such key.
func logField(line, key string) string {
	rest := line
	for {
		i := strings.Index(rest, key+"=")
		if i < 0 {
			return ""
		}
		if i > 0 && rest[i-1] != ' ' {
			rest = rest[i+len(key)+1:]
			continue
		}
		v := rest[i+len(key)+1:]
		if strings.HasPrefix(v, `"`) {
			if q, err := strconv.QuotedPrefix(v); err == nil {
				s, _ := strconv.Unquote(q)
				return s
			}
		}
		if j := strings.IndexByte(v, ' '); j >= 0 {
			v = v[:j]
		}
		return v
	}
}
