// Package podworkers runs one goroutine per pod so syncs of a pod never overlap while different
// pods sync in parallel. A sync is triggered by a pod update, a runtime event or a timer the
// previous sync asked for; triggers that arrive during a sync coalesce into one more sync.
package podworkers

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
)

// Result is what one sync of a pod reports back.
type Result struct {
	// RequeueAfter asks for another sync after this long; 0 waits for the next trigger.
	RequeueAfter time.Duration
	// Finished: the pod is gone from the node and from the desired set; its worker ends.
	Finished bool
}

// Syncer syncs one pod (it reads the latest desired pod itself).
type Syncer interface {
	Sync(ctx context.Context, uid types.UID) (Result, error)
}

// Workers owns the per-pod goroutines.
type Workers struct {
	syncer Syncer
	log    *zap.Logger
	resync time.Duration

	mu      sync.Mutex
	ctx     context.Context
	workers map[types.UID]*worker
	wg      sync.WaitGroup
}

type worker struct {
	kick chan struct{}
}

// New returns the workers. resync is the longest a pod goes without a sync (upstream's
// syncFrequency); it refreshes volumes and catches anything an event missed.
func New(s Syncer, resync time.Duration, log *zap.Logger) *Workers {
	return &Workers{syncer: s, log: log, resync: resync, workers: map[types.UID]*worker{}}
}

// Run enables the workers until ctx ends, then waits for running syncs to return.
func (w *Workers) Run(ctx context.Context) {
	w.mu.Lock()
	w.ctx = ctx
	pending := make([]types.UID, 0, len(w.workers))
	for uid := range w.workers {
		pending = append(pending, uid)
	}
	w.workers = map[types.UID]*worker{}
	w.mu.Unlock()
	for _, uid := range pending {
		w.Trigger(uid)
	}
	<-ctx.Done()
	w.wg.Wait()
}

// Trigger asks for a sync of the pod, starting its worker when it has none.
func (w *Workers) Trigger(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == nil {
		// Not running yet: remember it; Run starts it.
		w.workers[uid] = &worker{}
		return
	}
	if w.ctx.Err() != nil {
		return
	}
	wk := w.workers[uid]
	if wk == nil {
		wk = &worker{kick: make(chan struct{}, 1)}
		w.workers[uid] = wk
		w.wg.Add(1)
		go w.loop(w.ctx, uid, wk)
	}
	select {
	case wk.kick <- struct{}{}:
	default:
	}
}

// Active returns the UIDs that have a worker.
func (w *Workers) Active() []types.UID {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]types.UID, 0, len(w.workers))
	for uid := range w.workers {
		out = append(out, uid)
	}
	return out
}

func (w *Workers) loop(ctx context.Context, uid types.UID, wk *worker) {
	defer w.wg.Done()
	errDelay := time.Second
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wk.kick:
		case <-timer.C:
		}
		timer.Stop()
		res, err := w.syncer.Sync(ctx, uid)
		next := w.resync
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("pod sync failed", zap.String("podUID", string(uid)), zap.Error(err))
			next = errDelay
			errDelay = min(errDelay*2, 30*time.Second)
		} else {
			errDelay = time.Second
			if res.Finished {
				w.mu.Lock()
				// A trigger that raced with the finish keeps the worker.
				select {
				case <-wk.kick:
					w.mu.Unlock()
					timer.Reset(0)
					continue
				default:
				}
				delete(w.workers, uid)
				w.mu.Unlock()
				return
			}
			if res.RequeueAfter > 0 && res.RequeueAfter < next {
				next = res.RequeueAfter
			}
		}
		if next > 0 {
			timer.Reset(next)
		}
	}
}
