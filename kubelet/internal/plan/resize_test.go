package plan

import (
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func res(reqCPU, reqMem, limCPU, limMem string) v1.ResourceRequirements {
	r := v1.ResourceRequirements{Requests: v1.ResourceList{}, Limits: v1.ResourceList{}}
	set := func(l v1.ResourceList, name v1.ResourceName, v string) {
		if v != "" {
			l[name] = resource.MustParse(v)
		}
	}
	set(r.Requests, v1.ResourceCPU, reqCPU)
	set(r.Requests, v1.ResourceMemory, reqMem)
	set(r.Limits, v1.ResourceCPU, limCPU)
	set(r.Limits, v1.ResourceMemory, limMem)
	return r
}

func resizedPod(r map[string]v1.ResourceRequirements, names ...string) *v1.Pod {
	p := pod(v1.RestartPolicyAlways, names...)
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].Resources = r[p.Spec.Containers[i].Name]
	}
	return p
}

// Before in-place resize, a changed spec.containers[].resources reached the plan and did
// nothing: the container hash leaves resources out, so the container neither restarts nor
// changes. That stays true: applying a resize is Resize's job, not Compute's.
func TestResourceChangeAloneDoesNotRestart(t *testing.T) {
	old := resizedPod(map[string]v1.ResourceRequirements{"a": res("100m", "64Mi", "200m", "128Mi")}, "a")
	resized := resizedPod(map[string]v1.ResourceRequirements{"a": res("100m", "64Mi", "400m", "192Mi")}, "a")
	r := Compute(Input{Pod: resized, Observed: Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(old, "a", 0)}}, Now: t0})
	if len(r.Actions) != 0 {
		t.Fatalf("actions = %v, want none", r.Actions)
	}
}

func TestAdmitResize(t *testing.T) {
	alloc := Resources{"a": res("500m", "1Gi", "1", "1Gi")}
	node := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi")}
	for _, tc := range []struct {
		name      string
		desired   v1.ResourceRequirements
		allocated Resources
		others    v1.ResourceList
		want      ResizeOutcome
		msg       string
	}{
		{name: "no change", desired: res("500m", "1Gi", "1", "1Gi"), allocated: alloc, want: ResizeNone},
		{name: "same quantity written differently", desired: res("0.5", "1024Mi", "1000m", "1Gi"), allocated: alloc, want: ResizeNone},
		{name: "limit grows", desired: res("500m", "1Gi", "2", "2Gi"), allocated: alloc, want: ResizeAccepted},
		{name: "limits beyond the node are fine", desired: res("500m", "1Gi", "8", "16Gi"), allocated: alloc, want: ResizeAccepted},
		{name: "cpu request beyond the node", desired: res("3", "1Gi", "3", "1Gi"), allocated: alloc, want: ResizeInfeasible, msg: "cpu, requested: 3000m, capacity: 2000m"},
		{name: "memory request beyond the node", desired: res("500m", "5Gi", "1", "5Gi"), allocated: alloc, want: ResizeInfeasible, msg: "memory"},
		{name: "fits the node, not next to others", desired: res("1500m", "1Gi", "2", "1Gi"), allocated: alloc,
			others: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}, want: ResizeDeferred, msg: "cpu, requested: 1500m, used: 1000m, capacity: 2000m"},
		{name: "fits next to others", desired: res("1", "1Gi", "2", "1Gi"), allocated: alloc,
			others: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}, want: ResizeAccepted},
		{name: "container the allocation does not know", desired: res("3", "", "", ""), allocated: Resources{}, want: ResizeNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := resizedPod(map[string]v1.ResourceRequirements{"a": tc.desired}, "a")
			got, msg := AdmitResize(AdmitResizeInput{Pod: p, Allocated: tc.allocated, Allocatable: node, Others: tc.others})
			if got != tc.want {
				t.Fatalf("outcome = %q (%s), want %q", got, msg, tc.want)
			}
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not contain %q", msg, tc.msg)
			}
		})
	}
}

func TestAdmitResizeCountsSidecarsAndOverhead(t *testing.T) {
	p := withInit(resizedPod(map[string]v1.ResourceRequirements{"a": res("1", "", "", "")}, "a"), true, "side")
	p.Spec.InitContainers[0].Resources = res("600m", "", "", "")
	p.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m")}
	node := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}
	got, msg := AdmitResize(AdmitResizeInput{Pod: p, Allocated: Resources{"a": res("100m", "", "", ""), "side": res("600m", "", "", "")}, Allocatable: node})
	if got != ResizeInfeasible || !strings.Contains(msg, "2100m") {
		t.Fatalf("outcome = %q %q, want Infeasible for 1 + 600m sidecar + 500m overhead", got, msg)
	}
}

func TestResize(t *testing.T) {
	before := res("100m", "64Mi", "200m", "128Mi")
	after := res("100m", "64Mi", "400m", "192Mi")
	cpuOnly := res("100m", "64Mi", "400m", "128Mi")
	restartMemory := []v1.ContainerResizePolicy{{ResourceName: v1.ResourceMemory, RestartPolicy: v1.RestartContainer}}
	for _, tc := range []struct {
		name     string
		policy   []v1.ContainerResizePolicy
		alloc    v1.ResourceRequirements
		actual   map[string]v1.ResourceRequirements
		state    ContainerState
		want     []ContainerResize
		noActual bool
	}{
		{name: "applied already", alloc: after, actual: map[string]v1.ResourceRequirements{"a-0": after}},
		{name: "update in place by default", alloc: after, actual: map[string]v1.ResourceRequirements{"a-0": before},
			want: []ContainerResize{{Name: "a", ContainerID: "a-0", Resources: after}}},
		{name: "memory RestartContainer and memory changed", policy: restartMemory, alloc: after, actual: map[string]v1.ResourceRequirements{"a-0": before},
			want: []ContainerResize{{Name: "a", ContainerID: "a-0", Restart: true, Resources: after}}},
		{name: "memory RestartContainer but only cpu changed", policy: restartMemory, alloc: cpuOnly, actual: map[string]v1.ResourceRequirements{"a-0": before},
			want: []ContainerResize{{Name: "a", ContainerID: "a-0", Resources: cpuOnly}}},
		{name: "unknown instance is left alone", alloc: after, actual: map[string]v1.ResourceRequirements{}},
		{name: "exited instance is left alone", alloc: after, actual: map[string]v1.ResourceRequirements{"a-0": before}, state: StateExited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := resizedPod(map[string]v1.ResourceRequirements{"a": tc.alloc}, "a")
			p.Spec.Containers[0].ResizePolicy = tc.policy
			c := running(p, "a", 0)
			if tc.state != "" {
				c.State = tc.state
			}
			got := Resize(ResizeInput{Pod: p, Observed: Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{c}}, Allocated: Resources{"a": tc.alloc}, Actual: tc.actual})
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Resize = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestWithResourcesLeavesTheSpecAlone(t *testing.T) {
	p := resizedPod(map[string]v1.ResourceRequirements{"a": res("100m", "", "", ""), "b": res("200m", "", "", "")}, "a", "b")
	q := WithResources(p, Resources{"a": res("1", "", "", "")})
	if got := q.Spec.Containers[0].Resources.Requests.Cpu().MilliValue(); got != 1000 {
		t.Errorf("copy a = %dm, want 1000m", got)
	}
	if got := q.Spec.Containers[1].Resources.Requests.Cpu().MilliValue(); got != 200 {
		t.Errorf("copy b = %dm, want its spec's 200m", got)
	}
	if got := p.Spec.Containers[0].Resources.Requests.Cpu().MilliValue(); got != 100 {
		t.Errorf("spec changed to %dm", got)
	}
}
