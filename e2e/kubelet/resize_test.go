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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
)

// TestInPlacePodResize resizes a running Burstable pod through the resize subresource: the
// container's and the pod's cgroup limits change without a restart and the status reports the
// new resources; a resize larger than the node stays pending as Infeasible.
func TestInPlacePodResize(t *testing.T) {
	n := startNode(t, true, nil)
	ctx := context.Background()
	ns := n.namespace(t, "resize")

	c := busybox("main", sleeper)
	c.Resources = v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("200m"), v1.ResourceMemory: resource.MustParse("128Mi")},
	}
	p := n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "resize", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{c}}})
	p = n.waitPod(t, ns, p.Name, 60*time.Second, "Ready", readyPod)
	id := p.Status.ContainerStatuses[0].ContainerID
	if id == "" {
		t.Fatalf("no container ID: %s", brief(p))
	}
	dirs := podCgroupDirs(n.cgroupRoot, "burstable", string(p.UID))
	cid := id[strings.Index(id, "://")+3:]

	// limits reads the cpu quota and memory limit of the pod cgroup and the container's.
	limits := func() map[string]string {
		out := map[string]string{}
		read := func(key, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				out[key] = "error: " + err.Error()
				return
			}
			out[key] = strings.TrimSpace(string(b))
		}
		if v2() {
			read("pod cpu", filepath.Join(dirs["unified"], "cpu.max"))
			read("pod memory", filepath.Join(dirs["unified"], "memory.max"))
			read("container cpu", filepath.Join(dirs["unified"], cid, "cpu.max"))
			read("container memory", filepath.Join(dirs["unified"], cid, "memory.max"))
			return out
		}
		read("pod cpu", filepath.Join(dirs["cpu"], "cpu.cfs_quota_us"))
		read("pod memory", filepath.Join(dirs["memory"], "memory.limit_in_bytes"))
		read("container cpu", filepath.Join(dirs["cpu"], cid, "cpu.cfs_quota_us"))
		read("container memory", filepath.Join(dirs["memory"], cid, "memory.limit_in_bytes"))
		return out
	}
	want := func(cpuQuota, mem string) map[string]string {
		if v2() {
			cpuQuota += " 100000"
		}
		return map[string]string{"pod cpu": cpuQuota, "pod memory": mem, "container cpu": cpuQuota, "container memory": mem}
	}
	same := func(got, want map[string]string) error {
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("cgroup limits %v, want %v", got, want)
			}
		}
		return nil
	}
	if err := same(limits(), want("20000", "134217728")); err != nil {
		t.Fatalf("before the resize: %v", err)
	}

	resize := func(t *testing.T, patch string) {
		t.Helper()
		if _, err := n.admin.CoreV1().Pods(ns).Patch(ctx, p.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "resize"); err != nil {
			t.Fatalf("patch resize: %v", err)
		}
	}
	condition := func(p *v1.Pod, typ v1.PodConditionType) *v1.PodCondition {
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == typ {
				return &p.Status.Conditions[i]
			}
		}
		return nil
	}

	// waitApplied waits until the container status shows resources that pass ok and no resize
	// condition is left.
	waitApplied := func(t *testing.T, what string, ok func(r *v1.ResourceRequirements) bool) *v1.Pod {
		t.Helper()
		return n.waitPod(t, ns, p.Name, 30*time.Second, what, func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) != 1 {
				return fmt.Errorf("no container status")
			}
			if r := p.Status.ContainerStatuses[0].Resources; r == nil || !ok(r) {
				return fmt.Errorf("status resources %v", r)
			}
			for _, typ := range []v1.PodConditionType{v1.PodResizePending, v1.PodResizeInProgress} {
				if c := condition(p, typ); c != nil {
					return fmt.Errorf("condition %s still there: %s %s", typ, c.Reason, c.Message)
				}
			}
			return nil
		})
	}
	// kept fails the test when the container was restarted or replaced.
	kept := func(t *testing.T, got *v1.Pod) {
		t.Helper()
		if cs := got.Status.ContainerStatuses[0]; cs.RestartCount != 0 || cs.ContainerID != id {
			t.Errorf("container restarted: restartCount %d, ID %s (was %s)", cs.RestartCount, cs.ContainerID, id)
		}
	}

	t.Run("GrowInPlace", func(t *testing.T) {
		start := time.Now()
		resize(t, `{"spec":{"containers":[{"name":"main","resources":{"limits":{"cpu":"400m","memory":"192Mi"}}}]}}`)
		got := waitApplied(t, "resized", func(r *v1.ResourceRequirements) bool {
			return r.Limits.Cpu().MilliValue() == 400 && r.Limits.Memory().Value() == 192<<20
		})
		t.Logf("resize reported in %s", time.Since(start).Round(time.Millisecond))
		kept(t, got)
		cs := got.Status.ContainerStatuses[0]
		if cs.Resources.Requests.Cpu().MilliValue() != 100 || cs.Resources.Requests.Memory().Value() != 64<<20 {
			t.Errorf("status requests %v, want cpu 100m memory 64Mi", cs.Resources.Requests)
		}
		if q := cs.AllocatedResources[v1.ResourceCPU]; q.MilliValue() != 100 {
			t.Errorf("allocatedResources %v, want cpu 100m", cs.AllocatedResources)
		}
		if err := same(limits(), want("40000", "201326592")); err != nil {
			t.Errorf("after the resize: %v", err)
		}
	})

	t.Run("DeferredUntilAPodLeaves", func(t *testing.T) {
		hog := busybox("main", sleeper)
		hog.Resources = v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m")}}
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hog", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{hog}}})
		n.waitPod(t, ns, "hog", 60*time.Second, "Ready", readyPod)
		// 800m fits the node (2 cores) but not next to the hog's 1500m.
		resize(t, `{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"800m"},"limits":{"cpu":"800m"}}}]}}`)
		got := n.waitPod(t, ns, p.Name, 30*time.Second, "PodResizePending Deferred", func(p *v1.Pod) error {
			c := condition(p, v1.PodResizePending)
			if c == nil || c.Status != v1.ConditionTrue || c.Reason != v1.PodReasonDeferred {
				return fmt.Errorf("PodResizePending = %+v", c)
			}
			return nil
		})
		if c := condition(got, v1.PodResizePending); !strings.Contains(c.Message, "cpu") {
			t.Errorf("message %q does not name cpu", c.Message)
		}
		if err := same(limits(), want("40000", "201326592")); err != nil {
			t.Errorf("a deferred resize changed the cgroups: %v", err)
		}
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, "hog", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, ns, "hog", 30*time.Second)
		got = waitApplied(t, "deferred resize applied", func(r *v1.ResourceRequirements) bool {
			return r.Limits.Cpu().MilliValue() == 800 && r.Requests.Cpu().MilliValue() == 800
		})
		kept(t, got)
		if err := same(limits(), want("80000", "201326592")); err != nil {
			t.Errorf("after the deferred resize: %v", err)
		}
	})

	t.Run("MoreThanTheNodeIsInfeasible", func(t *testing.T) {
		// The API server refuses a resize beyond the Node object's allocatable itself. The
		// kubelet checks against its own allocatable, which is what counts when the Node object
		// is out of date: make it so, as an admin, just before the resize.
		patch := []byte(`{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"1000"},"limits":{"cpu":"1000"}}}]}}`)
		// The kubelet's own node status update may land in between: then try again.
		var err error
		for range 3 {
			var node *v1.Node
			node, err = n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			node.Status.Allocatable[v1.ResourceCPU] = resource.MustParse("2000")
			node.Status.Capacity[v1.ResourceCPU] = resource.MustParse("2000")
			if _, err = n.admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
				continue
			}
			if _, err = n.admin.CoreV1().Pods(ns).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "resize"); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("resize beyond the node: %v", err)
		}
		got := n.waitPod(t, ns, p.Name, 30*time.Second, "PodResizePending Infeasible", func(p *v1.Pod) error {
			c := condition(p, v1.PodResizePending)
			if c == nil || c.Status != v1.ConditionTrue || c.Reason != v1.PodReasonInfeasible {
				return fmt.Errorf("PodResizePending = %+v", c)
			}
			return nil
		})
		c := condition(got, v1.PodResizePending)
		if !strings.Contains(c.Message, "cpu") {
			t.Errorf("message %q does not name cpu", c.Message)
		}
		cs := got.Status.ContainerStatuses[0]
		if cs.RestartCount != 0 || cs.ContainerID != id || cs.Resources == nil || cs.Resources.Limits.Cpu().MilliValue() != 800 {
			t.Errorf("container status after an infeasible resize: %+v", cs)
		}
		if err := same(limits(), want("80000", "201326592")); err != nil {
			t.Errorf("an infeasible resize changed the cgroups: %v", err)
		}
		n.eventually(t, 10*time.Second, "ResizeInfeasible event", func() error {
			evs, err := n.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", p.Name).String()})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == "ResizeInfeasible" && e.Type == v1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("no ResizeInfeasible event among %d", len(evs.Items))
		})
	})

	t.Run("ShrinkAfterInfeasible", func(t *testing.T) {
		// A new resize replaces the infeasible one; shrinking sets the pod cgroup last.
		resize(t, `{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"100m"},"limits":{"cpu":"300m","memory":"96Mi"}}}]}}`)
		got := waitApplied(t, "shrunk", func(r *v1.ResourceRequirements) bool {
			return r.Limits.Cpu().MilliValue() == 300 && r.Limits.Memory().Value() == 96<<20
		})
		kept(t, got)
		if err := same(limits(), want("30000", "100663296")); err != nil {
			t.Errorf("after the shrink: %v", err)
		}
	})

	t.Run("AcrossKubeletRestart", func(t *testing.T) {
		// The accepted and applied resources are checkpointed: a resize made while the kubelet
		// is down is applied in place when it is back.
		if _, err := os.Stat(filepath.Join(n.rootDir, "allocation", string(p.UID)+".json")); err != nil {
			t.Fatalf("allocation checkpoint: %v", err)
		}
		n.stopKubelet(t)
		resize(t, `{"spec":{"containers":[{"name":"main","resources":{"limits":{"cpu":"350m"}}}]}}`)
		n.startKubelet(t, kubeletBin(t))
		got := waitApplied(t, "resized after the restart", func(r *v1.ResourceRequirements) bool {
			return r.Limits.Cpu().MilliValue() == 350 && r.Limits.Memory().Value() == 96<<20
		})
		kept(t, got)
		if err := same(limits(), want("35000", "100663296")); err != nil {
			t.Errorf("after the restart: %v", err)
		}
	})

	t.Run("RestartContainerPolicy", func(t *testing.T) {
		c := busybox("main", sleeper)
		c.Resources = v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("200m"), v1.ResourceMemory: resource.MustParse("128Mi")},
		}
		c.ResizePolicy = []v1.ContainerResizePolicy{{ResourceName: v1.ResourceMemory, RestartPolicy: v1.RestartContainer}}
		rp := n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "restart", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{c}}})
		rp = n.waitPod(t, ns, rp.Name, 60*time.Second, "Ready", readyPod)
		oldID := rp.Status.ContainerStatuses[0].ContainerID
		if _, err := n.admin.CoreV1().Pods(ns).Patch(ctx, rp.Name, types.StrategicMergePatchType,
			[]byte(`{"spec":{"containers":[{"name":"main","resources":{"limits":{"memory":"160Mi"}}}]}}`), metav1.PatchOptions{}, "resize"); err != nil {
			t.Fatalf("patch resize: %v", err)
		}
		got := n.waitPod(t, ns, rp.Name, 30*time.Second, "restarted with 160Mi", func(p *v1.Pod) error {
			cs := p.Status.ContainerStatuses[0]
			if cs.RestartCount != 1 || cs.State.Running == nil || !cs.Ready {
				return fmt.Errorf("restartCount %d, state %+v", cs.RestartCount, cs.State)
			}
			if cs.Resources == nil || cs.Resources.Limits.Memory().Value() != 160<<20 {
				return fmt.Errorf("status resources %v", cs.Resources)
			}
			if c := condition(p, v1.PodResizeInProgress); c != nil {
				return fmt.Errorf("PodResizeInProgress still there")
			}
			return nil
		})
		newID := got.Status.ContainerStatuses[0].ContainerID
		if newID == oldID {
			t.Fatalf("container ID unchanged (%s): not restarted", newID)
		}
		if v2() {
			return
		}
		dir := podCgroupDirs(n.cgroupRoot, "burstable", string(rp.UID))["memory"]
		b, err := os.ReadFile(filepath.Join(dir, newID[strings.Index(newID, "://")+3:], "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(b)) != "167772160" {
			t.Errorf("new container memory.limit_in_bytes = %q (%v), want 167772160", b, err)
		}
	})
}
