package status

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func testPod(policy v1.RestartPolicy) *v1.Pod {
	always := v1.ContainerRestartPolicyAlways
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec: v1.PodSpec{
			RestartPolicy:  policy,
			InitContainers: []v1.Container{{Name: "init", Image: "busybox"}, {Name: "side", Image: "busybox", RestartPolicy: &always}},
			Containers:     []v1.Container{{Name: "a", Image: "busybox"}, {Name: "b", Image: "busybox"}},
		},
		Status: v1.PodStatus{Conditions: []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue}}},
	}
}

func ctr(name string, attempt uint32, st plan.ContainerState, code int32) plan.Container {
	c := plan.Container{ID: name + string(rune('0'+attempt)), SandboxID: "sb", Name: name, State: st, Attempt: attempt, ExitCode: code, StartedAt: now.Add(-time.Minute)}
	if st == plan.StateExited {
		c.FinishedAt = now.Add(-time.Second)
	}
	return c
}

func state(ready bool, cs ...plan.Container) *runtime.PodState {
	d := map[string]runtime.ContainerDetail{}
	for _, c := range cs {
		d[c.ID] = runtime.ContainerDetail{ImageRef: "sha256:abc"}
	}
	return &runtime.PodState{IPs: []string{"10.244.0.7"}, Observed: plan.Observed{Sandboxes: []plan.Sandbox{{ID: "sb", Ready: ready}}, Containers: cs}, Details: d}
}

func cond(st v1.PodStatus, t v1.PodConditionType) v1.PodCondition {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c
		}
	}
	return v1.PodCondition{}
}

func TestBuild(t *testing.T) {
	cases := []struct {
		name        string
		policy      v1.RestartPolicy
		rs          *runtime.PodState
		waiting     map[string]plan.Waiting
		done        bool
		initFailed  bool
		wantPhase   v1.PodPhase
		wantReady   v1.ConditionStatus
		wantInit    v1.ConditionStatus
		wantWaiting map[string]string // container -> waiting reason
		wantTerm    map[string]string // container -> terminated reason
	}{
		{
			name:        "nothing yet: Pending, initializing",
			policy:      v1.RestartPolicyAlways,
			rs:          state(true),
			wantPhase:   v1.PodPending,
			wantReady:   v1.ConditionFalse,
			wantInit:    v1.ConditionFalse,
			wantWaiting: map[string]string{"init": "PodInitializing", "side": "PodInitializing", "a": "PodInitializing", "b": "PodInitializing"},
		},
		{
			name:      "all running: Running and Ready",
			policy:    v1.RestartPolicyAlways,
			rs:        state(true, ctr("init", 0, plan.StateExited, 0), ctr("side", 0, plan.StateRunning, 0), ctr("a", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0)),
			wantPhase: v1.PodRunning,
			wantReady: v1.ConditionTrue,
			wantInit:  v1.ConditionTrue,
			wantTerm:  map[string]string{"init": "Completed"},
		},
		{
			name:        "crash loop: Running, not ready, waiting CrashLoopBackOff",
			policy:      v1.RestartPolicyAlways,
			rs:          state(true, ctr("init", 0, plan.StateExited, 0), ctr("side", 0, plan.StateRunning, 0), ctr("a", 2, plan.StateExited, 1), ctr("b", 0, plan.StateRunning, 0)),
			waiting:     map[string]plan.Waiting{"a": {Reason: "CrashLoopBackOff"}},
			wantPhase:   v1.PodRunning,
			wantReady:   v1.ConditionFalse,
			wantInit:    v1.ConditionTrue,
			wantWaiting: map[string]string{"a": "CrashLoopBackOff"},
			wantTerm:    map[string]string{"init": "Completed"},
		},
		{
			name:        "image pull failure shows ErrImagePull",
			policy:      v1.RestartPolicyAlways,
			rs:          state(true, ctr("init", 0, plan.StateExited, 0), ctr("side", 0, plan.StateRunning, 0), ctr("b", 0, plan.StateRunning, 0)),
			waiting:     map[string]plan.Waiting{"a": {Reason: "ErrImagePull"}},
			wantPhase:   v1.PodPending,
			wantReady:   v1.ConditionFalse,
			wantInit:    v1.ConditionTrue,
			wantWaiting: map[string]string{"a": "ErrImagePull"},
			wantTerm:    map[string]string{"init": "Completed"},
		},
		{
			name:      "Never: all succeeded: Succeeded",
			policy:    v1.RestartPolicyNever,
			rs:        state(false, ctr("init", 0, plan.StateExited, 0), ctr("side", 0, plan.StateExited, 137), ctr("a", 0, plan.StateExited, 0), ctr("b", 0, plan.StateExited, 0)),
			done:      true,
			wantPhase: v1.PodSucceeded,
			wantReady: v1.ConditionFalse,
			wantInit:  v1.ConditionTrue,
			wantTerm:  map[string]string{"init": "Completed", "side": "Error", "a": "Completed", "b": "Completed"},
		},
		{
			name:      "Never: one failed: Failed",
			policy:    v1.RestartPolicyNever,
			rs:        state(false, ctr("init", 0, plan.StateExited, 0), ctr("side", 0, plan.StateExited, 0), ctr("a", 0, plan.StateExited, 3), ctr("b", 0, plan.StateExited, 0)),
			done:      true,
			wantPhase: v1.PodFailed,
			wantReady: v1.ConditionFalse,
			wantInit:  v1.ConditionTrue,
			wantTerm:  map[string]string{"init": "Completed", "side": "Completed", "a": "Error", "b": "Completed"},
		},
		{
			name:        "init container failed with Never: Failed",
			policy:      v1.RestartPolicyNever,
			rs:          state(false, ctr("init", 0, plan.StateExited, 1)),
			done:        true,
			initFailed:  true,
			wantPhase:   v1.PodFailed,
			wantReady:   v1.ConditionFalse,
			wantInit:    v1.ConditionFalse,
			wantWaiting: map[string]string{"side": "PodInitializing", "a": "PodInitializing", "b": "PodInitializing"},
			wantTerm:    map[string]string{"init": "Error"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := Build(Input{Pod: testPod(tc.policy), Runtime: tc.rs, Waiting: tc.waiting, Done: tc.done, InitFailed: tc.initFailed, HostIPs: []string{"192.0.2.1"}, Now: now})
			if st.Phase != tc.wantPhase {
				t.Errorf("phase = %s, want %s", st.Phase, tc.wantPhase)
			}
			if c := cond(st, v1.PodReady); c.Status != tc.wantReady {
				t.Errorf("Ready = %v, want %s", c, tc.wantReady)
			}
			if c := cond(st, v1.PodInitialized); c.Status != tc.wantInit {
				t.Errorf("Initialized = %v, want %s", c, tc.wantInit)
			}
			if c := cond(st, v1.PodScheduled); c.Status != v1.ConditionTrue {
				t.Errorf("PodScheduled lost: %v", st.Conditions)
			}
			gotW, gotT := map[string]string{}, map[string]string{}
			for _, cs := range append(append([]v1.ContainerStatus{}, st.InitContainerStatuses...), st.ContainerStatuses...) {
				if cs.State.Waiting != nil {
					gotW[cs.Name] = cs.State.Waiting.Reason
				}
				if cs.State.Terminated != nil {
					gotT[cs.Name] = cs.State.Terminated.Reason
				}
				if cs.ContainerID != "" && cs.ContainerID[:13] != "containerd://" {
					t.Errorf("containerID %q lacks the runtime prefix", cs.ContainerID)
				}
			}
			if tc.wantWaiting == nil {
				tc.wantWaiting = map[string]string{}
			}
			if tc.wantTerm == nil {
				tc.wantTerm = map[string]string{}
			}
			if !equalMaps(gotW, tc.wantWaiting) {
				t.Errorf("waiting = %v, want %v", gotW, tc.wantWaiting)
			}
			if !equalMaps(gotT, tc.wantTerm) {
				t.Errorf("terminated = %v, want %v", gotT, tc.wantTerm)
			}
			if st.PodIP != "10.244.0.7" || st.HostIP != "192.0.2.1" || st.StartTime == nil || st.QOSClass != v1.PodQOSBestEffort {
				t.Errorf("podIP %q hostIP %q start %v qos %s", st.PodIP, st.HostIP, st.StartTime, st.QOSClass)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRestartCountAndLastState(t *testing.T) {
	p := testPod(v1.RestartPolicyAlways)
	p.Spec.InitContainers = nil
	rs := state(true, ctr("a", 3, plan.StateRunning, 0), ctr("a", 2, plan.StateExited, 137), ctr("b", 0, plan.StateRunning, 0))
	st := Build(Input{Pod: p, Runtime: rs, Now: now})
	a := st.ContainerStatuses[0]
	if a.RestartCount != 3 || a.State.Running == nil || a.LastTerminationState.Terminated == nil || a.LastTerminationState.Terminated.ExitCode != 137 {
		t.Fatalf("status of a = %+v", a)
	}
	if a.ImageID != "sha256:abc" || !a.Ready || a.Started == nil || !*a.Started {
		t.Errorf("imageID/ready/started wrong: %+v", a)
	}
}

func TestTerminalPhaseNeverRegresses(t *testing.T) {
	p := testPod(v1.RestartPolicyNever)
	p.Status.Phase = v1.PodSucceeded
	st := Build(Input{Pod: p, Runtime: state(true), Now: now})
	if st.Phase != v1.PodSucceeded {
		t.Fatalf("phase = %s after Succeeded", st.Phase)
	}
}

func TestOOMKilledReason(t *testing.T) {
	p := testPod(v1.RestartPolicyNever)
	p.Spec.InitContainers = nil
	c := ctr("a", 0, plan.StateExited, 137)
	c.Reason = "OOMKilled"
	st := Build(Input{Pod: p, Runtime: state(false, c, ctr("b", 0, plan.StateExited, 0)), Done: true, Now: now})
	if r := st.ContainerStatuses[0].State.Terminated.Reason; r != "OOMKilled" {
		t.Fatalf("reason = %q, want OOMKilled", r)
	}
	if st.Phase != v1.PodFailed {
		t.Fatalf("phase = %s, want Failed", st.Phase)
	}
}

func TestManagerPatchesOnlyChanges(t *testing.T) {
	p := testPod(v1.RestartPolicyAlways)
	client := fake.NewSimpleClientset(p)
	m := NewManager(client, zap.NewNop())
	ctx := context.Background()
	patches := func() int {
		n := 0
		for _, a := range client.Actions() {
			if pa, ok := a.(k8stesting.PatchAction); ok && pa.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	st := Build(Input{Pod: p, Runtime: state(true), Now: now})
	m.Set(p.UID, p, st)
	m.Flush(ctx)
	if n := patches(); n != 1 {
		t.Fatalf("%d status patches, want 1", n)
	}
	got, _ := client.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
	if got.Status.Phase != v1.PodPending || got.Status.PodIP != "10.244.0.7" {
		t.Fatalf("API status = %+v", got.Status)
	}
	m.Set(p.UID, got, st)
	m.Flush(ctx)
	if n := patches(); n != 1 {
		t.Fatalf("unchanged status sent again: %d patches", n)
	}
	st2 := Build(Input{Pod: got, Runtime: state(true, ctr("init", 0, plan.StateExited, 0)), Now: now.Add(time.Second)})
	m.Set(p.UID, got, st2)
	m.Flush(ctx)
	if n := patches(); n != 2 {
		t.Fatalf("changed status: %d patches, want 2", n)
	}
	got, _ = client.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
	if got.Status.InitContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("init container status not patched: %+v", got.Status.InitContainerStatuses)
	}
}

// A burst of pod starts must not queue each pod's status behind every other pod's patch: the
// patches of different pods go out together. (An HTTP server stands in for the API server: the
// fake clientset runs one reaction at a time.)
func TestManagerPatchesPodsInParallel(t *testing.T) {
	const pods, together = 8, 4
	var mu sync.Mutex
	inflight, maxInflight := 0, 0
	patched := map[string]bool{}
	arrived := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPatch || !strings.HasSuffix(r.URL.Path, "/status") {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		name := strings.Split(r.URL.Path, "/")[6] // /api/v1/namespaces/ns/pods/NAME/status
		mu.Lock()
		inflight++
		maxInflight = max(maxInflight, inflight)
		if inflight == together {
			once.Do(func() { close(arrived) })
		}
		mu.Unlock()
		// Hold each patch until `together` are in flight, or give up after a while as a
		// one-at-a-time sender would make it.
		select {
		case <-arrived:
		case <-time.After(2 * time.Second):
		}
		mu.Lock()
		inflight--
		patched[name] = true
		mu.Unlock()
		p := testPod(v1.RestartPolicyAlways)
		p.Name = name
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p)
	}))
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: 1000, Burst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(client, zap.NewNop())
	for i := range pods {
		p := testPod(v1.RestartPolicyAlways)
		p.Name, p.UID = fmt.Sprintf("p%d", i), types.UID(fmt.Sprintf("u%d", i))
		m.Set(p.UID, p, Build(Input{Pod: p, Runtime: state(true), Now: now}))
	}
	start := time.Now()
	m.Flush(context.Background())
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if took > time.Second {
		t.Errorf("flush of %d pods took %s with at most %d patches in flight", pods, took, maxInflight)
	}
	if len(patched) != pods {
		t.Errorf("patched %d pods, want %d", len(patched), pods)
	}
}
