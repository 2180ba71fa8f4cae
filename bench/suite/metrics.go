package suite

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// passStats is the daemon's reconcile pass histogram: seconds in all
// passes and their number.
type passStats struct{ sum, count float64 }

// parsePasses reads flannel_reconcile_duration_seconds_sum and _count from
// a Prometheus text exposition.
func parsePasses(b []byte) (passStats, error) {
	var s passStats
	var haveSum, haveCount bool
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "flannel_reconcile_duration_seconds_sum":
			dst, haveSum = &s.sum, true
		case "flannel_reconcile_duration_seconds_count":
			dst, haveCount = &s.count, true
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return s, fmt.Errorf("parse %s: %w", name, err)
		}
		*dst = v
	}
	if !haveSum || !haveCount {
		return s, errors.New("no flannel_reconcile_duration_seconds in /metrics")
	}
	return s, nil
}

// passCounter is the daemon's counter of data-plane passes, one series per
// kind (full, incremental; see docs/metrics.md).
const passCounter = "flannel_reconcile_passes_total"

// parsePassCount sums flannel_reconcile_passes_total over its kinds. A
// daemon that has made no pass of any kind yet exposes no series, which
// counts as 0; the histogram (always exposed) tells a daemon without the
// counter from one that is not flanneld at all.
func parsePassCount(b []byte) (float64, error) {
	var n float64
	for _, line := range strings.Split(string(b), "\n") {
		series, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if name, _, _ := strings.Cut(series, "{"); name != passCounter {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", series, err)
		}
		n += v
	}
	if _, err := parsePasses(b); err != nil {
		return 0, err
	}
	return n, nil
}
