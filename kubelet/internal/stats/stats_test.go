package stats

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

type fakeRuntime struct {
	sbs        []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
	cs         []*runtimeapi.ContainerStats
}

// ListContainers honours the state filter, as containerd does.
func (f fakeRuntime) ListContainers(_ context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	var out []*runtimeapi.Container
	for _, c := range f.containers {
		if filter.GetState() != nil && filter.GetState().State != c.State {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func (f fakeRuntime) ListPodSandbox(context.Context, *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	return f.sbs, nil
}

func (f fakeRuntime) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	return f.cs, nil
}

func cstats(id, uid, name string, cpu, mem uint64) *runtimeapi.ContainerStats {
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: id, Metadata: &runtimeapi.ContainerMetadata{Name: name}, Labels: map[string]string{runtime.LabelPodUID: uid}},
		Cpu:        &runtimeapi.CpuUsage{Timestamp: 1, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpu}},
		Memory:     &runtimeapi.MemoryUsage{Timestamp: 1, WorkingSetBytes: &runtimeapi.UInt64Value{Value: mem}},
	}
}

func TestSummary(t *testing.T) {
	proc := t.TempDir()
	files := map[string]string{
		"stat":    "cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 100 0 50 1000 10 0 0 0 0 0\n",
		"meminfo": "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nSwapTotal:       100 kB\nSwapFree:         30 kB\n",
		"uptime":  "100.00 50.00\n",
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(proc, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rt := fakeRuntime{
		sbs: []*runtimeapi.PodSandbox{
			{Id: "sb-b", Metadata: &runtimeapi.PodSandboxMetadata{Name: "b", Namespace: "ns"}, Labels: map[string]string{runtime.LabelPodUID: "uid-b"}},
			{Id: "sb-a", Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "ns"}, Labels: map[string]string{runtime.LabelPodUID: "uid-a"}},
		},
		containers: []*runtimeapi.Container{
			ctr("c-two", "sb-a", "uid-a", "two", runtimeapi.ContainerState_CONTAINER_RUNNING),
			ctr("c-one", "sb-a", "uid-a", "one", runtimeapi.ContainerState_CONTAINER_RUNNING),
			ctr("c-one-old", "sb-a", "uid-a", "one", runtimeapi.ContainerState_CONTAINER_EXITED),
			ctr("c-x", "sb-b", "uid-b", "x", runtimeapi.ContainerState_CONTAINER_RUNNING),
			ctr("c-y", "sb-gone", "uid-gone", "y", runtimeapi.ContainerState_CONTAINER_RUNNING),
		},
		cs: []*runtimeapi.ContainerStats{
			cstats("c-two", "uid-a", "two", 10, 100), cstats("c-one", "uid-a", "one", 5, 50), cstats("c-x", "uid-b", "x", 1, 1),
			cstats("c-one-old", "uid-a", "one", 1000, 1000), // exited: its last usage is not current
			cstats("c-y", "uid-gone", "y", 7, 7),            // its sandbox is not ready: not reported
		},
	}
	now := time.Unix(10000, 0)
	sum, err := New(rt, "node-a", proc, func() time.Time { return now }).Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Node.NodeName != "node-a" || *sum.Node.CPU.UsageCoreNanoSeconds != 150*uint64(time.Second)/100 {
		t.Errorf("node cpu: %+v", sum.Node.CPU)
	}
	if *sum.Node.Memory.WorkingSetBytes != 400*1024 || *sum.Node.Memory.AvailableBytes != 600*1024 {
		t.Errorf("node memory: ws %d avail %d", *sum.Node.Memory.WorkingSetBytes, *sum.Node.Memory.AvailableBytes)
	}
	if sum.Node.Swap == nil || *sum.Node.Swap.SwapUsageBytes != 70*1024 || *sum.Node.Swap.SwapAvailableBytes != 30*1024 {
		t.Errorf("node swap: %+v", sum.Node.Swap)
	}
	if !sum.Node.StartTime.Time.Equal(now.Add(-100 * time.Second)) {
		t.Errorf("node start %v", sum.Node.StartTime)
	}
	if len(sum.Pods) != 2 || sum.Pods[0].PodRef.Name != "a" || sum.Pods[1].PodRef.Name != "b" {
		t.Fatalf("pods: %+v", sum.Pods)
	}
	a := sum.Pods[0]
	if *a.CPU.UsageCoreNanoSeconds != 15 || *a.Memory.WorkingSetBytes != 150 {
		t.Errorf("pod a sums: cpu %d mem %d", *a.CPU.UsageCoreNanoSeconds, *a.Memory.WorkingSetBytes)
	}
	if len(a.Containers) != 2 || a.Containers[0].Name != "one" || a.Containers[1].Name != "two" {
		t.Fatalf("pod a containers: %+v", a.Containers)
	}
	if got := a.Containers[0].StartTime.Time; !got.Equal(time.Unix(0, created)) {
		t.Errorf("container start time %v, want its creation %v", got, time.Unix(0, created))
	}

	snap, err := New(rt, "node-a", proc, func() time.Time { return now }).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range snap.Containers {
		ids = append(ids, c.ID+"="+c.Image+"@"+c.Pod.Name)
	}
	if want := []string{"c-one=img:c-one@a", "c-two=img:c-two@a", "c-x=img:c-x@b"}; strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Errorf("snapshot containers %v, want %v", ids, want)
	}
}

// created is every fake container's creation time (ns since the epoch).
const created = int64(1_700_000_000_000_000_000)

func ctr(id, sandbox, uid, name string, state runtimeapi.ContainerState) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: id, PodSandboxId: sandbox, State: state, CreatedAt: created,
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "img:" + id},
		Labels:   map[string]string{runtime.LabelPodUID: uid},
	}
}
