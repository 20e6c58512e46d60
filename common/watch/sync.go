package watch

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Syncer is what WaitForSync needs from an informer. Informer satisfies it.
type Syncer interface {
	Name() string
	HasSynced() bool
}

// syncPoll is how often WaitForSync looks, as client-go's WaitForCacheSync.
const syncPoll = 100 * time.Millisecond

// WaitForSync waits until every informer has synced, for at most timeout
// (0: no limit but ctx). The error names the informers that had not synced.
func WaitForSync(ctx context.Context, timeout time.Duration, informers ...Syncer) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tick := time.NewTicker(syncPoll)
	defer tick.Stop()
	for {
		var pending []string
		for _, inf := range informers {
			if !inf.HasSynced() {
				pending = append(pending, inf.Name())
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if timeout > 0 && ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("caches not synced within %v: %s: %w", timeout, strings.Join(pending, ", "), ctx.Err())
			}
			return fmt.Errorf("caches not synced: %s: %w", strings.Join(pending, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}

// SyncedFunc names a HasSynced function for WaitForSync, e.g. that of the
// registration AddHandler returns, which turns true once the handler has
// seen the informer's initial list.
func SyncedFunc(name string, hasSynced func() bool) Syncer {
	return syncedFunc{name: name, fn: hasSynced}
}

type syncedFunc struct {
	name string
	fn   func() bool
}

func (s syncedFunc) Name() string    { return s.name }
func (s syncedFunc) HasSynced() bool { return s.fn() }
