package startqueue

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitQueued blocks until n calls are waiting in q.
func waitQueued(t *testing.T, q *Queue, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		got := len(q.waiting)
		q.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls waiting, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGrantsLowestTicketFirst(t *testing.T) {
	tests := []struct {
		name    string
		slots   int
		tickets []uint64 // in the order the calls start waiting
		want    []uint64 // grant order
	}{
		{"earlier pod jumps the line", 1, []uint64{5, 2, 9, 1}, []uint64{1, 2, 5, 9}},
		{"equal tickets keep arrival order", 1, []uint64{3, 3, 1}, []uint64{1, 3, 3}},
		{"two slots", 2, []uint64{7, 4, 6}, []uint64{4, 6, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(tt.slots)
			ctx := context.Background()
			// Take every slot so the calls below wait.
			var held []func()
			for range tt.slots {
				r, err := q.Acquire(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, r)
			}
			type grant struct {
				ticket  uint64
				release func()
			}
			grants := make(chan grant)
			for i, tk := range tt.tickets {
				go func() {
					r, err := q.Acquire(ctx, tk)
					if err != nil {
						t.Error(err)
						return
					}
					grants <- grant{tk, r}
				}()
				waitQueued(t, q, i+1)
			}
			// Hand back one slot at a time; each must go to the lowest ticket still waiting.
			var order []uint64
			for range tt.tickets {
				held[0]()
				held = held[1:]
				g := <-grants
				order = append(order, g.ticket)
				held = append(held, g.release)
			}
			for _, r := range held {
				r()
			}
			for i := range order {
				if order[i] != tt.want[i] {
					t.Fatalf("granted %v, want %v", order, tt.want)
				}
			}
		})
	}
}

func TestNeverMoreThanNInFlight(t *testing.T) {
	const slots, calls = 3, 40
	q := New(slots)
	var inFlight, most atomic.Int32
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := q.Acquire(context.Background(), uint64(i))
			if err != nil {
				t.Error(err)
				return
			}
			n := inFlight.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			r()
		}()
	}
	wg.Wait()
	if got := most.Load(); got > slots {
		t.Fatalf("%d calls in flight at once, cap %d", got, slots)
	}
	if got := most.Load(); got < 2 {
		t.Fatalf("at most %d call in flight: the cap of %d was not used", got, slots)
	}
}

func TestCancelledWaiterLosesNoSlot(t *testing.T) {
	q := New(1)
	r, _ := q.Acquire(context.Background(), 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := q.Acquire(ctx, 2)
		done <- err
	}()
	waitQueued(t, q, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire returned %v, want context.Canceled", err)
	}
	r()
	r() // a second release must not add a slot
	r2, err := q.Acquire(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := q.Acquire(ctx2, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second slot granted from a queue of 1 (err %v): a release counted twice", err)
	}
	r2()
}

func TestNoCap(t *testing.T) {
	q := New(0)
	if q != nil {
		t.Fatal("New(0) should be the uncapped nil queue")
	}
	for i := range 100 {
		if _, err := q.Acquire(context.Background(), q.Ticket()+uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// Enqueue fixes a caller's order without blocking: the first free slots go out at once, the
// rest by ticket as slots come back, equal tickets in the order they were enqueued.
func TestEnqueueGrantsByTicket(t *testing.T) {
	tests := []struct {
		name    string
		slots   int
		tickets []uint64 // enqueued in this order; then one release per ticket
		want    []uint64 // tickets in the order they were granted
	}{
		{"free slots go at once, the rest in ticket order", 2, []uint64{0, 1, 2, 3}, []uint64{0, 1, 2, 3}},
		// A pod that asks again (for its create) goes ahead of later pods' sandboxes.
		{"earlier pod jumps the line", 1, []uint64{5, 7, 9, 2}, []uint64{5, 2, 7, 9}},
		{"same ticket twice keeps arrival order", 1, []uint64{3, 4, 4, 1}, []uint64{3, 1, 4, 4}},
		{"enqueued out of order, granted in order", 2, []uint64{8, 9, 6, 4, 5}, []uint64{8, 9, 4, 5, 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := New(tc.slots)
			var ws []*Waiter
			var got []uint64
			seen := map[*Waiter]bool{}
			// collect appends the tickets granted by the last step; one step grants at most one.
			collect := func() {
				for i, w := range ws {
					if w.Granted() && !seen[w] {
						seen[w] = true
						got = append(got, tc.tickets[i])
					}
				}
			}
			for _, tk := range tc.tickets {
				ws = append(ws, q.Enqueue(tk))
				collect()
			}
			if len(got) != min(tc.slots, len(tc.tickets)) {
				t.Fatalf("granted %v before any release, want the first %d", got, tc.slots)
			}
			for range tc.tickets {
				r := q.releaser()
				r()
				collect()
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("grant order %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEnqueuedWaiterWithdraws(t *testing.T) {
	q := New(1)
	first := q.Enqueue(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Enqueue(1).Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context = %v, want context.Canceled", err)
	}
	next := q.Enqueue(2)
	release, err := first.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release() // ticket 0's slot: ticket 1 withdrew, so ticket 2 must get it
	if !next.Granted() {
		t.Fatal("the withdrawn waiter kept its place: ticket 2 not granted")
	}
	// No cap: every Enqueue is granted at once.
	if w := New(0).Enqueue(4); !w.Granted() {
		t.Fatal("uncapped Enqueue not granted")
	}
}
