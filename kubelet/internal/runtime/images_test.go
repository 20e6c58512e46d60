package runtime

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

// gatedImages holds every pull until release is closed and records how many were in flight.
type gatedImages struct {
	*critest.FakeImageService
	release chan struct{}

	mu                sync.Mutex
	inflight, maxSeen int
}

func (g *gatedImages) PullImage(ctx context.Context, image *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, sb *runtimeapi.PodSandboxConfig) (string, error) {
	g.mu.Lock()
	g.inflight++
	g.maxSeen = max(g.maxSeen, g.inflight)
	g.mu.Unlock()
	<-g.release
	g.mu.Lock()
	g.inflight--
	g.mu.Unlock()
	return image.Image, nil
}

func (g *gatedImages) now() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight
}

func TestPullParallelism(t *testing.T) {
	no, yes := false, true
	three := int32(3)
	cases := []struct {
		name        string
		serialize   *bool
		maxParallel *int32
		want        int // pulls in flight with five images wanted at once
	}{
		{"serializeImagePulls true pulls one at a time", &yes, nil, 1},
		{"serializeImagePulls unset means true", nil, nil, 1},
		{"parallel with maxParallelImagePulls", &no, &three, 3},
		{"parallel without a cap", &no, nil, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &gatedImages{FakeImageService: critest.NewFakeImageService(), release: make(chan struct{})}
			pl := NewParallelPuller(g, fakeObjects{}, time.Now, MaxParallelPulls(tc.serialize, tc.maxParallel))
			var wg sync.WaitGroup
			errs := make(chan error, 5)
			for i := 0; i < 5; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					p := testPod()
					c := &p.Spec.Containers[0]
					c.Image, c.ImagePullPolicy = fmt.Sprintf("registry.example/app%d:1", i), v1.PullAlways
					if _, err := pl.EnsureImage(context.Background(), p, c, nil); err != nil {
						errs <- err
					}
				}(i)
			}
			deadline := time.Now().Add(5 * time.Second)
			for g.now() < tc.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			// Give pulls beyond the cap the chance to start if the cap did not hold them.
			time.Sleep(100 * time.Millisecond)
			close(g.release)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if g.maxSeen != tc.want {
				t.Fatalf("%d pulls in flight at most, want %d", g.maxSeen, tc.want)
			}
		})
	}
}

func TestPullWaitingForSlotHonoursContext(t *testing.T) {
	g := &gatedImages{FakeImageService: critest.NewFakeImageService(), release: make(chan struct{})}
	defer close(g.release)
	pl := NewPuller(g, fakeObjects{}, time.Now)
	p := testPod()
	p.Spec.Containers[0].ImagePullPolicy = v1.PullAlways
	go func() { _, _ = pl.EnsureImage(context.Background(), p, &p.Spec.Containers[0], nil) }()
	for g.now() < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	q := testPod()
	q.Spec.Containers[0].Image, q.Spec.Containers[0].ImagePullPolicy = "other:1", v1.PullAlways
	if _, err := pl.EnsureImage(ctx, q, &q.Spec.Containers[0], nil); err == nil {
		t.Fatal("a pull queued behind a running one must give up when its context ends")
	}
}
