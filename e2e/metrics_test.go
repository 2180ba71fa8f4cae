//go:build linux

package e2e

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// /metrics during a lab run: the gauges describe the cluster and a route
// deleted by hand moves the repair counter.
func TestPrivilegedMetrics(t *testing.T) {
	c := startCluster(t, 2, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`, "--healthz-port=8471", "--ip-masq", "--iptables-resync=1")
	h1 := c.l.Hosts()[0]
	url := "http://" + net.JoinHostPort(h1.IP.String(), "8471") + "/metrics"
	scrape := func() string {
		code, body, err := httpGet(c.l, url)
		if err != nil || code != 200 {
			t.Fatalf("scrape: %d %v", code, err)
		}
		return body
	}
	body := scrape()
	for name, want := range map[string]float64{"flannel_leases": 2, "flannel_ready": 1, "flannel_subnets_free": 253} {
		if got := metricValue(t, body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if metricValue(t, body, "flannel_lease_expiry_timestamp_seconds") < float64(time.Now().Add(23*time.Hour).Unix()) {
		t.Errorf("lease expiry not published:\n%s", body)
	}
	if metricValue(t, body, `flannel_kernel_objects_total{action="added",object="route"}`) < 1 {
		t.Errorf("no route added counted")
	}
	repaired := `flannel_kernel_objects_total{action="repaired",object="route"}`
	before := metricValue(t, body, repaired)
	peer := c.envs[1].Subnet
	ctx := testCtx(t, 30*time.Second)
	if out, err := c.l.Exec(ctx, h1.NS, "ip", "route", "del", peer.String()); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := c.l.WaitFor(ctx, 5*time.Second, "repair counted", func() error {
		if v := metricValue(t, scrape(), repaired); v <= before {
			return fmt.Errorf("%s = %v", repaired, v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A firewall repair too.
	if out, err := c.l.Exec(ctx, h1.NS, "iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := c.l.WaitFor(ctx, 5*time.Second, "firewall repair counted", func() error {
		if v := metricValue(t, scrape(), `flannel_firewall_repairs_total{table="IPv4 nat"}`); v < 1 {
			return fmt.Errorf("no firewall repair counted")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	final := scrape()
	var ours []string
	for _, line := range strings.Split(final, "\n") {
		if strings.HasPrefix(line, "flannel_") && !strings.Contains(line, "_bucket{") {
			ours = append(ours, line)
		}
	}
	t.Logf("flannel metrics after the repairs:\n%s", strings.Join(ours, "\n"))
	if metricValue(t, final, `flannel_etcd_request_duration_seconds_count{request="list"}`) < 1 {
		t.Error("etcd requests not counted")
	}
}
