package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRunExitStatus(t *testing.T) {
	cut := fmt.Errorf("lease 10.5.3.0/24: re-acquire: %w", context.Canceled)
	for _, tc := range []struct {
		signalled bool
		err       error
		want      int
	}{
		{false, nil, 0},
		{true, nil, 0},
		{true, cut, 0}, // SIGTERM while re-acquiring
		{true, errors.New("configure vxlan backend"), 0}, // whatever failed on the way out
		{false, errors.New("Failed to write subnet file"), 1},
	} {
		if got := runExitStatus(tc.signalled, tc.err); got != tc.want {
			t.Errorf("runExitStatus(%v, %v) = %d, want %d", tc.signalled, tc.err, got, tc.want)
		}
	}
}
