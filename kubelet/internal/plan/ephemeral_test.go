package plan

import (
	"reflect"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func withEphemeral(p *v1.Pod, name, target string) *v1.Pod {
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, v1.EphemeralContainer{
		EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: name, Image: "busybox"},
		TargetContainerName:      target,
	})
	return p
}

func ephemeralInstance(name, state string, code int32) Container {
	c := Container{ID: name + "-id", SandboxID: "sb", Name: name, State: ContainerState(state), StartedAt: t0}
	if c.State == StateExited {
		c.ExitCode, c.FinishedAt = code, t0.Add(time.Second)
	}
	return c
}

func TestEphemeralContainers(t *testing.T) {
	now := t0.Add(time.Hour)
	base := func() *v1.Pod { return withEphemeral(pod(v1.RestartPolicyAlways, "app"), "debug", "app") }
	cases := []struct {
		name        string
		pod         *v1.Pod
		obs         Observed
		terminate   bool
		want        []string
		wantTarget  string
		wantWaiting map[string]string
		wantDone    bool
	}{
		{
			name:        "added to a running pod: started once, sharing the target's PID namespace",
			pod:         base(),
			obs:         Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(base(), "app", 0)}},
			want:        []string{"StartContainer:debug"},
			wantTarget:  "app-0",
			wantWaiting: map[string]string{"debug": "ContainerCreating"},
		},
		{
			name:        "without a target: no PID namespace to join",
			pod:         withEphemeral(pod(v1.RestartPolicyAlways, "app"), "debug", ""),
			obs:         Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(base(), "app", 0)}},
			want:        []string{"StartContainer:debug"},
			wantWaiting: map[string]string{"debug": "ContainerCreating"},
		},
		{
			name: "running: left alone",
			pod:  base(),
			obs:  Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(base(), "app", 0), ephemeralInstance("debug", "running", 0)}},
		},
		{
			name: "exited with an error: never restarted",
			pod:  base(),
			obs:  Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(base(), "app", 0), ephemeralInstance("debug", "exited", 1)}},
		},
		{
			name: "exited in an older sandbox: not started again while that instance exists",
			pod:  base(),
			obs: Observed{
				Sandboxes: []Sandbox{{ID: "old", CreatedAt: t0}, {ID: "sb", Ready: true, Attempt: 1, CreatedAt: t0.Add(time.Minute)}},
				Containers: []Container{
					running(base(), "app", 1),
					func() Container { c := ephemeralInstance("debug", "exited", 0); c.SandboxID = "old"; return c }(),
				},
			},
			want: []string{"RemoveSandbox"},
		},
		{
			name: "ran in a sandbox that is gone (the status says so): not started again",
			pod: func() *v1.Pod {
				p := base()
				p.Status.EphemeralContainerStatuses = []v1.ContainerStatus{{Name: "debug", ContainerID: "containerd://old"}}
				return p
			}(),
			obs: Observed{Sandboxes: []Sandbox{{ID: "sb", Ready: true, Attempt: 1}}, Containers: []Container{running(base(), "app", 1)}},
		},
		{
			name: "status lists it without a container (never created): started",
			pod: func() *v1.Pod {
				p := base()
				p.Status.EphemeralContainerStatuses = []v1.ContainerStatus{{Name: "debug", State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}
				return p
			}(),
			obs:         Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(base(), "app", 0)}},
			want:        []string{"StartContainer:debug"},
			wantTarget:  "app-0",
			wantWaiting: map[string]string{"debug": "ContainerCreating"},
		},
		{
			name:        "target not running yet: waits with a config error instead of starting unshared",
			pod:         base(),
			obs:         Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(base(), "app", 0, 1, t0)}},
			want:        []string{"StartContainer:app"},
			wantWaiting: map[string]string{"debug": ReasonTargetNotFound},
		},
		{
			name: "while init containers run: the debug container starts anyway",
			pod: func() *v1.Pod {
				p := withInit(pod(v1.RestartPolicyAlways, "app"), false, "init")
				return withEphemeral(p, "debug", "init")
			}(),
			obs: func() Observed {
				p := withInit(pod(v1.RestartPolicyAlways, "app"), false, "init")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(p, "init", 0)}}
			}(),
			want:        []string{"StartContainer:debug"},
			wantTarget:  "init-0",
			wantWaiting: map[string]string{"app": "PodInitializing", "debug": "ContainerCreating"},
		},
		{
			name: "new sandbox: only the pod's own containers start",
			pod:  base(),
			obs:  Observed{},
			want: []string{"CreateSandbox", "StartContainer:app"},
			wantWaiting: map[string]string{
				"app": "ContainerCreating",
			},
		},
		{
			name: "pod's containers all finished: a running debug container is stopped with the pod",
			pod:  withEphemeral(pod(v1.RestartPolicyNever, "app"), "debug", "app"),
			obs: Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{
				exited(base(), "app", 0, 0, t0), ephemeralInstance("debug", "running", 0),
			}},
			want:     []string{"KillPod"},
			wantDone: true,
		},
		{
			name: "a debug container that exits does not end a restartPolicy Never pod",
			pod:  withEphemeral(pod(v1.RestartPolicyNever, "app"), "debug", "app"),
			obs: Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{
				running(base(), "app", 0), ephemeralInstance("debug", "exited", 0),
			}},
		},
		{
			name:      "terminating: stopped with the pod",
			pod:       base(),
			obs:       Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(base(), "app", 0), ephemeralInstance("debug", "running", 0)}},
			terminate: true,
			want:      []string{"KillPod"},
			wantDone:  true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Compute(Input{Pod: tc.pod, Observed: tc.obs, Terminate: tc.terminate, Now: now, Config: DefaultBackoff()})
			if got := kinds(res); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("actions %v, want %v (%v)", got, tc.want, res.Actions)
			}
			for _, a := range res.Actions {
				if a.Container == "debug" {
					if !a.Ephemeral || a.Attempt != 0 {
						t.Errorf("debug start %v: want ephemeral, attempt 0", a)
					}
					if a.TargetID != tc.wantTarget {
						t.Errorf("debug target %q, want %q", a.TargetID, tc.wantTarget)
					}
				} else if a.Ephemeral {
					t.Errorf("%v marked ephemeral", a)
				}
			}
			waiting := map[string]string{}
			for k, v := range res.Waiting {
				waiting[k] = v.Reason
			}
			if tc.wantWaiting == nil {
				tc.wantWaiting = map[string]string{}
			}
			if !reflect.DeepEqual(waiting, tc.wantWaiting) {
				t.Errorf("waiting %v, want %v", waiting, tc.wantWaiting)
			}
			if res.Done != tc.wantDone {
				t.Errorf("done %v, want %v", res.Done, tc.wantDone)
			}
			if _, ok := res.Backoff["debug"]; ok {
				t.Errorf("debug container got crash-loop back-off state: it is never restarted")
			}
		})
	}
}

func TestEphemeralAsContainer(t *testing.T) {
	ec := &v1.EphemeralContainer{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "d", Image: "busybox", Command: []string{"sh"}, Stdin: true, TTY: true}, TargetContainerName: "app"}
	c := EphemeralAsContainer(ec)
	if c.Name != "d" || c.Image != "busybox" || !c.Stdin || !c.TTY || len(c.Command) != 1 {
		t.Fatalf("converted %+v", c)
	}
}
