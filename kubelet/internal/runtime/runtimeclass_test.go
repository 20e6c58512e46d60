package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

type classMap map[string]string // name -> handler

func (m classMap) RuntimeClass(_ context.Context, name string) (*nodev1.RuntimeClass, error) {
	h, ok := m[name]
	if !ok {
		return nil, notFound(name)
	}
	return &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: h}, nil
}

type failingClasses struct{}

func (failingClasses) RuntimeClass(context.Context, string) (*nodev1.RuntimeClass, error) {
	return nil, errors.New("connection refused")
}

func notFound(name string) error {
	_, err := fake.NewClientset().NodeV1().RuntimeClasses().Get(context.Background(), name, metav1.GetOptions{})
	return err
}

func TestRuntimeHandler(t *testing.T) {
	classes := classMap{"gvisor": "runsc", "runc": "runc"}
	withClass := func(name string) *v1.Pod {
		p := testPod()
		p.Spec.RuntimeClassName = &name
		return p
	}
	cases := []struct {
		name    string
		pod     *v1.Pod
		classes RuntimeClassGetter
		want    string
		wantErr string
	}{
		{name: "no runtimeClassName: the runtime's default", pod: testPod(), classes: classes, want: ""},
		{name: "empty runtimeClassName: the runtime's default", pod: withClass(""), classes: classes, want: ""},
		{name: "no runtimeClassName needs no API", pod: testPod(), want: ""},
		{name: "class found: its handler", pod: withClass("gvisor"), classes: classes, want: "runsc"},
		{name: "unknown class: a clear error", pod: withClass("kata"), classes: classes, wantErr: `pod team/web: spec.runtimeClassName "kata": RuntimeClass "kata" not found`},
		{name: "standalone kubelet: cannot resolve", pod: withClass("gvisor"), wantErr: "without an API server"},
		{name: "API failure: wrapped", pod: withClass("gvisor"), classes: failingClasses{}, wantErr: "look up RuntimeClass: connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RuntimeHandler(context.Background(), tc.pod, tc.classes)
			if tc.wantErr != "" {
				var rce *RuntimeClassError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &rce) {
					t.Fatalf("err %v, want a RuntimeClassError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("handler %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRuntimeClassesCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client := fake.NewClientset(&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Handler: "runc"})
	rcs := NewRuntimeClasses(client)
	// Before the watch runs, a lookup still answers (straight from the API).
	if rc, err := rcs.RuntimeClass(ctx, "fast"); err != nil || rc.Handler != "runc" {
		t.Fatalf("before sync: %v, %v", rc, err)
	}
	done := make(chan struct{})
	go func() { rcs.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// A class created later is seen through the watch.
	if _, err := client.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "sandboxed"}, Handler: "runsc"}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rc, err := rcs.RuntimeClass(ctx, "sandboxed")
		if err == nil && rc.Handler == "runsc" && rcs.informer.HasSynced() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch did not deliver the new RuntimeClass: %v, %v", rc, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := testPod()
	missing := "missing"
	p.Spec.RuntimeClassName = &missing
	if _, err := RuntimeHandler(ctx, p, rcs); err == nil || !strings.Contains(err.Error(), `RuntimeClass "missing" not found`) {
		t.Fatalf("missing class after sync: %v", err)
	}
}

func TestRunSandboxWithHandler(t *testing.T) {
	rs := critest.NewFakeRuntimeService()
	r := New(rs, critest.NewFakeImageService(), time.Second, zap.NewNop())
	cfg, err := SandboxConfig(testPod(), 0, "", NodeFacts{LogRoot: "/logs"})
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := r.RunSandboxWithHandler(context.Background(), cfg, "runsc")
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Sandboxes[id].RuntimeHandler; got != "runsc" {
		t.Fatalf("RunPodSandbox runtime handler %q, want runsc", got)
	}
	rs.InjectError("RunPodSandbox", errors.New(`no runtime for "nope" is configured`))
	if _, _, err := r.RunSandboxWithHandler(context.Background(), cfg, "nope"); err == nil || !strings.Contains(err.Error(), `runtime handler "nope"`) {
		t.Fatalf("error %v should name the handler", err)
	}
}
