package suite

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// parseIperf reads the receiver's rate from iperf3's JSON report.
func parseIperf(b []byte) (float64, error) {
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("parse iperf3 report: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("iperf3 report has no received rate")
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

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
