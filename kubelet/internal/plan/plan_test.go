package plan

import (
	"reflect"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func pod(policy v1.RestartPolicy, names ...string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}}
	p.Spec.RestartPolicy = policy
	for _, n := range names {
		p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: n, Image: "busybox"})
	}
	return p
}

func withInit(p *v1.Pod, sidecar bool, names ...string) *v1.Pod {
	for _, n := range names {
		c := v1.Container{Name: n, Image: "busybox"}
		if sidecar {
			always := v1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
	return p
}

func hashOf(p *v1.Pod, name string) string {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == name {
			return ContainerHash(&p.Spec.InitContainers[i])
		}
	}
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return ContainerHash(&p.Spec.Containers[i])
		}
	}
	return ""
}

func ready(id string) Sandbox { return Sandbox{ID: id, Ready: true, CreatedAt: t0} }

func running(p *v1.Pod, name string, attempt uint32) Container {
	return Container{ID: name + "-" + string(rune('0'+attempt)), SandboxID: "sb", Name: name, State: StateRunning, Attempt: attempt, Hash: hashOf(p, name), StartedAt: t0}
}

func exited(p *v1.Pod, name string, attempt uint32, code int32, finished time.Time) Container {
	c := running(p, name, attempt)
	c.State = StateExited
	c.ExitCode = code
	c.FinishedAt = finished
	return c
}

func kinds(r Result) []string {
	var out []string
	for _, a := range r.Actions {
		s := string(a.Kind)
		if a.Container != "" {
			s += ":" + a.Container
		}
		out = append(out, s)
	}
	return out
}

func TestCompute(t *testing.T) {
	cfg := DefaultBackoff()
	now := t0.Add(time.Minute)
	cases := []struct {
		name        string
		pod         *v1.Pod
		obs         Observed
		backoff     map[string]BackoffEntry
		terminate   bool
		liveness    map[string]bool
		want        []string
		wantWaiting map[string]string
		wantDone    bool
		wantInitErr bool
		wantRequeue bool
	}{
		{
			name:        "new pod: sandbox then all containers",
			pod:         pod(v1.RestartPolicyAlways, "a", "b"),
			want:        []string{"CreateSandbox", "StartContainer:a", "StartContainer:b"},
			wantWaiting: map[string]string{"a": "ContainerCreating", "b": "ContainerCreating"},
		},
		{
			name:        "new pod with init containers: only the first init container starts",
			pod:         withInit(pod(v1.RestartPolicyAlways, "a"), false, "i1", "i2"),
			want:        []string{"CreateSandbox", "StartContainer:i1"},
			wantWaiting: map[string]string{"a": "PodInitializing"},
		},
		{
			name: "first init done: second starts",
			pod:  withInit(pod(v1.RestartPolicyAlways, "a"), false, "i1", "i2"),
			obs: func() Observed {
				p := withInit(pod(v1.RestartPolicyAlways, "a"), false, "i1", "i2")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "i1", 0, 0, t0)}}
			}(),
			want:        []string{"StartContainer:i2"},
			wantWaiting: map[string]string{"a": "PodInitializing"},
		},
		{
			name: "running init container: wait",
			pod:  withInit(pod(v1.RestartPolicyAlways, "a"), false, "i1"),
			obs: func() Observed {
				p := withInit(pod(v1.RestartPolicyAlways, "a"), false, "i1")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(p, "i1", 0)}}
			}(),
			want:        nil,
			wantWaiting: map[string]string{"a": "PodInitializing"},
		},
		{
			name: "init done, sidecar running: regular containers start",
			pod:  withInit(withInit(pod(v1.RestartPolicyAlways, "a", "b"), false, "i1"), true, "side"),
			obs: func() Observed {
				p := withInit(withInit(pod(v1.RestartPolicyAlways, "a", "b"), false, "i1"), true, "side")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "i1", 0, 0, t0), running(p, "side", 0)}}
			}(),
			want:        []string{"StartContainer:a", "StartContainer:b"},
			wantWaiting: map[string]string{"a": "ContainerCreating", "b": "ContainerCreating"},
		},
		{
			name: "sidecar not yet running: started, regular containers wait",
			pod:  withInit(withInit(pod(v1.RestartPolicyAlways, "a"), false, "i1"), true, "side"),
			obs: func() Observed {
				p := withInit(withInit(pod(v1.RestartPolicyAlways, "a"), false, "i1"), true, "side")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "i1", 0, 0, t0)}}
			}(),
			want:        []string{"StartContainer:side"},
			wantWaiting: map[string]string{"a": "PodInitializing"},
			wantRequeue: true,
		},
		{
			name: "failed init container with restartPolicy Never fails the pod",
			pod:  withInit(pod(v1.RestartPolicyNever, "a"), false, "i1"),
			obs: func() Observed {
				p := withInit(pod(v1.RestartPolicyNever, "a"), false, "i1")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "i1", 0, 1, t0)}}
			}(),
			want:        []string{"KillPod"},
			wantDone:    true,
			wantInitErr: true,
		},
		{
			name: "failed init container with OnFailure restarts it",
			pod:  withInit(pod(v1.RestartPolicyOnFailure, "a"), false, "i1"),
			obs: func() Observed {
				p := withInit(pod(v1.RestartPolicyOnFailure, "a"), false, "i1")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "i1", 0, 1, t0)}}
			}(),
			want:        []string{"StartContainer:i1"},
			wantWaiting: map[string]string{"a": "PodInitializing"},
		},
		{
			name: "running containers with unchanged spec: nothing to do",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(p, "a", 0)}}
			}(),
			want: nil,
		},
		{
			name: "changed image: container is killed",
			pod: func() *v1.Pod {
				p := pod(v1.RestartPolicyAlways, "a")
				p.Spec.Containers[0].Image = "busybox:2"
				return p
			}(),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(p, "a", 0)}}
			}(),
			want:        []string{"KillContainer:a"},
			wantRequeue: true,
		},
		{
			name: "liveness failure kills the container",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(p, "a", 0)}}
			}(),
			liveness:    map[string]bool{"a-0": true},
			want:        []string{"KillContainer:a"},
			wantRequeue: true,
		},
		{
			name: "first crash restarts at once",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "a", 0, 1, now.Add(-time.Second))}}
			}(),
			want: []string{"StartContainer:a"},
		},
		{
			name: "second crash within back-off waits in CrashLoopBackOff",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "a", 1, 1, now.Add(-time.Second))}}
			}(),
			backoff:     map[string]BackoffEntry{"a": {Delay: 10 * time.Second, LastRestart: now.Add(-3 * time.Second)}},
			want:        nil,
			wantWaiting: map[string]string{"a": "CrashLoopBackOff"},
			wantRequeue: true,
		},
		{
			name: "back-off elapsed: restart",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "a", 1, 1, now.Add(-11*time.Second))}}
			}(),
			backoff: map[string]BackoffEntry{"a": {Delay: 10 * time.Second}},
			want:    []string{"StartContainer:a"},
		},
		{
			name: "OnFailure: success is final",
			pod:  pod(v1.RestartPolicyOnFailure, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyOnFailure, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "a", 0, 0, t0)}}
			}(),
			want:     []string{"KillPod"},
			wantDone: true,
		},
		{
			name: "OnFailure: failure restarts",
			pod:  pod(v1.RestartPolicyOnFailure, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyOnFailure, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "a", 0, 2, t0)}}
			}(),
			want: []string{"StartContainer:a"},
		},
		{
			name: "Never: one container done, one running: nothing",
			pod:  pod(v1.RestartPolicyNever, "a", "b"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyNever, "a", "b")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{exited(p, "a", 0, 1, t0), running(p, "b", 0)}}
			}(),
			want: nil,
		},
		{
			name: "Never: all done with a sidecar running: pod is stopped",
			pod:  withInit(pod(v1.RestartPolicyNever, "a"), true, "side"),
			obs: func() Observed {
				p := withInit(pod(v1.RestartPolicyNever, "a"), true, "side")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(p, "side", 0), exited(p, "a", 0, 0, t0)}}
			}(),
			want:     []string{"KillPod"},
			wantDone: true,
		},
		{
			name: "Never: dead sandbox after completion is not recreated",
			pod:  pod(v1.RestartPolicyNever, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyNever, "a")
				return Observed{Sandboxes: []Sandbox{{ID: "sb"}}, Containers: []Container{exited(p, "a", 0, 0, t0)}}
			}(),
			want:     nil,
			wantDone: true,
		},
		{
			name: "Always: dead sandbox is recreated with the next attempt",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{{ID: "sb"}}, Containers: []Container{running(p, "a", 0)}}
			}(),
			want:        []string{"KillPod", "CreateSandbox", "StartContainer:a"},
			wantWaiting: map[string]string{"a": "ContainerCreating"},
		},
		{
			name: "terminating pod with running containers is killed",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{running(p, "a", 0)}}
			}(),
			terminate: true,
			want:      []string{"KillPod"},
			wantDone:  true,
		},
		{
			name:      "terminating pod with nothing left: done",
			pod:       pod(v1.RestartPolicyAlways, "a"),
			obs:       Observed{Sandboxes: []Sandbox{{ID: "sb"}}},
			terminate: true,
			want:      nil,
			wantDone:  true,
		},
		{
			name: "old exited instances beyond two are removed",
			pod:  pod(v1.RestartPolicyAlways, "a"),
			obs: func() Observed {
				p := pod(v1.RestartPolicyAlways, "a")
				return Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{
					running(p, "a", 3), exited(p, "a", 2, 1, t0), exited(p, "a", 1, 1, t0), exited(p, "a", 0, 1, t0)}}
			}(),
			want: []string{"RemoveContainer:a"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Compute(Input{Pod: tc.pod, Observed: tc.obs, Backoff: tc.backoff, Terminate: tc.terminate, LivenessFailed: tc.liveness, Now: now, Config: cfg})
			if got := kinds(r); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("actions = %v, want %v", r.Actions, tc.want)
			}
			gotW := map[string]string{}
			for k, v := range r.Waiting {
				gotW[k] = v.Reason
			}
			if tc.wantWaiting == nil {
				tc.wantWaiting = map[string]string{}
			}
			if !reflect.DeepEqual(gotW, tc.wantWaiting) {
				t.Errorf("waiting = %v, want %v", gotW, tc.wantWaiting)
			}
			if r.Done != tc.wantDone {
				t.Errorf("done = %v, want %v", r.Done, tc.wantDone)
			}
			if r.InitFailed != tc.wantInitErr {
				t.Errorf("initFailed = %v, want %v", r.InitFailed, tc.wantInitErr)
			}
			if (r.RequeueAfter > 0) != tc.wantRequeue {
				t.Errorf("requeueAfter = %v, want requeue %v", r.RequeueAfter, tc.wantRequeue)
			}
		})
	}
}

// TestCrashLoopBackoffGrows drives one crashing container through several syncs and checks the
// waits double from the initial value up to the cap, and reset after a long run.
func TestCrashLoopBackoffGrows(t *testing.T) {
	cfg := BackoffConfig{Initial: 10 * time.Second, Max: 40 * time.Second, ResetAfter: 10 * time.Minute}
	p := pod(v1.RestartPolicyAlways, "a")
	state := map[string]BackoffEntry{}
	now := t0
	var waits []time.Duration
	attempt := uint32(0)
	for i := 0; i < 6; i++ {
		// The container crashes right after each start.
		c := exited(p, "a", attempt, 1, now)
		c.StartedAt = now.Add(-time.Second)
		obs := Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{c}}
		r := Compute(Input{Pod: p, Observed: obs, Backoff: state, Now: now, Config: cfg})
		state = r.Backoff
		if len(r.Actions) == 1 {
			waits = append(waits, 0)
			attempt++
			continue
		}
		if r.Waiting["a"].Reason != "CrashLoopBackOff" {
			t.Fatalf("step %d: waiting %v, want CrashLoopBackOff", i, r.Waiting)
		}
		waits = append(waits, r.RequeueAfter)
		now = now.Add(r.RequeueAfter)
		r = Compute(Input{Pod: p, Observed: obs, Backoff: state, Now: now, Config: cfg})
		if len(r.Actions) != 1 || r.Actions[0].Kind != StartContainer {
			t.Fatalf("step %d: after waiting %v got %v, want a restart", i, waits[len(waits)-1], r.Actions)
		}
		state = r.Backoff
		attempt++
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second, 40 * time.Second}
	if !reflect.DeepEqual(waits, want) {
		t.Fatalf("waits = %v, want %v", waits, want)
	}

	// A container that ran longer than ResetAfter restarts at once and starts over.
	c := exited(p, "a", attempt, 1, now.Add(20*time.Minute))
	c.StartedAt = now
	now = now.Add(20 * time.Minute)
	r := Compute(Input{Pod: p, Observed: Observed{Sandboxes: []Sandbox{ready("sb")}, Containers: []Container{c}}, Backoff: state, Now: now, Config: cfg})
	if len(r.Actions) != 1 || r.Backoff["a"].Delay != cfg.Initial {
		t.Fatalf("after a long run: actions %v backoff %v, want restart with delay %v", r.Actions, r.Backoff["a"], cfg.Initial)
	}
}

func TestGrace(t *testing.T) {
	thirty, five := int64(30), int64(5)
	p := pod(v1.RestartPolicyAlways, "a")
	if g := Grace(p); g != 30 {
		t.Errorf("default grace = %d, want 30", g)
	}
	p.Spec.TerminationGracePeriodSeconds = &thirty
	now := metav1.Now()
	p.DeletionTimestamp = &now
	p.DeletionGracePeriodSeconds = &five
	if g := Grace(p); g != 5 {
		t.Errorf("deletion grace = %d, want 5", g)
	}
}
