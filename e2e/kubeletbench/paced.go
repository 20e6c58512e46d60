package kubeletbench

import (
	"context"
	"slices"
	"sync"
)

// podSlots mirrors the kubelet's cap on pod-starting CRI calls for the paced floor: at most k
// slots are held at once, and a freed slot goes to the waiting pod with the lowest index, so
// the burst's early pods finish first (the kubelet grants in the order its pods first asked;
// the floor's pods ask in index order).
type podSlots struct {
	mu      sync.Mutex
	free    int
	waiting []*slotWaiter // sorted by pod index
}

type slotWaiter struct {
	pod     int
	granted chan struct{}
}

// newPodSlots returns k slots; k <= 0 means no cap, a nil *podSlots, whose every ask is granted
// at once.
func newPodSlots(k int) *podSlots {
	if k <= 0 {
		return nil
	}
	return &podSlots{free: k}
}

// ask queues pod for a slot without blocking; the returned channel is closed once the slot is
// granted. Asking for several pods from one goroutine fixes their order among themselves.
func (s *podSlots) ask(pod int) *slotWaiter {
	w := &slotWaiter{pod: pod, granted: make(chan struct{})}
	if s == nil {
		close(w.granted)
		return w
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.waiting, pod, func(w *slotWaiter, p int) int { return w.pod - p })
	// Ties (one pod asking twice) keep arrival order: insert after equal indices.
	for i < len(s.waiting) && s.waiting[i].pod == pod {
		i++
	}
	s.waiting = slices.Insert(s.waiting, i, w)
	s.grantLocked()
	return w
}

// wait blocks until w is granted or ctx ends; in the latter case w is withdrawn (or its slot,
// if it was granted meanwhile, handed on).
func (s *podSlots) wait(ctx context.Context, w *slotWaiter) error {
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
	}
	if s == nil {
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-w.granted:
		s.free++
		s.grantLocked()
	default:
		s.waiting = slices.DeleteFunc(s.waiting, func(x *slotWaiter) bool { return x == w })
	}
	return ctx.Err()
}

// acquire asks for a slot for pod and waits for it.
func (s *podSlots) acquire(ctx context.Context, pod int) error {
	return s.wait(ctx, s.ask(pod))
}

// release gives a held slot back; the lowest waiting pod gets it.
func (s *podSlots) release() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free++
	s.grantLocked()
}

func (s *podSlots) grantLocked() {
	for s.free > 0 && len(s.waiting) > 0 {
		s.free--
		close(s.waiting[0].granted)
		s.waiting = s.waiting[1:]
	}
}
