package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"

	"github.com/kubenode/kubenode/e2e/images"
)

// memTotal is the node's memory capacity as the kubelet reports it (MemTotal).
func memTotal(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

// TestEvictionAndImageGC runs the kubelet with a memory.available threshold that this machine
// crosses on purpose (capacity minus 256Mi: crossed whenever the node's working set is above
// 256Mi, which a node running a control plane and containerd always is; allocatable memory
// stays 256Mi, so small Guaranteed pods still fit) and image GC thresholds that are always
// crossed (high 1%, low 0%, minimum age 1s). It checks, against the real control plane and
// containerd: MemoryPressure turns True (and node-lifecycle taints the node from it); a
// BestEffort pod is rejected at admission; a BestEffort pod that tolerates the taint is
// evicted (Failed, reason Evicted, upstream's message, DisruptionTarget, a Warning event)
// before a Guaranteed pod, which is evicted on a later pass as the pressure persists; static
// and system-node-critical pods are never evicted; and an image no container uses any more is
// removed while images in use stay.
func TestEvictionAndImageGC(t *testing.T) {
	threshold := memTotal(t) - 256<<20
	n := startNode(t, true, func(cfg map[string]any) {
		cfg["evictionHard"] = map[string]string{"memory.available": strconv.FormatInt(threshold, 10)}
		cfg["imageGCHighThresholdPercent"] = 1
		cfg["imageGCLowThresholdPercent"] = 0
		cfg["imageMinimumGCAge"] = "1s"
	})
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(n.staticDir, "web.yaml"), []byte(staticManifest), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("MemoryPressureConditionAndTaint", func(t *testing.T) {
		n.eventually(t, 60*time.Second, "MemoryPressure True", func() error {
			node, err := n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			want := map[v1.NodeConditionType]string{
				v1.NodeMemoryPressure: "True/KubeletHasInsufficientMemory",
				v1.NodeDiskPressure:   "False/KubeletHasNoDiskPressure",
				v1.NodePIDPressure:    "False/KubeletHasSufficientPID",
				v1.NodeReady:          "True/KubeletReady",
			}
			for _, c := range node.Status.Conditions {
				if w, ok := want[c.Type]; ok {
					if got := string(c.Status) + "/" + c.Reason; got != w {
						return fmt.Errorf("%s = %s, want %s", c.Type, got, w)
					}
					delete(want, c.Type)
				}
			}
			if len(want) > 0 {
				return fmt.Errorf("conditions missing: %v", want)
			}
			return nil
		})
		// The kubelet may not change its own taints (NodeRestriction); the node-lifecycle
		// controller taints the node from the condition, as in any cluster.
		n.eventually(t, 60*time.Second, "memory-pressure taint", func() error {
			node, err := n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, tn := range node.Spec.Taints {
				if tn.Key == v1.TaintNodeMemoryPressure && tn.Effect == v1.TaintEffectNoSchedule {
					return nil
				}
			}
			return fmt.Errorf("taints %v", node.Spec.Taints)
		})
	})

	ns := n.namespace(t, "eviction")
	sleeperPod := func(name, namespace string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Spec: v1.PodSpec{Containers: []v1.Container{busybox("main", sleeper)}}}
	}
	evicted := func(p *v1.Pod) error {
		if p.Status.Phase != v1.PodFailed || p.Status.Reason != "Evicted" {
			return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	}

	t.Run("BestEffortRejectedAtAdmission", func(t *testing.T) {
		n.createPod(t, sleeperPod("rejected", ns))
		p := n.waitPod(t, ns, "rejected", 30*time.Second, "rejected", evicted)
		if !strings.Contains(p.Status.Message, "The node had condition: [MemoryPressure]") {
			t.Errorf("message %q", p.Status.Message)
		}
		if len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil {
			t.Errorf("a rejected pod's container runs: %s", brief(p))
		}
	})

	// A critical pod (never evicted) whose image image GC must keep while it runs, and remove
	// once it is deleted.
	echo := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "critical-echo-" + n.name, Namespace: metav1.NamespaceSystem}, Spec: v1.PodSpec{
		PriorityClassName: "system-node-critical",
		Containers:        []v1.Container{{Name: "echo", Image: images.Echo, ImagePullPolicy: v1.PullIfNotPresent}},
	}}
	n.createPod(t, echo)
	t.Cleanup(func() {
		_ = n.admin.CoreV1().Pods(metav1.NamespaceSystem).Delete(context.Background(), echo.Name, metav1.DeleteOptions{})
	})

	t.Run("BestEffortEvictedBeforeGuaranteed", func(t *testing.T) {
		be := sleeperPod("besteffort", ns)
		be.Spec.Tolerations = []v1.Toleration{{Key: v1.TaintNodeMemoryPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}}
		g := sleeperPod("guaranteed", ns)
		q := v1.ResourceList{v1.ResourceCPU: resource.MustParse("50m"), v1.ResourceMemory: resource.MustParse("32Mi")}
		g.Spec.Containers[0].Resources = v1.ResourceRequirements{Requests: q, Limits: q}
		// BestEffort first: an eviction pass between the two creations can only pick it.
		n.createPod(t, be)
		n.createPod(t, g)

		p := n.waitPod(t, ns, "besteffort", 60*time.Second, "evicted", evicted)
		if gp := n.getPod(t, ns, "guaranteed"); gp.Status.Phase == v1.PodFailed {
			t.Errorf("the Guaranteed pod was evicted first or together with the BestEffort one: %s %q", gp.Status.Reason, gp.Status.Message)
		}
		tq := resource.MustParse(strconv.FormatInt(threshold, 10))
		wantPrefix := fmt.Sprintf("The node was low on resource: memory. Threshold quantity: %s, available: ", tq.String())
		if !strings.HasPrefix(p.Status.Message, wantPrefix) {
			t.Errorf("message %q, want prefix %q", p.Status.Message, wantPrefix)
		}
		disrupted := false
		for _, c := range p.Status.Conditions {
			if c.Type == v1.DisruptionTarget && c.Status == v1.ConditionTrue && c.Reason == v1.PodReasonTerminationByKubelet {
				disrupted = true
			}
		}
		if !disrupted {
			t.Errorf("no DisruptionTarget condition: %+v", p.Status.Conditions)
		}
		p = n.waitPod(t, ns, "besteffort", 30*time.Second, "container stopped", func(p *v1.Pod) error {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Terminated == nil {
					return fmt.Errorf("container %s not terminated", cs.Name)
				}
			}
			return nil
		})
		if p.Status.Phase != v1.PodFailed || p.Status.Reason != "Evicted" {
			t.Errorf("evicted pod's status changed afterwards: %s %s", p.Status.Phase, p.Status.Reason)
		}
		n.eventually(t, 30*time.Second, "Evicted event", func() error {
			evs, err := n.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=besteffort"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == "Evicted" && e.Type == v1.EventTypeWarning && strings.HasPrefix(e.Message, "The node was low on resource: memory.") {
					return nil
				}
			}
			return fmt.Errorf("%d events, none Evicted", len(evs.Items))
		})

		// The pressure persists: the next pass takes the Guaranteed pod.
		n.waitPod(t, ns, "guaranteed", 60*time.Second, "evicted next", evicted)
	})

	t.Run("CriticalAndStaticPodsStay", func(t *testing.T) {
		// At least one more eviction pass has run since the Guaranteed pod went.
		time.Sleep(11 * time.Second)
		for _, c := range []struct{ ns, name string }{{metav1.NamespaceSystem, echo.Name}, {"default", "static-web-" + n.name}} {
			p := n.waitPod(t, c.ns, c.name, 60*time.Second, "running", phaseIs(v1.PodRunning))
			if p.Status.Reason == "Evicted" {
				t.Errorf("%s/%s was evicted", c.ns, c.name)
			}
		}
	})

	t.Run("ImageGCRemovesUnusedImages", func(t *testing.T) {
		is, err := criclient.NewRemoteImageServiceBuilder().WithEndpoint(n.env.Endpoint()).
			WithConnectionTimeout(30 * time.Second).WithTracerProvider(nil).Build(ctx)
		if err != nil {
			t.Fatal(err)
		}
		present := func() (map[string]bool, error) {
			imgs, err := is.ListImages(ctx, &runtimeapi.ImageFilter{})
			if err != nil {
				return nil, err
			}
			out := map[string]bool{}
			for _, img := range imgs {
				for _, tag := range img.RepoTags {
					out[tag] = true
				}
			}
			return out, nil
		}
		// In use by the critical pod, which has run through several collections by now (one
		// every 10 s since before the evictions above).
		tags, err := present()
		if err != nil {
			t.Fatal(err)
		}
		if !tags[images.Echo] {
			t.Fatalf("%s was removed while a container used it: %v", images.Echo, tags)
		}
		if err := n.admin.CoreV1().Pods(metav1.NamespaceSystem).Delete(ctx, echo.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, metav1.NamespaceSystem, echo.Name, 30*time.Second)
		n.eventually(t, 60*time.Second, "unused image removed", func() error {
			tags, err := present()
			if err != nil {
				return err
			}
			if tags[images.Echo] {
				return fmt.Errorf("%s still present", images.Echo)
			}
			return nil
		})
		tags, err = present()
		if err != nil {
			t.Fatal(err)
		}
		// The static pod's image (running) and the evicted pods' image (exited containers still
		// present) stay, and so does the sandbox image.
		for _, keep := range []string{images.Busybox, images.Pause} {
			if !tags[keep] {
				t.Errorf("%s was removed: %v", keep, tags)
			}
		}
	})
}

// TestSoftEviction runs the kubelet with a soft memory.available threshold this machine always
// crosses (capacity minus 256Mi, as TestEvictionAndImageGC's hard one), a 30 s grace period and
// evictionMaxPodGracePeriod 5, and no hard threshold it crosses. MemoryPressure turns True at
// once; a Guaranteed pod that asks for 30 s of termination grace and ignores SIGTERM is evicted
// only once the threshold stayed crossed for the grace period, with upstream's message naming
// the soft threshold, and is killed after the 5 s cap, not at once (hard eviction's 1 s) nor
// after its own 30 s.
func TestSoftEviction(t *testing.T) {
	const softGrace, maxPodGrace = 30 * time.Second, 5
	threshold := memTotal(t) - 256<<20
	n := startNode(t, true, func(cfg map[string]any) {
		cfg["evictionHard"] = map[string]string{"memory.available": "100Mi"}
		cfg["evictionSoft"] = map[string]string{"memory.available": strconv.FormatInt(threshold, 10)}
		cfg["evictionSoftGracePeriod"] = map[string]string{"memory.available": softGrace.String()}
		cfg["evictionMaxPodGracePeriod"] = maxPodGrace
	})
	ctx := context.Background()
	ns := n.namespace(t, "soft-eviction")
	// Ignores SIGTERM (the trap runs a long sleep), so only the grace period's SIGKILL ends it.
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stubborn", Namespace: ns}, Spec: v1.PodSpec{
		TerminationGracePeriodSeconds: ptr(int64(30)),
		Containers:                    []v1.Container{busybox("main", "trap 'sleep 120' TERM; while true; do sleep 1; done")},
	}}
	q := v1.ResourceList{v1.ResourceCPU: resource.MustParse("50m"), v1.ResourceMemory: resource.MustParse("32Mi")}
	p.Spec.Containers[0].Resources = v1.ResourceRequirements{Requests: q, Limits: q}
	n.createPod(t, p)

	var pressureSince time.Time
	n.eventually(t, 60*time.Second, "MemoryPressure True", func() error {
		node, err := n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == v1.NodeMemoryPressure && c.Status == v1.ConditionTrue {
				pressureSince = c.LastTransitionTime.Time
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", node.Status.Conditions)
	})

	evictedPod := n.waitPod(t, ns, "stubborn", softGrace+60*time.Second, "evicted", func(p *v1.Pod) error {
		if p.Status.Phase != v1.PodFailed || p.Status.Reason != "Evicted" {
			return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
	tq := resource.MustParse(strconv.FormatInt(threshold, 10))
	if want := fmt.Sprintf("The node was low on resource: memory. Threshold quantity: %s, available: ", tq.String()); !strings.HasPrefix(evictedPod.Status.Message, want) {
		t.Errorf("message %q, want prefix %q", evictedPod.Status.Message, want)
	}
	var evictedAt time.Time
	for _, c := range evictedPod.Status.Conditions {
		if c.Type == v1.DisruptionTarget && c.Status == v1.ConditionTrue {
			evictedAt = c.LastTransitionTime.Time
		}
	}
	if evictedAt.IsZero() {
		t.Fatalf("no DisruptionTarget condition: %+v", evictedPod.Status.Conditions)
	}
	// The condition may be reported up to a status interval (10 s) after the first crossing;
	// evicting at once would land within one eviction pass (10 s) of it.
	waited := evictedAt.Sub(pressureSince)
	t.Logf("evicted %s after MemoryPressure turned True", waited)
	if waited < softGrace-10*time.Second {
		t.Errorf("evicted %s after MemoryPressure turned True, want about the %s soft grace period", waited, softGrace)
	}

	stopped := n.waitPod(t, ns, "stubborn", 60*time.Second, "container killed", func(p *v1.Pod) error {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated == nil {
				return fmt.Errorf("container %s not terminated", cs.Name)
			}
		}
		if len(p.Status.ContainerStatuses) == 0 {
			return fmt.Errorf("no container statuses")
		}
		return nil
	})
	term := stopped.Status.ContainerStatuses[0].State.Terminated
	// Timestamps have whole seconds: a 1 s kill reads as at most 2 s, the pod's own 30 s as 29 s
	// or more.
	killed := term.FinishedAt.Sub(evictedAt)
	t.Logf("container ended %s after the eviction (exit %d)", killed, term.ExitCode)
	if killed < (maxPodGrace-1)*time.Second || killed >= 25*time.Second {
		t.Errorf("container ended %s after the eviction (exit %d), want about evictionMaxPodGracePeriod (%d s)", killed, term.ExitCode, maxPodGrace)
	}
}
