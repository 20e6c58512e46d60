package nft

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// liveHeap returns the live Go heap after a full collection, and the bytes
// allocated so far.
func liveHeap() (live, total uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.TotalAlloc
}

// BenchmarkMemoryBreakdown prints where the heap goes at 30k services x 10
// endpoints: the inputs a kube-proxy holds (service map, endpoints map),
// the plan, the backend's model, and what a full sync, a resync and a
// one-service change allocate. It is a diagnosis aid, a benchmark so that
// make test does not run it (root):
//
//	go test -run '^$' -bench MemoryBreakdown -benchtime 1x ./kubeproxy/internal/nft/
func BenchmarkMemoryBreakdown(b *testing.B) {
	needRoot(b)
	for range b.N {
		memoryBreakdown(b)
	}
}

func memoryBreakdown(t testing.TB) {
	const n, eps = 30000, 10
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

	// Each input is measured by building it alone, then dropping it.
	h0, _ := liveHeap()
	w := newScaleWorld(n, eps)
	h1, _ := liveHeap()
	w.eps = nil
	h2, _ := liveHeap()
	runtime.KeepAlive(w.services)
	fmt.Printf("inputs: %s (service map %s, endpoints map %s)\n", mib(h1-h0), mib(h2-h0), mib(h1-h2))

	w = newScaleWorld(n, eps)
	h3, _ := liveHeap()
	p := w.plan(nil)
	h4, _ := liveHeap()
	fmt.Printf("plan: %s\n", mib(h4-h3))

	ns := newNS(t)
	b, err := New(Config{Family: plan.IPv4, NetNSFd: int(ns)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() { _ = b.Cleanup(ctx) })
	h5, a5 := liveHeap()
	if err := b.Sync(ctx, p, nil, true); err != nil {
		t.Fatal(err)
	}
	h6, a6 := liveHeap()
	fmt.Printf("backend after a full sync: %s (element counts: %d elements in %d slots, %s; %d shared); the full sync allocated %s\n",
		mib(h6-h5), b.refs.m.len(), len(b.refs.m.slots), mib(uint64(8*len(b.refs.m.slots))), len(b.refs.m.extra), mib(a6-a5))
	if err := b.Sync(ctx, p, nil, true); err != nil {
		t.Fatal(err)
	}
	_, a7 := liveHeap()
	fmt.Printf("a resync (reads everything back) allocated %s\n", mib(a7-a6))
	const changes = 50
	for i := range changes {
		ch := w.change(i*7919, i+1)
		if err := b.Sync(ctx, w.plan(ch), ch, false); err != nil {
			t.Fatal(err)
		}
	}
	h8, a8 := liveHeap()
	fmt.Printf("a one-service change (plan and sync) allocated %s; live heap after %d changes: %s\n", mib((a8-a7)/changes), changes, mib(h8-h0))
	runtime.KeepAlive(w)
}
