package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
)

func TestRelistRebuildsPodsFromLabels(t *testing.T) {
	ctx := context.Background()
	rs := critest.NewFakeRuntimeService()
	r := New(rs, critest.NewFakeImageService(), time.Second, zap.NewNop())
	p := testPod()
	sbCfg, err := SandboxConfig(p, 1, "", NodeFacts{LogRoot: "/logs"})
	if err != nil {
		t.Fatal(err)
	}
	sbID, ips, err := r.RunSandbox(ctx, sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) == 0 || ips[0] == "" {
		t.Fatalf("sandbox IPs = %v", ips)
	}
	cCfg, err := ContainerConfig(p, ContainerInput{Container: &p.Spec.Containers[0], Attempt: 4}, NodeFacts{})
	if err != nil {
		t.Fatal(err)
	}
	cID, err := r.CreateContainer(ctx, sbID, cCfg, sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.StartContainer(ctx, cID); err != nil {
		t.Fatal(err)
	}

	pods, err := r.Relist(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps := pods[p.UID]
	if ps == nil || ps.Name != "web" || ps.Namespace != "team" {
		t.Fatalf("pod state = %+v", ps)
	}
	if len(ps.Observed.Sandboxes) != 1 || !ps.Observed.Sandboxes[0].Ready || ps.Observed.Sandboxes[0].Attempt != 1 {
		t.Errorf("sandboxes = %+v", ps.Observed.Sandboxes)
	}
	if len(ps.Observed.Containers) != 1 {
		t.Fatalf("containers = %+v", ps.Observed.Containers)
	}
	c := ps.Observed.Containers[0]
	if c.Name != "c" || c.State != plan.StateRunning || c.Attempt != 4 || c.Hash != plan.ContainerHash(&p.Spec.Containers[0]) || c.SandboxID != sbID {
		t.Errorf("container = %+v", c)
	}
	if len(ps.IPs) == 0 || ps.IPs[0] != ips[0] {
		t.Errorf("pod IPs = %v, want %v", ps.IPs, ips)
	}

	// After a stop the relist reports the new state (not the cached one).
	if err := r.StopContainer(ctx, cID, 0); err != nil {
		t.Fatal(err)
	}
	pods, _ = r.Relist(ctx)
	if got := pods[p.UID].Observed.Containers[0].State; got != plan.StateExited {
		t.Errorf("after stop: state %v, want exited", got)
	}
}

func TestRelistError(t *testing.T) {
	rs := critest.NewFakeRuntimeService()
	rs.InjectError("ListPodSandbox", errors.New("boom"))
	r := New(rs, critest.NewFakeImageService(), time.Second, zap.NewNop())
	if _, err := r.Relist(context.Background()); err == nil {
		t.Fatal("relist error swallowed")
	}
}

func TestEnsureImage(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cases := []struct {
		name       string
		present    bool
		policy     v1.PullPolicy
		pullErrs   int
		wantReason string
		wantPull   bool
	}{
		{name: "IfNotPresent with the image present does not pull", present: true, policy: v1.PullIfNotPresent},
		{name: "IfNotPresent without the image pulls", policy: v1.PullIfNotPresent, wantPull: true},
		{name: "Always pulls even when present", present: true, policy: v1.PullAlways, wantPull: true},
		{name: "Never without the image fails", policy: v1.PullNever, wantReason: ReasonErrImageNeverPull},
		{name: "failed pull is ErrImagePull", policy: v1.PullIfNotPresent, pullErrs: 1, wantReason: ReasonErrImagePull, wantPull: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := critest.NewFakeImageService()
			if tc.present {
				is.SetFakeImages([]string{"busybox:1.36"})
			}
			for i := 0; i < tc.pullErrs; i++ {
				is.InjectError("PullImage", errors.New("not found"))
			}
			pl := NewPuller(is, fakeObjects{}, clock)
			p := testPod()
			p.Spec.Containers[0].ImagePullPolicy = tc.policy
			_, err := pl.EnsureImage(ctx, p, &p.Spec.Containers[0], nil)
			var ce *ContainerError
			if tc.wantReason == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tc.wantReason != "" && (!errors.As(err, &ce) || ce.Reason != tc.wantReason) {
				t.Fatalf("err = %v, want reason %s", err, tc.wantReason)
			}
			pulled := false
			for _, c := range is.Called {
				if c == "PullImage" {
					pulled = true
				}
			}
			if pulled != tc.wantPull {
				t.Errorf("pulled = %v, want %v (calls %v)", pulled, tc.wantPull, is.Called)
			}
		})
	}
}

func TestImagePullBackOff(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	is := critest.NewFakeImageService()
	is.InjectError("PullImage", errors.New("not found"))
	is.InjectError("PullImage", errors.New("not found"))
	pl := NewPuller(is, fakeObjects{}, func() time.Time { return now })
	p := testPod()
	c := &p.Spec.Containers[0]
	reason := func() string {
		_, err := pl.EnsureImage(ctx, p, c, nil)
		var ce *ContainerError
		if errors.As(err, &ce) {
			return ce.Reason
		}
		return ""
	}
	if r := reason(); r != ReasonErrImagePull {
		t.Fatalf("first failure: %q", r)
	}
	now = now.Add(5 * time.Second)
	if r := reason(); r != ReasonImagePullBackOff {
		t.Fatalf("within back-off: %q, want ImagePullBackOff", r)
	}
	now = now.Add(6 * time.Second)
	if r := reason(); r != ReasonErrImagePull {
		t.Fatalf("after 10 s: %q, want a new pull failing with ErrImagePull", r)
	}
	now = now.Add(15 * time.Second) // back-off doubled to 20 s
	if r := reason(); r != ReasonImagePullBackOff {
		t.Fatalf("doubled back-off: %q, want ImagePullBackOff", r)
	}
	now = now.Add(6 * time.Second)
	if r := reason(); r != "" {
		t.Fatalf("after the back-off the pull succeeds: %q", r)
	}
}

func TestPullSecrets(t *testing.T) {
	is := critest.NewFakeImageService()
	objs := fakeObjects{secrets: map[string]*v1.Secret{"team/reg": {
		Type: v1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{v1.DockerConfigJsonKey: []byte(`{"auths":{"registry.example:5000":{"auth":"dXNlcjpwYXNz"}}}`)},
	}}}
	pl := NewPuller(is, objs, time.Now)
	p := testPod()
	p.Spec.ImagePullSecrets = []v1.LocalObjectReference{{Name: "reg"}}
	p.Spec.Containers[0].Image = "registry.example:5000/app:1"
	if _, err := pl.EnsureImage(context.Background(), p, &p.Spec.Containers[0], nil); err != nil {
		t.Fatal(err)
	}
	a, err := pl.auths(context.Background(), p, p.Spec.Containers[0].Image)
	if err != nil || len(a) != 1 || a[0].Username != "user" || a[0].Password != "pass" {
		t.Fatalf("auths = %v err %v", a, err)
	}
}
