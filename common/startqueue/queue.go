// Package startqueue caps the pod-starting runtime calls in flight and grants waiting calls in
// the order their pods first asked.
//
// Starting a pod is CPU-bound in the runtime (runc, shims, CNI plugins). Given 30 pods at once,
// an uncapped kubelet has every start share the CPUs, so all pods come up late together; with a
// few calls per CPU and earliest-pod-first grants, pods come up one after another: the median
// pod is running in about half the time and the last one no later.
package startqueue

import (
	"container/heap"
	"context"
	"sync"
)

// Queue hands out at most n slots at once. A nil *Queue has no cap.
type Queue struct {
	mu      sync.Mutex
	free    int
	waiting waiters
	next    uint64 // last ticket handed out
	arrived uint64 // waiters so far, to keep arrival order among equal tickets
}

// New returns a queue with n slots; n <= 0 means no cap (a nil queue).
func New(n int) *Queue {
	if n <= 0 {
		return nil
	}
	return &Queue{free: n}
}

// Ticket is a pod's place in line: lower tickets are granted first. A pod takes one when it
// first asks for a slot in a sync and uses it for every call of that sync.
func (q *Queue) Ticket() uint64 {
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.next++
	return q.next
}

// Acquire waits for a slot for ticket t and returns the function that gives it back (call it
// exactly once). It fails only when ctx ends first.
func (q *Queue) Acquire(ctx context.Context, t uint64) (release func(), err error) {
	return q.Enqueue(t).Wait(ctx)
}

// Waiter is one call's place in the queue.
type Waiter struct {
	q *Queue
	w *waiter
}

// Enqueue puts ticket t in line without blocking: a caller that enqueues several tickets from
// one goroutine fixes their order among equal tickets, and the first free slots go to them in
// ticket order. Wait for the slot with Wait.
func (q *Queue) Enqueue(t uint64) *Waiter {
	w := &waiter{ticket: t, granted: make(chan struct{})}
	if q == nil {
		close(w.granted)
		return &Waiter{w: w}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.arrived++
	w.seq = q.arrived
	heap.Push(&q.waiting, w)
	if q.free > 0 {
		q.free--
		q.grantLocked()
	}
	return &Waiter{q: q, w: w}
}

// Granted reports whether the slot has been granted (without waiting).
func (w *Waiter) Granted() bool {
	select {
	case <-w.w.granted:
		return true
	default:
		return false
	}
}

// Wait blocks until the slot is granted and returns the function that gives it back (call it
// exactly once). When ctx ends first it withdraws from the queue (handing the slot on if it was
// granted meanwhile) and returns ctx's error.
func (w *Waiter) Wait(ctx context.Context) (release func(), err error) {
	q := w.q
	if q == nil {
		return func() {}, nil
	}
	select {
	case <-w.w.granted:
		return q.releaser(), nil
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		select {
		case <-w.w.granted:
			q.grantLocked()
		default:
			heap.Remove(&q.waiting, w.w.index)
		}
		return nil, ctx.Err()
	}
}

func (q *Queue) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			q.grantLocked()
		})
	}
}

// grantLocked gives a freed slot to the earliest waiter, or back to the pool.
func (q *Queue) grantLocked() {
	if len(q.waiting) == 0 {
		q.free++
		return
	}
	w := heap.Pop(&q.waiting).(*waiter)
	close(w.granted)
}

type waiter struct {
	ticket  uint64
	seq     uint64
	index   int
	granted chan struct{}
}

// waiters is a min-heap by ticket; equal tickets keep their arrival order.
type waiters []*waiter

func (h waiters) Len() int { return len(h) }
func (h waiters) Less(i, j int) bool {
	if h[i].ticket != h[j].ticket {
		return h[i].ticket < h[j].ticket
	}
	return h[i].seq < h[j].seq
}
func (h waiters) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiters) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiters) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.index = -1
	return w
}
