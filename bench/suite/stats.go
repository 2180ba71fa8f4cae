package suite

import (
	"fmt"
	"slices"
	"time"
)

// Percentile returns the q-quantile (0 < q <= 1) of ds by the nearest-rank
// method: the smallest value with at least q of the samples at or below it.
// It returns 0 for no samples.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(q*float64(len(s)) + 0.999999999)
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// Spread is the best (smallest) of several measurements of one figure and
// the largest, for "best (spread a–b)" reports.
type Spread[T int | int64 | uint64 | float64 | time.Duration] struct {
	Best, Worst T
	N           int
}

// Add records one measurement.
func (s *Spread[T]) Add(v T) {
	if s.N == 0 || v < s.Best {
		s.Best = v
	}
	if s.N == 0 || v > s.Worst {
		s.Worst = v
	}
	s.N++
}

// FormatDuration prints a duration with a precision that suits its size:
// 0.912s, 35.2ms, 850µs.
func FormatDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

// FormatMiB prints a byte count in MiB.
func FormatMiB(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
