package runtime

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestEphemeralContainerConfig(t *testing.T) {
	debugPod := func(mutate func(*v1.Pod)) *v1.Pod {
		p := testPod()
		p.Spec.EphemeralContainers = []v1.EphemeralContainer{{
			EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "debugger", Image: "busybox", Command: []string{"sh"}, Stdin: true, TTY: true},
			TargetContainerName:      "c",
		}}
		if mutate != nil {
			mutate(p)
		}
		return p
	}
	cases := []struct {
		name       string
		pod        *v1.Pod
		targetID   string
		wantPid    runtimeapi.NamespaceMode
		wantTarget string
	}{
		{name: "target given: joins the target's PID namespace", pod: debugPod(nil), targetID: "cid-1", wantPid: runtimeapi.NamespaceMode_TARGET, wantTarget: "cid-1"},
		{name: "no target: a PID namespace of its own", pod: debugPod(nil), wantPid: runtimeapi.NamespaceMode_CONTAINER},
		{
			name: "pod shares one PID namespace: already sees every process", targetID: "cid-1", wantPid: runtimeapi.NamespaceMode_POD,
			pod: debugPod(func(p *v1.Pod) { share := true; p.Spec.ShareProcessNamespace = &share }),
		},
		{
			name: "host PID pod: stays in the node's", targetID: "cid-1", wantPid: runtimeapi.NamespaceMode_NODE,
			pod: debugPod(func(p *v1.Pod) { p.Spec.HostPID = true }),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := FindContainer(tc.pod, "debugger")
			if !ok {
				t.Fatal("FindContainer does not find the ephemeral container")
			}
			cfg, err := ContainerConfig(tc.pod, ContainerInput{Container: c, TargetID: tc.targetID}, NodeFacts{})
			if err != nil {
				t.Fatal(err)
			}
			ns := cfg.Linux.SecurityContext.NamespaceOptions
			if ns.Pid != tc.wantPid || ns.TargetId != tc.wantTarget {
				t.Errorf("pid namespace %v target %q, want %v target %q", ns.Pid, ns.TargetId, tc.wantPid, tc.wantTarget)
			}
			if ns.Network != runtimeapi.NamespaceMode_POD {
				t.Errorf("network namespace %v, want the pod's", ns.Network)
			}
			if cfg.Metadata.Name != "debugger" || cfg.Image.UserSpecifiedImage != "busybox" || !cfg.Stdin || !cfg.Tty {
				t.Errorf("config %v: name, image, stdin and tty must come from the ephemeral container (kubectl debug -it attaches)", cfg)
			}
			if cfg.Labels[LabelContainerName] != "debugger" {
				t.Errorf("container name label %q: attach and logs find the container by it", cfg.Labels[LabelContainerName])
			}
		})
	}
	// The pod's regular containers never get a target.
	p := debugPod(nil)
	cfg, err := ContainerConfig(p, ContainerInput{Container: &p.Spec.Containers[0]}, NodeFacts{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Linux.SecurityContext.NamespaceOptions.Pid; got != runtimeapi.NamespaceMode_CONTAINER {
		t.Errorf("regular container pid namespace %v", got)
	}
}

func TestFindContainerKinds(t *testing.T) {
	p := testPod()
	p.Spec.InitContainers = []v1.Container{{Name: "init"}}
	p.Spec.EphemeralContainers = []v1.EphemeralContainer{{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "dbg", Image: "busybox"}}}
	for _, name := range []string{"init", "c", "dbg"} {
		if c, ok := FindContainer(p, name); !ok || c.Name != name {
			t.Errorf("FindContainer(%q) = %v, %v", name, c, ok)
		}
	}
	if _, ok := FindContainer(p, "nope"); ok {
		t.Error("FindContainer found a container that is not in the pod")
	}
}
