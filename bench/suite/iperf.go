package suite

import (
	"encoding/json"
	"errors"
	"fmt"
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
