//go:build linux

package suite

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// metricsPort is the --healthz-port of the scale runs' daemon, which also
// serves /metrics.
const metricsPort = 8471

// scrapePasses reads the reconcile pass histogram's sum and count from the
// daemon's /metrics.
func scrapePasses(ctx context.Context, l *lab.Lab, h *lab.Host) (passStats, error) {
	b, err := scrapeMetrics(ctx, l, h)
	if err != nil {
		return passStats{}, err
	}
	return parsePasses(b)
}

// scrapePassCount reads the number of reconcile passes so far, all kinds,
// from the daemon's /metrics.
func scrapePassCount(ctx context.Context, l *lab.Lab, h *lab.Host) (float64, error) {
	b, err := scrapeMetrics(ctx, l, h)
	if err != nil {
		return 0, err
	}
	return parsePassCount(b)
}

// scrapeMetrics reads the daemon's /metrics, dialing from inside the
// host's namespace.
func scrapeMetrics(ctx context.Context, l *lab.Lab, h *lab.Host) ([]byte, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := lab.InNS(h.NS, func() error {
				var d net.Dialer
				var err error
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
	defer c.CloseIdleConnections()
	url := fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(h.IP, metricsPort))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return b, nil
}
