package podsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/cm"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// steps records pod cgroup writes and container updates in the order they happen.
type steps struct {
	mu  sync.Mutex
	log []string
}

func (s *steps) add(f string, args ...any) {
	s.mu.Lock()
	s.log = append(s.log, fmt.Sprintf(f, args...))
	s.mu.Unlock()
}

func (s *steps) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.log
	s.log = nil
	return out
}

type fakeCgroups struct{ s *steps }

func (f fakeCgroups) EnsurePod(pod *v1.Pod) (string, error) {
	l := cm.Limits(pod)
	f.s.add("ensure quota=%d mem=%d", l.CPUQuota, l.MemoryLimit)
	return "/kubepods/pod" + string(pod.UID), nil
}
func (f fakeCgroups) RemovePod(types.UID) error { return nil }
func (f fakeCgroups) SetPodLimits(_ *v1.Pod, l cm.PodLimits) error {
	f.s.add("pod quota=%d mem=%d", l.CPUQuota, l.MemoryLimit)
	return nil
}

// loggedRuntime records UpdateContainerResources in the step log.
type loggedRuntime struct {
	*runtime.Runtime
	s *steps
}

func (r loggedRuntime) UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	err := r.Runtime.UpdateContainerResources(ctx, id, res)
	r.s.add("update quota=%d mem=%d err=%v", res.CpuQuota, res.MemoryLimitInBytes, err != nil)
	return err
}

type resizeEnv struct {
	*env
	steps    *steps
	recorder *record.FakeRecorder
	dir      string
}

func newResizeEnv(t *testing.T, dir string, base *env) *resizeEnv {
	e := base
	if e == nil {
		e = newEnv(t, nil)
	}
	re := &resizeEnv{env: e, steps: &steps{}, recorder: record.NewFakeRecorder(100), dir: dir}
	rt := runtime.New(e.rs, e.is, time.Second, zap.NewNop())
	s, err := New(Deps{
		Pods: e.pods, Runtime: loggedRuntime{rt, re.steps}, Images: runtime.NewPuller(e.is, noObjects{}, time.Now), Objects: noObjects{},
		Volumes: e.vols, Status: e.status, Deleter: e.deleter, Cgroups: fakeCgroups{re.steps}, Recorder: re.recorder,
		Node: Node{Name: "n1", HostIPs: []string{"192.0.2.10"}, Allocatable: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi")}},
		Log: zap.NewNop(), AllocationDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	re.syncer = s
	return re
}

func resizePod(limCPU, limMem string, policy []v1.ContainerResizePolicy) *v1.Pod {
	p := newPod()
	p.Spec.Containers = []v1.Container{{Name: "a", Image: "busybox:1.36", ResizePolicy: policy, Resources: v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse(limCPU), v1.ResourceMemory: resource.MustParse(limMem)},
	}}}
	return p
}

func (e *resizeEnv) sync(t *testing.T, p *v1.Pod) v1.PodStatus {
	t.Helper()
	e.pods.mu.Lock()
	e.pods.pods[p.UID] = p
	e.pods.mu.Unlock()
	if _, err := e.syncer.Sync(context.Background(), p.UID); err != nil {
		t.Fatal(err)
	}
	return e.status.last[p.UID]
}

func (e *resizeEnv) calls(since int) []string {
	var out []string
	for _, c := range e.rs.GetCalls()[since:] {
		if c == "CreateContainer" || c == "StopContainer" || c == "StartContainer" || c == "UpdateContainerResources" {
			out = append(out, c)
		}
	}
	return out
}

func resizeConds(st v1.PodStatus) map[v1.PodConditionType]v1.PodCondition {
	out := map[v1.PodConditionType]v1.PodCondition{}
	for _, c := range st.Conditions {
		if c.Type == v1.PodResizePending || c.Type == v1.PodResizeInProgress {
			out[c.Type] = c
		}
	}
	return out
}

func TestResizeInPlace(t *testing.T) {
	for _, tc := range []struct {
		name         string
		from, to     [2]string // cpu limit, memory limit
		wantSteps    []string
		wantQuotaMem string
	}{
		{name: "grow: pod cgroup first", from: [2]string{"200m", "128Mi"}, to: [2]string{"400m", "192Mi"},
			wantSteps: []string{"pod quota=40000 mem=201326592", "update quota=40000 mem=201326592 err=false", "pod quota=40000 mem=201326592"}},
		{name: "shrink: pod cgroup last", from: [2]string{"400m", "192Mi"}, to: [2]string{"200m", "128Mi"},
			wantSteps: []string{"pod quota=40000 mem=201326592", "update quota=20000 mem=134217728 err=false", "pod quota=20000 mem=134217728"}},
		{name: "mixed: each resource grows first, shrinks last", from: [2]string{"200m", "192Mi"}, to: [2]string{"400m", "128Mi"},
			wantSteps: []string{"pod quota=40000 mem=201326592", "update quota=40000 mem=134217728 err=false", "pod quota=40000 mem=134217728"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := newResizeEnv(t, dir, nil)
			e.sync(t, resizePod(tc.from[0], tc.from[1], nil))
			e.steps.take()
			before := len(e.rs.GetCalls())
			st := e.sync(t, resizePod(tc.to[0], tc.to[1], nil))
			if got := e.calls(before); strings.Join(got, ",") != "UpdateContainerResources" {
				t.Errorf("runtime calls = %v, want one UpdateContainerResources and no restart", got)
			}
			got := e.steps.take()
			if len(got) < 1 || !strings.HasPrefix(got[0], "ensure") {
				t.Fatalf("steps = %v, want the pod cgroup ensured with the old limits first", got)
			}
			if strings.Join(got[1:], "\n") != strings.Join(tc.wantSteps, "\n") {
				t.Errorf("steps =\n%s\nwant\n%s", strings.Join(got[1:], "\n"), strings.Join(tc.wantSteps, "\n"))
			}
			cs := st.ContainerStatuses[0]
			if cs.RestartCount != 0 || cs.Resources == nil || cs.Resources.Limits.Cpu().String() != tc.to[0] || cs.Resources.Limits.Memory().String() != tc.to[1] {
				t.Errorf("container status %+v", cs)
			}
			if c := resizeConds(st); len(c) != 0 {
				t.Errorf("resize conditions left: %v", c)
			}
			// A restarted kubelet reads the checkpoint: nothing is applied again, and the
			// status still shows the applied resources.
			e2 := newResizeEnv(t, dir, e.env)
			before = len(e.rs.GetCalls())
			st = e2.sync(t, resizePod(tc.to[0], tc.to[1], nil))
			if got := e2.calls(before); len(got) != 0 {
				t.Errorf("after a restart: runtime calls %v, want none", got)
			}
			if r := st.ContainerStatuses[0].Resources; r == nil || r.Limits.Cpu().String() != tc.to[0] {
				t.Errorf("after a restart: status resources %v", r)
			}
		})
	}
}

func TestResizeRestartContainerPolicy(t *testing.T) {
	policy := []v1.ContainerResizePolicy{{ResourceName: v1.ResourceMemory, RestartPolicy: v1.RestartContainer}}
	e := newResizeEnv(t, t.TempDir(), nil)
	e.sync(t, resizePod("200m", "128Mi", policy))
	before := len(e.rs.GetCalls())
	st := e.sync(t, resizePod("200m", "192Mi", policy))
	if got := strings.Join(e.calls(before), ","); got != "StopContainer,CreateContainer,StartContainer" {
		t.Fatalf("runtime calls = %s, want a restart", got)
	}
	var created *runtimeapi.LinuxContainerResources
	for _, c := range e.rs.Containers {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			created = c.LinuxResources
		}
	}
	if created == nil || created.MemoryLimitInBytes != 192<<20 {
		t.Fatalf("restarted container resources %+v, want memory limit 192Mi", created)
	}
	cs := st.ContainerStatuses[0]
	if cs.RestartCount != 1 || cs.Resources == nil || cs.Resources.Limits.Memory().String() != "192Mi" {
		t.Errorf("container status %+v, want restartCount 1 and 192Mi", cs)
	}
	if c := resizeConds(st); len(c) != 0 {
		t.Errorf("resize conditions left: %v", c)
	}
}

func TestResizePending(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reqCPU    string
		otherCPU  string
		want      string
		wantEvent string
	}{
		{name: "more than the node", reqCPU: "3", want: v1.PodReasonInfeasible, wantEvent: "Warning ResizeInfeasible"},
		{name: "not next to another pod", reqCPU: "1500m", otherCPU: "1", want: v1.PodReasonDeferred, wantEvent: "Normal ResizeDeferred"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newResizeEnv(t, t.TempDir(), nil)
			if tc.otherCPU != "" {
				other := newPod()
				other.UID, other.Name = "u2", "other"
				other.Spec.Containers = []v1.Container{{Name: "x", Image: "busybox:1.36", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(tc.otherCPU)}}}}
				e.sync(t, other)
				e.syncer.MarkAdmitted(other.UID)
			}
			e.sync(t, resizePod("2", "128Mi", nil))
			for len(e.recorder.Events) > 0 {
				<-e.recorder.Events // the start's events
			}
			before := len(e.rs.GetCalls())
			want := resizePod("3", "128Mi", nil)
			want.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse(tc.reqCPU)
			st := e.sync(t, want)
			if got := e.calls(before); len(got) != 0 {
				t.Errorf("runtime calls = %v, want none", got)
			}
			c, ok := resizeConds(st)[v1.PodResizePending]
			if !ok || c.Reason != tc.want || !strings.Contains(c.Message, "cpu") {
				t.Fatalf("PodResizePending = %+v, want reason %s naming cpu", c, tc.want)
			}
			if r := st.ContainerStatuses[0].Resources; r == nil || r.Limits.Cpu().String() != "2" {
				t.Errorf("status resources %v, want the old ones", r)
			}
			if q := st.ContainerStatuses[0].AllocatedResources[v1.ResourceCPU]; q.String() != "100m" {
				t.Errorf("allocatedResources %v, want the old cpu 100m", st.ContainerStatuses[0].AllocatedResources)
			}
			// Admission of other pods counts what was accepted, not the pending request.
			if q := e.syncer.AllocatedPod(want).Spec.Containers[0].Resources.Requests[v1.ResourceCPU]; q.String() != "100m" {
				t.Errorf("AllocatedPod cpu request %s, want the accepted 100m", q.String())
			}
			select {
			case ev := <-e.recorder.Events:
				if !strings.HasPrefix(ev, tc.wantEvent) {
					t.Errorf("event %q, want %s", ev, tc.wantEvent)
				}
			default:
				t.Errorf("no %s event", tc.wantEvent)
			}
			// The same pending resize is not announced again on every sync.
			e.sync(t, want)
			for len(e.recorder.Events) > 0 {
				if ev := <-e.recorder.Events; strings.Contains(ev, "Resize") {
					t.Errorf("repeated event %q", ev)
				}
			}
		})
	}
}

func TestResizeUpdateFailureStaysInProgress(t *testing.T) {
	e := newResizeEnv(t, t.TempDir(), nil)
	e.sync(t, resizePod("200m", "192Mi", nil))
	// The kernel refuses a memory limit below the container's usage; the runtime says so.
	e.rs.InjectError("UpdateContainerResources", errors.New("memory limit below usage"))
	st := e.sync(t, resizePod("200m", "128Mi", nil))
	c, ok := resizeConds(st)[v1.PodResizeInProgress]
	if !ok || c.Reason != v1.PodReasonError || !strings.Contains(c.Message, "memory limit below usage") {
		t.Fatalf("PodResizeInProgress = %+v, want reason Error with the runtime's message", c)
	}
	if r := st.ContainerStatuses[0].Resources; r == nil || r.Limits.Memory().String() != "192Mi" {
		t.Errorf("status resources %v, want the applied 192Mi", r)
	}
	steps := e.steps.take()
	if last := steps[len(steps)-1]; last != "update quota=20000 mem=134217728 err=true" {
		t.Errorf("steps %v: the pod cgroup shrank although a container did not", steps)
	}
	// The same error again is not announced again.
	e.rs.InjectError("UpdateContainerResources", errors.New("memory limit below usage"))
	e.sync(t, resizePod("200m", "128Mi", nil))
	errorEvents := 0
	for len(e.recorder.Events) > 0 {
		if ev := <-e.recorder.Events; strings.HasPrefix(ev, "Warning ResizeError") {
			errorEvents++
		}
	}
	if errorEvents != 1 {
		t.Errorf("%d ResizeError events for one repeated error, want 1", errorEvents)
	}
	// The next sync retries and succeeds.
	st = e.sync(t, resizePod("200m", "128Mi", nil))
	if c := resizeConds(st); len(c) != 0 {
		t.Errorf("resize conditions after the retry: %v", c)
	}
	if r := st.ContainerStatuses[0].Resources; r == nil || r.Limits.Memory().String() != "128Mi" {
		t.Errorf("status resources %v, want 128Mi", r)
	}
}

func TestAllocationCheckpointForgottenWithThePod(t *testing.T) {
	dir := t.TempDir()
	e := newResizeEnv(t, dir, nil)
	p := resizePod("200m", "128Mi", nil)
	e.sync(t, p)
	file := filepath.Join(dir, string(p.UID)+".json")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	e.pods.mu.Lock()
	delete(e.pods.pods, p.UID)
	e.pods.mu.Unlock()
	if _, err := e.syncer.Sync(context.Background(), p.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("checkpoint still there after the pod went: %v", err)
	}
}
