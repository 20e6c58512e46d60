package status

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
)

func TestEphemeralContainerStatuses(t *testing.T) {
	debugPod := func() *v1.Pod {
		p := testPod(v1.RestartPolicyAlways)
		p.Spec.InitContainers = nil
		p.Spec.EphemeralContainers = []v1.EphemeralContainer{{
			EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "debug", Image: "busybox:dbg"},
			TargetContainerName:      "a",
		}}
		return p
	}
	cases := []struct {
		name      string
		pod       *v1.Pod
		rs        []plan.Container
		waiting   map[string]plan.Waiting
		wantState string // running, terminated, waiting:<reason>, or "" for no statuses
		wantReady bool   // the pod's Ready condition
	}{
		{
			name:      "running debug container: reported, pod stays Ready",
			pod:       debugPod(),
			rs:        []plan.Container{ctr("a", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0), ctr("debug", 0, plan.StateRunning, 0)},
			wantState: "running", wantReady: true,
		},
		{
			name:      "exited debug container: terminated, pod stays Ready and Running",
			pod:       debugPod(),
			rs:        []plan.Container{ctr("a", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0), ctr("debug", 0, plan.StateExited, 1)},
			wantState: "terminated", wantReady: true,
		},
		{
			name:      "not started yet: waiting with the start error",
			pod:       debugPod(),
			rs:        []plan.Container{ctr("a", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0)},
			waiting:   map[string]plan.Waiting{"debug": {Reason: "ErrImagePull", Message: "not found"}},
			wantState: "waiting:ErrImagePull", wantReady: true,
		},
		{
			name:      "not started, no error: creating",
			pod:       debugPod(),
			rs:        []plan.Container{ctr("a", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0)},
			wantState: "waiting:ContainerCreating", wantReady: true,
		},
		{
			name: "ran, container gone with its sandbox: ended, not creating",
			pod: func() *v1.Pod {
				p := debugPod()
				p.Status.EphemeralContainerStatuses = []v1.ContainerStatus{{Name: "debug", Image: "busybox:dbg", ContainerID: "containerd://debug0", ImageID: "sha256:abc",
					State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}}
				return p
			}(),
			rs:        []plan.Container{ctr("a", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0)},
			wantState: "terminated", wantReady: true,
		},
		{
			name:      "no ephemeral containers: no statuses",
			pod:       func() *v1.Pod { p := debugPod(); p.Spec.EphemeralContainers = nil; return p }(),
			rs:        []plan.Container{ctr("a", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0)},
			wantReady: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := Build(Input{Pod: tc.pod, Runtime: state(true, tc.rs...), Waiting: tc.waiting, Now: now})
			if tc.wantState == "" {
				if st.EphemeralContainerStatuses != nil {
					t.Fatalf("ephemeral statuses %v, want none", st.EphemeralContainerStatuses)
				}
			} else {
				if len(st.EphemeralContainerStatuses) != 1 {
					t.Fatalf("ephemeral statuses %v, want one", st.EphemeralContainerStatuses)
				}
				es := st.EphemeralContainerStatuses[0]
				got := ""
				switch {
				case es.State.Running != nil:
					got = "running"
				case es.State.Terminated != nil:
					got = "terminated"
				case es.State.Waiting != nil:
					got = "waiting:" + es.State.Waiting.Reason
				}
				if got != tc.wantState {
					t.Errorf("state %s, want %s", got, tc.wantState)
				}
				if es.Name != "debug" || es.Image != "busybox:dbg" || es.Ready {
					t.Errorf("status %+v: want name debug, image busybox:dbg, never ready", es)
				}
				if got == "running" || got == "terminated" {
					if es.ContainerID != "containerd://debug0" || es.ImageID != "sha256:abc" {
						t.Errorf("containerID %q imageID %q", es.ContainerID, es.ImageID)
					}
				}
			}
			if len(st.ContainerStatuses) != 2 {
				t.Errorf("container statuses %d, want the pod's 2 only", len(st.ContainerStatuses))
			}
			if c := cond(st, v1.PodReady); (c.Status == v1.ConditionTrue) != tc.wantReady {
				t.Errorf("PodReady %s (%s), want ready=%v", c.Status, c.Message, tc.wantReady)
			}
			if st.Phase != v1.PodRunning {
				t.Errorf("phase %s, want Running", st.Phase)
			}
		})
	}
}
