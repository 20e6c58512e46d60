// Package gcpolicy applies kube-proxy's garbage-collector policy: a lower
// GC target percentage than Go's default 100 (the gcPercent config field,
// default 50), so the heap grows to 1.5x its live data between collections
// instead of 2x. A proxy's live data
// (the service and endpoints maps, the plan and the backend's model) grows
// with the cluster, and at 30k services the default doubling is most of
// its peak memory; the price is more frequent collections (make bench-nft
// shows both). The GOGC environment variable, when set, wins, as for any
// Go program.
package gcpolicy

import (
	"runtime/debug"
	"strings"
)

// Applied says what Apply did.
type Applied struct {
	// Percent is the target percentage Apply set; 0 when GOGC was set.
	Percent int
	// Env is GOGC's value when it was set (and so left as Go applied it
	// at start).
	Env string
}

// Apply sets the GC target percentage to percent unless getenv("GOGC") is
// set, and reports what it did.
func Apply(percent int, getenv func(string) string) Applied {
	if env := strings.TrimSpace(getenv("GOGC")); env != "" {
		return Applied{Env: env}
	}
	debug.SetGCPercent(percent)
	return Applied{Percent: percent}
}
