package status

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
)

func cpu(req, lim string) v1.ResourceRequirements {
	return v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(req)},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse(lim)},
	}
}

func TestBuildResize(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "a", Image: "busybox", Resources: cpu("100m", "400m")}}},
	}
	rs := state(true, ctr("a", 0, plan.StateRunning, 0))
	for _, tc := range []struct {
		name          string
		resize        *Resize
		wantConds     map[v1.PodConditionType]string // type -> reason
		wantLimit     int64                          // status resources cpu limit (milli); 0 none
		wantAllocated int64
	}{
		{name: "no resize state", resize: nil, wantConds: map[v1.PodConditionType]string{}},
		{name: "done", resize: &Resize{Allocated: plan.Resources{"a": cpu("100m", "400m")}, Actual: map[string]v1.ResourceRequirements{"a0": cpu("100m", "400m")}},
			wantConds: map[v1.PodConditionType]string{}, wantLimit: 400, wantAllocated: 100},
		{name: "in progress", resize: &Resize{Allocated: plan.Resources{"a": cpu("100m", "400m")}, Actual: map[string]v1.ResourceRequirements{"a0": cpu("100m", "200m")}, InProgress: true},
			wantConds: map[v1.PodConditionType]string{v1.PodResizeInProgress: ""}, wantLimit: 200, wantAllocated: 100},
		{name: "in progress with an error", resize: &Resize{Allocated: plan.Resources{"a": cpu("100m", "400m")}, Actual: map[string]v1.ResourceRequirements{"a0": cpu("100m", "200m")}, InProgress: true, Error: "boom"},
			wantConds: map[v1.PodConditionType]string{v1.PodResizeInProgress: v1.PodReasonError}, wantLimit: 200, wantAllocated: 100},
		{name: "infeasible", resize: &Resize{Allocated: plan.Resources{"a": cpu("100m", "200m")}, Pending: plan.ResizeInfeasible, PendingMessage: "too big"},
			wantConds: map[v1.PodConditionType]string{v1.PodResizePending: v1.PodReasonInfeasible}, wantLimit: 200, wantAllocated: 100},
		{name: "deferred while another is applied", resize: &Resize{Allocated: plan.Resources{"a": cpu("100m", "300m")}, Actual: map[string]v1.ResourceRequirements{"a0": cpu("100m", "200m")}, InProgress: true, Pending: plan.ResizeDeferred, PendingMessage: "later"},
			wantConds: map[v1.PodConditionType]string{v1.PodResizePending: v1.PodReasonDeferred, v1.PodResizeInProgress: ""}, wantLimit: 200, wantAllocated: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Build(Input{Pod: pod, Runtime: rs, Now: now, Resize: tc.resize})
			got := map[v1.PodConditionType]string{}
			for _, c := range st.Conditions {
				if c.Type == v1.PodResizePending || c.Type == v1.PodResizeInProgress {
					if c.Status != v1.ConditionTrue {
						t.Errorf("%s status %s", c.Type, c.Status)
					}
					got[c.Type] = c.Reason
				}
			}
			if len(got) != len(tc.wantConds) {
				t.Errorf("resize conditions = %v, want %v", got, tc.wantConds)
			}
			for k, v := range tc.wantConds {
				if r, ok := got[k]; !ok || r != v {
					t.Errorf("resize conditions = %v, want %v", got, tc.wantConds)
				}
			}
			cs := st.ContainerStatuses[0]
			if tc.wantLimit == 0 {
				if cs.Resources != nil || cs.AllocatedResources != nil {
					t.Errorf("resources %v allocated %v, want none", cs.Resources, cs.AllocatedResources)
				}
				return
			}
			if cs.Resources == nil || cs.Resources.Limits.Cpu().MilliValue() != tc.wantLimit {
				t.Errorf("status resources = %v, want cpu limit %dm", cs.Resources, tc.wantLimit)
			}
			if q := cs.AllocatedResources[v1.ResourceCPU]; q.MilliValue() != tc.wantAllocated {
				t.Errorf("allocatedResources = %v, want cpu %dm", cs.AllocatedResources, tc.wantAllocated)
			}
		})
	}
}

func TestResizeConditionKeepsItsTransitionTime(t *testing.T) {
	earlier := metav1.NewTime(now.Add(-time.Hour))
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "a", Image: "busybox"}}},
		Status: v1.PodStatus{Conditions: []v1.PodCondition{{Type: v1.PodResizePending, Status: v1.ConditionTrue, Reason: v1.PodReasonDeferred, Message: "m",
			LastTransitionTime: earlier, LastProbeTime: earlier}}},
	}
	st := Build(Input{Pod: pod, Runtime: state(true, ctr("a", 0, plan.StateRunning, 0)), Now: now, Resize: &Resize{Pending: plan.ResizeDeferred, PendingMessage: "m"}})
	c := cond(st, v1.PodResizePending)
	if !c.LastTransitionTime.Equal(&earlier) || !c.LastProbeTime.Equal(&earlier) {
		t.Errorf("condition %+v changed its times (a status patch on every sync)", c)
	}
}
