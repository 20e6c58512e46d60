// Package imagegc removes unused images when the image filesystem fills up, as upstream's image
// garbage collector does: above imageGCHighThresholdPercent it frees down to
// imageGCLowThresholdPercent, least recently used images first, never an image a container
// (running or exited) uses, a pinned image or the runtime's sandbox image, and never an image
// first seen less than imageMinimumGCAge ago. The selection is pure; Manager does the CRI calls.
package imagegc

import (
	"sort"
	"time"
)

// Policy is the image GC configuration.
type Policy struct {
	// HighPercent: usage above this starts a collection; 100 disables it.
	HighPercent int
	// LowPercent: a collection frees down to this usage.
	LowPercent int
	// MinAge: an image first seen less than this long ago is kept.
	MinAge time.Duration
}

// Candidate is an unused image that may be removed.
type Candidate struct {
	ID   string
	Tags []string
	Size uint64
	// FirstDetected is when the kubelet first saw the image; LastUsed when it last saw a
	// container using it (zero: never).
	FirstDetected time.Time
	LastUsed      time.Time
}

// BytesToFree returns how much a collection must free for the filesystem (capacity and
// available bytes) to get down to the low threshold; 0 when usage is not above the high one.
func BytesToFree(capacity, available uint64, p Policy) uint64 {
	if capacity == 0 || p.HighPercent >= 100 {
		return 0
	}
	if available > capacity {
		available = capacity
	}
	// Upstream's rounding: usage is 100 minus the available share, in whole percent.
	usage := 100 - int(available*100/capacity)
	if usage <= p.HighPercent {
		return 0
	}
	target := capacity * uint64(100-p.LowPercent) / 100
	if target <= available {
		return 0
	}
	return target - available
}

// Select returns the candidates to remove, in removal order, until their sizes add up to at
// least bytes: least recently used first (never used counts as oldest), then first detected
// first. Candidates younger than minAge at now are skipped.
func Select(candidates []Candidate, now time.Time, minAge time.Duration, bytes uint64) []Candidate {
	sorted := append([]Candidate(nil), candidates...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.LastUsed.Equal(b.LastUsed) {
			return a.LastUsed.Before(b.LastUsed)
		}
		if !a.FirstDetected.Equal(b.FirstDetected) {
			return a.FirstDetected.Before(b.FirstDetected)
		}
		return a.ID < b.ID
	})
	var out []Candidate
	var freed uint64
	for _, c := range sorted {
		if freed >= bytes {
			break
		}
		if now.Sub(c.FirstDetected) < minAge {
			continue
		}
		out = append(out, c)
		freed += c.Size
	}
	return out
}
