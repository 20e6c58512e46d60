package kubelet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubenode/kubenode/e2e/images"
)

// TestEphemeralContainersAndRuntimeClass covers `kubectl debug --target` (an ephemeral container
// added through the pods/ephemeralcontainers subresource, sharing its target's processes) and
// spec.runtimeClassName (the RuntimeClass's handler picks containerd's runtime; an unknown class
// keeps the pod Pending with an event, and the kubelet carries on).
func TestEphemeralContainersAndRuntimeClass(t *testing.T) {
	n := startNode(t, true, nil)
	ctx := context.Background()

	t.Run("EphemeralContainerSharesTargetProcesses", func(t *testing.T) {
		ns := n.namespace(t, "debug")
		marker := "target-marker-" + randomHex(t, 4)
		app := busybox("app", "trap 'exit 0' TERM; while true; do sleep 1; done")
		// sh -c's $0: shows in the target's command line, and in nothing the debugger runs.
		app.Command = append(app.Command, marker)
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{app}}})
		p := n.waitPod(t, ns, "app", 60*time.Second, "Ready", readyPod)

		// What `kubectl debug -it app --image=busybox --target=app` sends.
		debugger := v1.EphemeralContainer{
			EphemeralContainerCommon: v1.EphemeralContainerCommon{
				Name: "debugger", Image: images.Busybox, ImagePullPolicy: v1.PullIfNotPresent,
				// Every process it can see, by command line (ps would cut lines at the TTY's width).
				Command: []string{"sh", "-c", "for p in /proc/[0-9]*; do echo \"${p#/proc/}: $(tr '\\0' ' ' < $p/cmdline)\"; done; trap 'exit 0' TERM; while true; do sleep 1; done"},
				Stdin:   true, TTY: true, TerminationMessagePolicy: v1.TerminationMessageReadFile,
			},
			TargetContainerName: "app",
		}
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, debugger)
		if _, err := n.admin.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, "app", p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("add ephemeral container: %v", err)
		}
		p = n.waitPod(t, ns, "app", 60*time.Second, "debugger running", func(p *v1.Pod) error {
			es := ephemeralStatus(p, "debugger")
			if es == nil || es.State.Running == nil {
				return fmt.Errorf("ephemeral statuses %+v", p.Status.EphemeralContainerStatuses)
			}
			if !strings.HasPrefix(es.ContainerID, "containerd://") || es.ImageID == "" || es.Image != images.Busybox {
				return fmt.Errorf("ephemeral status %+v: want containerID, image and imageID", es)
			}
			return nil
		})
		if err := readyPod(p); err != nil {
			t.Errorf("pod with a running debugger: %v", err)
		}
		var log string
		n.eventually(t, 15*time.Second, "debugger's /proc lists the target's process", func() error {
			log = n.containerLog(t, p, "debugger", 0)
			if !strings.Contains(log, marker) {
				return fmt.Errorf("processes seen: %q", log)
			}
			return nil
		})
		// PID namespace sharing, not a pod-wide one: the pause process is not in it.
		if strings.Contains(log, "pause") {
			t.Errorf("debugger sees the sandbox's pause process: %q", log)
		}

		// A second debug container that exits: terminated, never restarted, pod still Ready.
		p = n.getPod(t, ns, "app")
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, v1.EphemeralContainer{
			EphemeralContainerCommon: v1.EphemeralContainerCommon{
				Name: "oneshot", Image: images.Busybox, ImagePullPolicy: v1.PullIfNotPresent,
				Command: []string{"sh", "-c", "exit 3"}, TerminationMessagePolicy: v1.TerminationMessageReadFile,
			},
		})
		if _, err := n.admin.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, "app", p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("add second ephemeral container: %v", err)
		}
		terminated := func(p *v1.Pod) error {
			es := ephemeralStatus(p, "oneshot")
			if es == nil || es.State.Terminated == nil || es.State.Terminated.ExitCode != 3 {
				return fmt.Errorf("oneshot status %+v", es)
			}
			return nil
		}
		n.waitPod(t, ns, "app", 60*time.Second, "oneshot terminated", terminated)
		// Past the node's initial crash-loop back-off (2 s) twice over: a regular container
		// would have been restarted by now.
		time.Sleep(6 * time.Second)
		p = n.getPod(t, ns, "app")
		if err := terminated(p); err != nil {
			t.Errorf("oneshot was restarted: %v", err)
		}
		if es := ephemeralStatus(p, "oneshot"); es != nil && es.RestartCount != 0 {
			t.Errorf("oneshot restartCount %d", es.RestartCount)
		}
		if err := readyPod(p); err != nil || p.Status.Phase != v1.PodRunning {
			t.Errorf("pod after a debug container exited: phase %s, %v", p.Status.Phase, err)
		}
		if es := ephemeralStatus(p, "debugger"); es == nil || es.State.Running == nil {
			t.Errorf("debugger status %+v, want still running", es)
		}

		// Deleting the pod stops the debugger with it.
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, ns, "app", 60*time.Second)
	})

	t.Run("RuntimeClass", func(t *testing.T) {
		ns := n.namespace(t, "rtclass")
		// The handler is the runtime name in the containerd config nodeenv writes.
		class := "e2e-runc-" + randomHex(t, 3)
		if _, err := n.admin.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Handler: "runc"}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = n.admin.NodeV1().RuntimeClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
		})
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "classy", Namespace: ns}, Spec: v1.PodSpec{
			RuntimeClassName: &class, Containers: []v1.Container{busybox("main", sleeper)},
		}})
		n.waitPod(t, ns, "classy", 60*time.Second, "Ready with RuntimeClass "+class, readyPod)

		// The handler reaches containerd: one it has no runtime for fails the sandbox.
		bogus := "e2e-bogus-" + randomHex(t, 3)
		if _, err := n.admin.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: bogus}, Handler: "no-such-runtime"}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = n.admin.NodeV1().RuntimeClasses().Delete(context.Background(), bogus, metav1.DeleteOptions{})
		})
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bogus", Namespace: ns}, Spec: v1.PodSpec{
			RuntimeClassName: &bogus, Containers: []v1.Container{busybox("main", sleeper)},
		}})
		n.eventually(t, 30*time.Second, "FailedCreatePodSandBox event for the unknown handler", func() error {
			return sandboxEvent(ctx, n, ns, "bogus", `runtime handler "no-such-runtime"`)
		})
		if p := n.getPod(t, ns, "bogus"); p.Status.Phase != v1.PodPending {
			t.Errorf("pod with an unknown runtime handler: phase %s, want Pending", p.Status.Phase)
		}

		// The API server refuses a pod naming a RuntimeClass that does not exist, so make the
		// kubelet meet one the way it happens in a cluster: the class is deleted after the pod
		// was admitted and before it is bound. A scheduler nobody runs keeps it unbound until then.
		missing := "e2e-missing-" + randomHex(t, 3)
		if _, err := n.admin.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: missing}, Handler: "runc"}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		grace := int64(5)
		if _, err := n.admin.CoreV1().Pods(ns).Create(ctx, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "classless", Namespace: ns}, Spec: v1.PodSpec{
			RuntimeClassName: &missing, SchedulerName: "nobody-" + randomHex(t, 3), TerminationGracePeriodSeconds: &grace,
			Containers: []v1.Container{busybox("main", sleeper)},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n.admin.NodeV1().RuntimeClasses().Delete(ctx, missing, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n.admin.CoreV1().Pods(ns).Bind(ctx, &v1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: "classless", Namespace: ns},
			Target:     v1.ObjectReference{Kind: "Node", Name: n.name},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("RuntimeClass %q not found", missing)
		n.eventually(t, 30*time.Second, "FailedCreatePodSandBox event for the missing RuntimeClass", func() error {
			return sandboxEvent(ctx, n, ns, "classless", want)
		})
		p := n.getPod(t, ns, "classless")
		if p.Status.Phase != v1.PodPending {
			t.Errorf("pod with a missing RuntimeClass: phase %s, want Pending", p.Status.Phase)
		}
		// The kubelet is alive and still runs other pods.
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{busybox("main", sleeper)}}})
		n.waitPod(t, ns, "plain", 60*time.Second, "Ready beside the failing pod", readyPod)

		// Once the class exists, the retried sandbox starts.
		if _, err := n.admin.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: missing}, Handler: "runc"}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = n.admin.NodeV1().RuntimeClasses().Delete(context.Background(), missing, metav1.DeleteOptions{})
		})
		n.waitPod(t, ns, "classless", 90*time.Second, "Ready once its RuntimeClass exists", readyPod)
	})
}

func ephemeralStatus(p *v1.Pod, name string) *v1.ContainerStatus {
	for i := range p.Status.EphemeralContainerStatuses {
		if p.Status.EphemeralContainerStatuses[i].Name == name {
			return &p.Status.EphemeralContainerStatuses[i]
		}
	}
	return nil
}

// sandboxEvent finds a FailedCreatePodSandBox warning on the pod whose message contains want.
func sandboxEvent(ctx context.Context, n *node, ns, pod, want string) error {
	evs, err := n.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		return err
	}
	var seen []string
	for _, e := range evs.Items {
		if e.Reason == "FailedCreatePodSandBox" && e.Type == v1.EventTypeWarning && strings.Contains(e.Message, want) {
			return nil
		}
		seen = append(seen, e.Reason+": "+e.Message)
	}
	return fmt.Errorf("no FailedCreatePodSandBox event containing %q among %q", want, seen)
}
