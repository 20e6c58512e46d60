package podworkers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
)

type fakeSyncer struct {
	mu       sync.Mutex
	running  map[types.UID]bool
	overlap  atomic.Bool
	calls    map[types.UID]int
	finishAt int
	requeue  time.Duration
	delay    time.Duration
}

func (f *fakeSyncer) Sync(_ context.Context, uid types.UID) (Result, error) {
	f.mu.Lock()
	if f.running[uid] {
		f.overlap.Store(true)
	}
	f.running[uid] = true
	f.calls[uid]++
	n := f.calls[uid]
	f.mu.Unlock()
	time.Sleep(f.delay)
	f.mu.Lock()
	f.running[uid] = false
	f.mu.Unlock()
	return Result{Finished: f.finishAt > 0 && n >= f.finishAt, RequeueAfter: f.requeue}, nil
}

func (f *fakeSyncer) count(uid types.UID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[uid]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSyncsAreSerializedPerPodAndCoalesced(t *testing.T) {
	s := &fakeSyncer{running: map[types.UID]bool{}, calls: map[types.UID]int{}, delay: 50 * time.Millisecond}
	w := New(s, time.Hour, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	waitFor(t, "run", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.ctx != nil })
	for i := 0; i < 20; i++ {
		w.Trigger("a")
		w.Trigger("b")
	}
	waitFor(t, "syncs of both pods", func() bool { return s.count("a") >= 1 && s.count("b") >= 1 })
	time.Sleep(200 * time.Millisecond)
	if s.overlap.Load() {
		t.Fatal("two syncs of one pod overlapped")
	}
	if n := s.count("a"); n > 3 {
		t.Fatalf("20 triggers during a sync made %d syncs, want them coalesced (<=3)", n)
	}
	cancel()
	<-done
}

func TestRequeueAndFinish(t *testing.T) {
	s := &fakeSyncer{running: map[types.UID]bool{}, calls: map[types.UID]int{}, requeue: 10 * time.Millisecond, finishAt: 3}
	w := New(s, time.Hour, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	waitFor(t, "run", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.ctx != nil })
	w.Trigger("a")
	waitFor(t, "three syncs through requeues", func() bool { return s.count("a") >= 3 })
	waitFor(t, "worker to end", func() bool { return len(w.Active()) == 0 })
	time.Sleep(50 * time.Millisecond)
	if n := s.count("a"); n != 3 {
		t.Fatalf("%d syncs after finishing, want 3", n)
	}
	w.Trigger("a")
	waitFor(t, "a new worker for a new trigger", func() bool { return s.count("a") == 4 })
}
