package startqueue

import (
	"context"
	"errors"
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
