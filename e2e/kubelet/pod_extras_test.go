package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodExtras covers what pods get from the kubelet besides their containers: termination
// messages, the managed /etc/hosts with hostAliases, and the pod pids limit. One node for all;
// it also runs with parallel image pulls (serializeImagePulls false, maxParallelImagePulls 2).
func TestPodExtras(t *testing.T) {
	const pidsLimit = 321
	n := startNode(t, true, func(cfg map[string]any) {
		cfg["podPidsLimit"] = pidsLimit
		cfg["serializeImagePulls"] = false
		cfg["maxParallelImagePulls"] = 2
	})
	ctx := context.Background()
	ns := n.namespace(t, "extras")

	terminated := func(name string) func(*v1.Pod) error {
		return func(p *v1.Pod) error {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Name == name && cs.State.Terminated != nil {
					return nil
				}
			}
			return fmt.Errorf("container %s not terminated", name)
		}
	}
	status := func(p *v1.Pod, name string) v1.ContainerStatus {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == name {
				return cs
			}
		}
		t.Fatalf("no status for container %s: %s", name, brief(p))
		return v1.ContainerStatus{}
	}

	t.Run("TerminationMessageFromFile", func(t *testing.T) {
		custom := busybox("custom", "printf 'custom bye' > /tmp/msg")
		custom.TerminationMessagePath = "/tmp/msg"
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bye", Namespace: ns}, Spec: v1.PodSpec{
			RestartPolicy: v1.RestartPolicyNever,
			Containers: []v1.Container{
				busybox("main", "echo this goes to the log; printf bye > /dev/termination-log; exit 1"),
				custom,
			},
		}})
		p := n.waitPod(t, ns, "bye", 60*time.Second, "both containers terminated", func(p *v1.Pod) error {
			if err := terminated("main")(p); err != nil {
				return err
			}
			return terminated("custom")(p)
		})
		if term := status(p, "main").State.Terminated; term.ExitCode != 1 || term.Message != "bye" {
			t.Errorf("main: exit %d message %q, want exit 1 message \"bye\"", term.ExitCode, term.Message)
		}
		if term := status(p, "custom").State.Terminated; term.ExitCode != 0 || term.Message != "custom bye" {
			t.Errorf("custom terminationMessagePath: exit %d message %q, want \"custom bye\"", term.ExitCode, term.Message)
		}
	})

	t.Run("FallbackToLogsOnError", func(t *testing.T) {
		failing := busybox("failing", "echo first line; echo last words; exit 3")
		failing.TerminationMessagePolicy = v1.TerminationMessageFallbackToLogsOnError
		ok := busybox("ok", "echo all fine")
		ok.TerminationMessagePolicy = v1.TerminationMessageFallbackToLogsOnError
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "fallback", Namespace: ns}, Spec: v1.PodSpec{
			RestartPolicy: v1.RestartPolicyNever,
			Containers:    []v1.Container{failing, ok},
		}})
		p := n.waitPod(t, ns, "fallback", 60*time.Second, "both containers terminated", func(p *v1.Pod) error {
			if err := terminated("failing")(p); err != nil {
				return err
			}
			return terminated("ok")(p)
		})
		if term := status(p, "failing").State.Terminated; term.ExitCode != 3 || term.Message != "first line\nlast words\n" {
			t.Errorf("failing: exit %d message %q, want the log tail \"first line\\nlast words\\n\"", term.ExitCode, term.Message)
		}
		if term := status(p, "ok").State.Terminated; term.Message != "" {
			t.Errorf("a successful exit must not take its log as message, got %q", term.Message)
		}
	})

	t.Run("LastStateKeepsThePreviousMessage", func(t *testing.T) {
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "again", Namespace: ns}, Spec: v1.PodSpec{
			RestartPolicy: v1.RestartPolicyOnFailure,
			// Each instance starts with an empty file: the message names only its own start.
			Containers: []v1.Container{busybox("main", "cat /dev/termination-log; printf \"bye from $(hostname)\" >> /dev/termination-log; sleep 1; exit 1")},
		}})
		p := n.waitPod(t, ns, "again", 60*time.Second, "restarted with lastState", func(p *v1.Pod) error {
			cs := p.Status.ContainerStatuses
			if len(cs) == 0 || cs[0].RestartCount < 1 || cs[0].LastTerminationState.Terminated == nil {
				return fmt.Errorf("no restart yet")
			}
			return nil
		})
		if msg := p.Status.ContainerStatuses[0].LastTerminationState.Terminated.Message; msg != "bye from again" {
			t.Errorf("lastState.terminated.message = %q, want \"bye from again\" (a fresh file per instance)", msg)
		}
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, "again", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("HostAliasesInEtcHosts", func(t *testing.T) {
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "aliases", Namespace: ns}, Spec: v1.PodSpec{
			Hostname: "h1", Subdomain: "sub",
			HostAliases: []v1.HostAlias{
				{IP: "127.0.0.1", Hostnames: []string{"alias.test", "other.test"}},
				{IP: "10.9.8.7", Hostnames: []string{"far.test"}},
			},
			// The resolver reads the file: a server on loopback is reached through an alias.
			Containers: []v1.Container{busybox("main",
				"cat /etc/hosts; mkdir -p /tmp/www; echo via-alias > /tmp/www/index.html; httpd -p 127.0.0.1:8080 -h /tmp/www;",
				"sleep 1; echo fetched: $(timeout 3 wget -qO- http://alias.test:8080/); "+sleeper)},
		}})
		p := n.waitPod(t, ns, "aliases", 60*time.Second, "Ready", readyPod)
		var hosts string
		n.eventually(t, 20*time.Second, "container log with the fetch", func() error {
			hosts = n.containerLog(t, p, "main", 0)
			if !strings.Contains(hosts, "fetched:") {
				return fmt.Errorf("log so far:\n%s", hosts)
			}
			return nil
		})
		for _, want := range []string{
			"# Kubernetes-managed hosts file.",
			"127.0.0.1\tlocalhost",
			p.Status.PodIP + "\th1.sub." + ns + ".svc.cluster.local\th1",
			"# Entries added by HostAliases.\n127.0.0.1\talias.test\tother.test\n10.9.8.7\tfar.test",
			"fetched: via-alias",
		} {
			if !strings.Contains(hosts, want) {
				t.Errorf("container's /etc/hosts and fetch:\n%s\nwant it to contain %q", hosts, want)
			}
		}
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, "aliases", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("PodPidsLimit", func(t *testing.T) {
		p := n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pids", Namespace: ns}, Spec: v1.PodSpec{
			Containers: []v1.Container{busybox("main", sleeper)},
		}})
		n.waitPod(t, ns, "pids", 60*time.Second, "Ready", readyPod)
		rel := filepath.Join(n.cgroupRoot, "kubepods", "besteffort", "pod"+string(p.UID))
		path := filepath.Join("/sys/fs/cgroup/pids", rel, "pids.max")
		if v2() {
			path = filepath.Join("/sys/fs/cgroup", rel, "pids.max")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("pod cgroup pids.max: %v", err)
		}
		if got := strings.TrimSpace(string(b)); got != fmt.Sprint(pidsLimit) {
			t.Errorf("%s = %s, want podPidsLimit %d", path, got, pidsLimit)
		}
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, "pids", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}
