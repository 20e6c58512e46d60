package podsync

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// recordingRuntime keeps the container configs the syncer created.
type recordingRuntime struct {
	*runtime.Runtime
	mu      sync.Mutex
	configs map[string]*runtimeapi.ContainerConfig // by container name
}

func (r *recordingRuntime) CreateContainer(ctx context.Context, sb string, cfg *runtimeapi.ContainerConfig, sbc *runtimeapi.PodSandboxConfig) (string, error) {
	r.mu.Lock()
	r.configs[cfg.Metadata.Name] = cfg
	r.mu.Unlock()
	return r.Runtime.CreateContainer(ctx, sb, cfg, sbc)
}

func (e *env) record() *recordingRuntime {
	rr := &recordingRuntime{Runtime: e.syncer.d.Runtime.(*runtime.Runtime), configs: map[string]*runtimeapi.ContainerConfig{}}
	e.syncer.d.Runtime = rr
	return rr
}

func (e *env) containerID(t *testing.T, name string) string {
	t.Helper()
	for id, c := range e.rs.Containers {
		if c.Metadata.Name == name {
			return id
		}
	}
	t.Fatalf("no container %q in the runtime", name)
	return ""
}

func TestSyncEphemeralContainer(t *testing.T) {
	e := newEnv(t, nil)
	rr := e.record()
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	target := e.containerID(t, "a")

	// kubectl debug --target=a adds this through pods/ephemeralcontainers.
	p = p.DeepCopy()
	p.Spec.EphemeralContainers = []v1.EphemeralContainer{{
		EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "debugger", Image: "busybox:1.36", Stdin: true, TTY: true},
		TargetContainerName:      "a",
	}}
	e.pods.pods[p.UID] = p
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	cfg := rr.configs["debugger"]
	if cfg == nil {
		t.Fatal("the ephemeral container was not created")
	}
	if ns := cfg.Linux.SecurityContext.NamespaceOptions; ns.Pid != runtimeapi.NamespaceMode_TARGET || ns.TargetId != target {
		t.Errorf("pid namespace %v target %q, want TARGET %q", ns.Pid, ns.TargetId, target)
	}
	if !cfg.Stdin || !cfg.Tty {
		t.Errorf("stdin %v tty %v: kubectl debug -it attaches to them", cfg.Stdin, cfg.Tty)
	}
	st := e.status.last[p.UID]
	if len(st.EphemeralContainerStatuses) != 1 || st.EphemeralContainerStatuses[0].State.Running == nil {
		t.Fatalf("ephemeral statuses %+v", st.EphemeralContainerStatuses)
	}

	// It exits: never created again.
	debugger := e.containerID(t, "debugger")
	if err := e.rs.StopContainer(ctx, debugger, 0); err != nil {
		t.Fatal(err)
	}
	delete(rr.configs, "debugger")
	for i := 0; i < 2; i++ {
		if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
			t.Fatal(err)
		}
	}
	if rr.configs["debugger"] != nil {
		t.Fatal("the exited ephemeral container was started again")
	}
	st = e.status.last[p.UID]
	if st.Phase != v1.PodRunning || len(st.EphemeralContainerStatuses) != 1 || st.EphemeralContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("after the debugger exited: phase %s, ephemeral %+v", st.Phase, st.EphemeralContainerStatuses)
	}
}

type classes map[string]string

func (c classes) RuntimeClass(_ context.Context, name string) (*nodev1.RuntimeClass, error) {
	h, ok := c[name]
	if !ok {
		return nil, errors.New("no such RuntimeClass")
	}
	return &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: h}, nil
}

func TestSyncRuntimeClass(t *testing.T) {
	cases := []struct {
		name        string
		class       string // "" none
		withClasses bool
		wantHandler string
		wantErr     string
	}{
		{name: "no class: the runtime's default handler", withClasses: true},
		{name: "class: its handler goes to RunPodSandbox", class: "fast", withClasses: true, wantHandler: "runc-fast"},
		{name: "unknown class: sandbox fails with an event", class: "nope", withClasses: true, wantErr: "no such RuntimeClass"},
		{name: "standalone kubelet: cannot resolve a class", class: "fast", wantErr: "without an API server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			rec := record.NewFakeRecorder(20)
			e.syncer.d.Recorder = rec
			if tc.withClasses {
				e.syncer.d.RuntimeClasses = classes{"fast": "runc-fast"}
			}
			p := newPod()
			if tc.class != "" {
				p.Spec.RuntimeClassName = &tc.class
			}
			e.pods.pods[p.UID] = p
			_, err := e.syncer.Sync(context.Background(), p.UID)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("sync error %v, want one containing %q", err, tc.wantErr)
				}
				if len(e.rs.Sandboxes) != 0 {
					t.Errorf("a sandbox was made: %d", len(e.rs.Sandboxes))
				}
				select {
				case ev := <-rec.Events:
					if !strings.HasPrefix(ev, "Warning FailedCreatePodSandBox") || !strings.Contains(ev, tc.wantErr) {
						t.Errorf("event %q", ev)
					}
				default:
					t.Error("no event")
				}
				if st := e.status.last[p.UID]; st.Phase != v1.PodPending {
					t.Errorf("phase %s, want Pending", st.Phase)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(e.rs.Sandboxes) != 1 {
				t.Fatalf("%d sandboxes", len(e.rs.Sandboxes))
			}
			for _, sb := range e.rs.Sandboxes {
				if sb.RuntimeHandler != tc.wantHandler {
					t.Errorf("runtime handler %q, want %q", sb.RuntimeHandler, tc.wantHandler)
				}
			}
		})
	}
}
