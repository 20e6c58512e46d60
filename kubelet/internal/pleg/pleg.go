// Package pleg is the pod lifecycle event generator: it relists the runtime every period (CRI
// 1.6-era runtimes have no event stream), compares with the previous listing and tells the pod
// workers which pods changed. It reports itself unhealthy when relisting stalls.
package pleg

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// Lister lists the runtime's pods.
type Lister interface {
	Relist(ctx context.Context) (map[types.UID]*runtime.PodState, error)
}

// PLEG relists and emits per-pod change events.
type PLEG struct {
	lister    Lister
	cache     *Cache
	period    time.Duration
	threshold time.Duration
	onChange  func(types.UID)
	log       *zap.Logger
	now       func() time.Time

	mu       sync.Mutex
	last     map[types.UID]*runtime.PodState
	lastOK   time.Time
	lastErr  error
	started  time.Time
	relisted bool
}

// New returns a PLEG. Every successful relist is written to cache (nil: none) before onChange
// is called (from the relist goroutine) for every pod whose runtime state changed, appeared or
// disappeared, so the sync it triggers reads that state. threshold is how long relisting may
// fail before Healthy reports an error.
func New(lister Lister, cache *Cache, period, threshold time.Duration, onChange func(types.UID), now func() time.Time, log *zap.Logger) *PLEG {
	return &PLEG{lister: lister, cache: cache, period: period, threshold: threshold, onChange: onChange, log: log, now: now, last: map[types.UID]*runtime.PodState{}}
}

// Run relists every period until ctx ends.
func (p *PLEG) Run(ctx context.Context) {
	p.mu.Lock()
	p.started = p.now()
	p.mu.Unlock()
	t := time.NewTicker(p.period)
	defer t.Stop()
	for {
		p.Relist(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Relist lists once and emits events.
func (p *PLEG) Relist(ctx context.Context) {
	// The listing shows the runtime as it was when the calls began, or later.
	at := p.now()
	pods, err := p.lister.Relist(ctx)
	p.mu.Lock()
	if err != nil {
		p.lastErr = err
		p.mu.Unlock()
		p.log.Warn("relist failed", zap.Error(err))
		return
	}
	prev := p.last
	p.last = pods
	p.lastOK = p.now()
	p.lastErr = nil
	p.relisted = true
	p.mu.Unlock()
	if p.cache != nil {
		p.cache.SetAll(pods, at)
	}
	for uid, ps := range pods {
		if old, ok := prev[uid]; !ok || !reflect.DeepEqual(old.Observed, ps.Observed) || !reflect.DeepEqual(old.IPs, ps.IPs) {
			p.onChange(uid)
		}
	}
	for uid := range prev {
		if _, ok := pods[uid]; !ok {
			p.onChange(uid)
		}
	}
}

// Pods returns the last listing (shared; do not modify).
func (p *PLEG) Pods() map[types.UID]*runtime.PodState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// Relisted reports whether one relist has succeeded.
func (p *PLEG) Relisted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.relisted
}

// Healthy returns an error when the last successful relist is older than the threshold.
func (p *PLEG) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ref := p.lastOK
	if ref.IsZero() {
		ref = p.started
	}
	if ref.IsZero() {
		return nil // not started yet
	}
	if d := p.now().Sub(ref); d > p.threshold {
		if p.lastErr != nil {
			return fmt.Errorf("PLEG is not healthy: pleg was last seen active %s ago; threshold is %s: %w", d.Round(time.Second), p.threshold, p.lastErr)
		}
		return fmt.Errorf("PLEG is not healthy: pleg was last seen active %s ago; threshold is %s", d.Round(time.Second), p.threshold)
	}
	return nil
}
