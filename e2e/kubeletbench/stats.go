package kubeletbench

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds: the smallest sample
// that at least p% of the samples do not exceed. With 30 samples p99 is the maximum, which is
// what a user waiting on the slowest pod of a burst sees. It returns 0 for no samples.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	// The epsilon keeps exact ranks (p50 of 30 = 15) from rounding up through float error.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return s[rank-1]
}
