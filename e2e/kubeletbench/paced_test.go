package kubeletbench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pacedRuntime is a CRI runtime whose start calls take fixed times and which records, per call,
// its order and what was in flight. A slot-holding phase is a RunPodSandbox, or a
// CreateContainer through its StartContainer.
type pacedRuntime struct {
	internalapi.RuntimeService // unused methods panic

	sandboxTime, containerTime time.Duration
	// barrier, when set, holds every RunPodSandbox until that many are in flight (or a few
	// seconds pass): proof that they were all issued at once.
	barrier int

	mu         sync.Mutex
	seq        int
	order      map[string]int // "sandbox 3", "create 3" -> call order
	inFlight   int
	maxFlight  int
	sandboxes  int // RunPodSandbox calls so far
	containers map[string]*runtimeapi.ContainerStatus
	removed    []string
	arrived    chan struct{}
}

func newPacedRuntime(sandbox, container time.Duration, barrier int) *pacedRuntime {
	return &pacedRuntime{sandboxTime: sandbox, containerTime: container, barrier: barrier,
		order: map[string]int{}, containers: map[string]*runtimeapi.ContainerStatus{}, arrived: make(chan struct{})}
}

func (f *pacedRuntime) enter(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.order[what] = f.seq
	f.inFlight++
	f.maxFlight = max(f.maxFlight, f.inFlight)
	if strings.HasPrefix(what, "sandbox ") {
		f.sandboxes++
		if f.sandboxes == f.barrier {
			close(f.arrived)
		}
	}
}

func (f *pacedRuntime) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight--
}

// pod is the floor pod's index, from its name (floor-NN).
func podOf(name string) string { return strings.TrimPrefix(name, "floor-") }

func (f *pacedRuntime) RunPodSandbox(_ context.Context, c *runtimeapi.PodSandboxConfig, _ string) (string, error) {
	pod := podOf(c.GetMetadata().GetName())
	f.enter("sandbox " + pod)
	defer f.leave()
	if f.barrier > 0 {
		select {
		case <-f.arrived:
		case <-time.After(5 * time.Second):
		}
	}
	time.Sleep(f.sandboxTime)
	return "sb-" + pod, nil
}

func (f *pacedRuntime) CreateContainer(_ context.Context, sandbox string, _ *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	pod := strings.TrimPrefix(sandbox, "sb-")
	f.enter("create " + pod)
	time.Sleep(f.containerTime / 2)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers["c-"+pod] = &runtimeapi.ContainerStatus{CreatedAt: time.Now().UnixNano()}
	return "c-" + pod, nil
}

func (f *pacedRuntime) StartContainer(_ context.Context, id string) error {
	defer f.leave() // the phase entered at CreateContainer
	time.Sleep(f.containerTime / 2)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[id].StartedAt = time.Now().UnixNano()
	return nil
}

func (f *pacedRuntime) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimeapi.ContainerStatusResponse{Status: f.containers[id]}, nil
}

func (f *pacedRuntime) StopPodSandbox(context.Context, string) error { return nil }

func (f *pacedRuntime) RemovePodSandbox(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	return nil
}

func TestCRIFloorPacing(t *testing.T) {
	const n = 10
	tests := []struct {
		name  string
		paced int
	}{
		{"one at a time", 1},
		{"two at a time", 2},
		{"three at a time", 3},
		{"cap above the burst: all at once", n + 5},
		{"unpaced: all at once", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			barrier := 0
			if tc.paced == 0 || tc.paced >= n {
				barrier = n
			}
			// Sandboxes take much longer than containers, as on a real node; the margins below
			// are whole sandbox calls, so a loaded machine's scheduling delays do not flip them.
			f := newPacedRuntime(100*time.Millisecond, 20*time.Millisecond, barrier)
			samples, err := criFloor(context.Background(), f, n, tc.paced, "pause", "/bench", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if len(samples) != n || len(f.removed) != n {
				t.Fatalf("%d samples, %d sandboxes removed; want %d of each", len(samples), len(f.removed), n)
			}
			for i, s := range samples {
				if s.created <= 0 || s.started < s.created {
					t.Errorf("pod %d: created %s, started %s: want 0 < created <= started", i, s.created, s.started)
				}
			}
			if tc.paced == 0 || tc.paced >= n {
				if f.maxFlight != n {
					t.Errorf("at most %d calls in flight, want all %d at once", f.maxFlight, n)
				}
				return
			}
			if f.maxFlight > tc.paced {
				t.Errorf("%d start calls in flight, want at most %d", f.maxFlight, tc.paced)
			}
			at := func(what string, pod int) int { return f.order[fmt.Sprintf("%s %02d", what, pod)] }
			// Slots go in pod order (within one wave the K granted calls race each other).
			for i := 0; i < n; i++ {
				for j := i + 2*tc.paced; j < n; j++ {
					if at("sandbox", j) < at("sandbox", i) {
						t.Errorf("pod %d's RunPodSandbox came before pod %d's", j, i)
					}
				}
			}
			// Once a pod waits for its create it goes ahead of every later pod still waiting for
			// its sandbox: the first K pods' creates (asked for after the first wave) come
			// before the fourth wave of sandboxes.
			for i := 0; i < tc.paced; i++ {
				for j := 3 * tc.paced; j < n; j++ {
					if at("create", i) > at("sandbox", j) {
						t.Errorf("pod %d's CreateContainer came after pod %d's RunPodSandbox", i, j)
					}
				}
			}
			// Early pods finish first: every pod before the last wave is running before the
			// last pod.
			last := samples[n-1].started
			for i, s := range samples[:n-tc.paced] {
				if s.started > last {
					t.Errorf("pod %d started at %s, after the last pod (%s)", i, s.started, last)
				}
			}
		})
	}
}
