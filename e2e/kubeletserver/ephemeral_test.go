package kubeletserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/kubeletharness"
)

// TestKubectlDebugAttach does what `kubectl debug -it target --image=busybox --target=main`
// does: add an interactive ephemeral container through pods/ephemeralcontainers, wait for it to
// run, and attach to it through the API server with stdin and a TTY.
func TestKubectlDebugAttach(t *testing.T) {
	n := kubeletharness.Start(t, nil)
	ctx := context.Background()
	ns := n.Namespace(t, "dbg")
	p := n.RunPod(t, ns, "target", "trap 'exit 0' TERM; while true; do sleep 1; done")

	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, v1.EphemeralContainer{
		EphemeralContainerCommon: v1.EphemeralContainerCommon{
			Name: "debugger", Image: images.Busybox, ImagePullPolicy: v1.PullIfNotPresent,
			Stdin: true, TTY: true, TerminationMessagePolicy: v1.TerminationMessageReadFile,
		},
		TargetContainerName: "main",
	})
	if _, err := n.Admin.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, "target", p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("add ephemeral container: %v", err)
	}
	kubeletharness.Eventually(t, 60*time.Second, "debugger running", func() error {
		got, err := n.Admin.CoreV1().Pods(ns).Get(ctx, "target", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, es := range got.Status.EphemeralContainerStatuses {
			if es.Name == "debugger" && es.State.Running != nil {
				return nil
			}
		}
		return fmt.Errorf("ephemeral statuses %+v", got.Status.EphemeralContainerStatuses)
	})

	req := n.Admin.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("target").SubResource("attach").
		VersionedParams(&v1.PodAttachOptions{Container: "debugger", Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(n.AdminCfg, "POST", req.URL())
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stdinR, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := ex.StreamWithContext(actx, remotecommand.StreamOptions{Stdin: stdinR, Stdout: outW, Tty: true})
		outW.CloseWithError(fmt.Errorf("attach ended: %v", err))
		done <- err
	}()
	// The answer, not the typed line (the TTY echoes that): proves the shell runs the input.
	// /proc/1 is the target's shell, seen through the shared PID namespace.
	go func() {
		_, _ = io.WriteString(stdinW, "echo answer-$((6*7)); grep -c trap /proc/1/cmdline\n")
	}()
	sc := bufio.NewScanner(outR)
	var seen []string
	found := false
	for !found && sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		seen = append(seen, line)
		found = strings.HasSuffix(line, "answer-42")
	}
	if !found {
		t.Fatalf("attached session output %q: %v", seen, sc.Err())
	}
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != "1" {
		t.Errorf("the debugger does not see the target's process as PID 1: %q (%v)", sc.Text(), sc.Err())
	}
	// Ending the shell ends the session; the container is not restarted.
	_, _ = io.WriteString(stdinW, "exit\n")
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("attach did not end after the shell exited")
	}
	stdinW.Close()
	kubeletharness.Eventually(t, 30*time.Second, "debugger terminated", func() error {
		got, err := n.Admin.CoreV1().Pods(ns).Get(ctx, "target", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, es := range got.Status.EphemeralContainerStatuses {
			if es.Name == "debugger" && es.State.Terminated != nil && es.RestartCount == 0 {
				return nil
			}
		}
		return fmt.Errorf("ephemeral statuses %+v", got.Status.EphemeralContainerStatuses)
	})
}
