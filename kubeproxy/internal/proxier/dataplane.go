package proxier

import (
	"context"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// Dataplane programs one IP family's plan into the kernel. The nftables and
// IPVS backends implement it; tests use an in-memory fake. The runner calls
// Sync from one goroutine at a time.
type Dataplane interface {
	// Sync makes the kernel match p. changed names the services whose desired
	// state changed (added, updated or removed) since the last successful
	// Sync; a name in changed but not in p.Services must be removed. When full
	// is true (first sync, periodic resync, after a failed sync) changed is
	// nil and the backend compares everything it owns, repairing drift.
	// p and its Services must not be modified.
	Sync(ctx context.Context, p *plan.Plan, changed map[plan.ServicePortName]struct{}, full bool) error
	// Cleanup removes everything this backend ever made. It is idempotent and
	// succeeds when there is nothing to remove.
	Cleanup(ctx context.Context) error
}
