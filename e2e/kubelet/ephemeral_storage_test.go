package kubelet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLocalStorageEviction checks local ephemeral storage eviction against the real control
// plane and containerd, with no node pressure at all: a pod writing 4 MiB into an emptyDir
// with sizeLimit 1Mi is evicted (Failed, reason Evicted, upstream's message, a Warning event,
// no DisruptionTarget condition, its container stopped), and so is a pod whose container writes 8 MiB to its root filesystem
// under an ephemeral-storage limit of 2Mi (the writable layer, as containerd reports it);
// a pod writing 512 KiB under the same 1Mi sizeLimit keeps running through later passes.
func TestLocalStorageEviction(t *testing.T) {
	n := startNode(t, true, nil)
	ctx := context.Background()
	ns := n.namespace(t, "local-storage")

	writer := func(name, path string, kib int) *v1.Pod {
		c := busybox("main", fmt.Sprintf("dd if=/dev/zero of=%s bs=1024 count=%d && sync;", path, kib), sleeper)
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{c}}}
	}
	withScratch := func(p *v1.Pod) *v1.Pod {
		limit := resource.MustParse("1Mi")
		p.Spec.Volumes = []v1.Volume{{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{SizeLimit: &limit}}}}
		p.Spec.Containers[0].VolumeMounts = []v1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
		return p
	}
	over := withScratch(writer("emptydir-over", "/scratch/f", 4096))
	under := withScratch(writer("emptydir-under", "/scratch/f", 512))
	// Two containers, so the pod's total limit (2Mi + 64Mi) is not what the 8 MiB crosses:
	// the writer's own limit is.
	rootfs := writer("rootfs-over", "/f", 8192)
	rootfs.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceEphemeralStorage: resource.MustParse("2Mi")}
	idle := busybox("idle", sleeper)
	idle.Resources.Limits = v1.ResourceList{v1.ResourceEphemeralStorage: resource.MustParse("64Mi")}
	rootfs.Spec.Containers = append(rootfs.Spec.Containers, idle)
	start := time.Now()
	for _, p := range []*v1.Pod{under, over, rootfs} {
		n.createPod(t, p)
	}

	evictedWith := func(msg string) func(*v1.Pod) error {
		return func(p *v1.Pod) error {
			if p.Status.Phase != v1.PodFailed || p.Status.Reason != "Evicted" {
				return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
			}
			if p.Status.Message != msg {
				return fmt.Errorf("message %q, want %q", p.Status.Message, msg)
			}
			for _, c := range p.Status.Conditions {
				// Upstream marks node-pressure evictions only: this pod outgrew its own limit.
				if c.Type == v1.DisruptionTarget {
					return fmt.Errorf("DisruptionTarget condition %+v", c)
				}
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Terminated == nil {
					return fmt.Errorf("container %s not terminated", cs.Name)
				}
			}
			return nil
		}
	}
	event := func(t *testing.T, pod, msg string) {
		t.Helper()
		n.eventually(t, 30*time.Second, "Evicted event for "+pod, func() error {
			evs, err := n.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == "Evicted" && e.Type == v1.EventTypeWarning && e.Message == msg {
					return nil
				}
			}
			return fmt.Errorf("%d events, none Evicted with %q", len(evs.Items), msg)
		})
	}

	t.Run("EmptyDirOverSizeLimitEvicted", func(t *testing.T) {
		msg := `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `
		n.waitPod(t, ns, over.Name, 60*time.Second, "evicted for its emptyDir", evictedWith(msg))
		event(t, over.Name, msg)
		t.Logf("evicted %s after %s", over.Name, time.Since(start).Round(time.Second))
	})
	t.Run("ContainerOverEphemeralStorageLimitEvicted", func(t *testing.T) {
		msg := `Container main exceeded its local ephemeral storage limit "2Mi". `
		// containerd refreshes writable layer sizes every 10 s, on top of the 10 s pass.
		n.waitPod(t, ns, rootfs.Name, 60*time.Second, "evicted for its container's root fs", evictedWith(msg))
		event(t, rootfs.Name, msg)
		t.Logf("evicted %s after %s", rootfs.Name, time.Since(start).Round(time.Second))
	})
	t.Run("EmptyDirUnderSizeLimitKeepsRunning", func(t *testing.T) {
		p := n.waitPod(t, ns, under.Name, 30*time.Second, "running", phaseIs(v1.PodRunning))
		n.eventually(t, 30*time.Second, under.Name+" wrote its 512 KiB", func() error {
			if log := n.containerLog(t, p, "main", 0); !strings.Contains(log, "512+0 records out") {
				return fmt.Errorf("dd output %q", log)
			}
			return nil
		})
		// At least one more eviction pass (every 10 s) after the writes that evicted the others.
		time.Sleep(11 * time.Second)
		p = n.getPod(t, ns, under.Name)
		if p.Status.Phase != v1.PodRunning || p.Status.Reason == "Evicted" {
			t.Errorf("%s: phase %s reason %q message %q", under.Name, p.Status.Phase, p.Status.Reason, p.Status.Message)
		}
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].RestartCount != 0 || !strings.Contains(brief(p), "running") {
			t.Errorf("%s: container %s", under.Name, brief(p))
		}
	})
}
