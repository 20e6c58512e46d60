package kubelet

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// TestKubeletWithAPIServer runs the scenarios that need the API server on one node: one
// control plane start for all of them. Subtests run in order; the restart test is last.
func TestKubeletWithAPIServer(t *testing.T) {
	n := startNode(t, true, nil)
	ctx := context.Background()
	var firstLease time.Time

	t.Run("NodeReadyWithin10s", func(t *testing.T) {
		start := time.Now()
		n.eventually(t, 10*time.Second, "node Ready", func() error {
			node, err := n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range node.Status.Conditions {
				if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("conditions %v", node.Status.Conditions)
		})
		t.Logf("node Ready %s after the kubelet started", time.Since(start).Round(time.Millisecond))
		node, _ := n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if !strings.HasPrefix(node.Status.NodeInfo.ContainerRuntimeVersion, "containerd://") {
			t.Errorf("containerRuntimeVersion = %q", node.Status.NodeInfo.ContainerRuntimeVersion)
		}
		if node.Labels[v1.LabelHostname] != n.name || node.Labels[v1.LabelOSStable] != "linux" {
			t.Errorf("labels = %v", node.Labels)
		}
		var internal string
		for _, a := range node.Status.Addresses {
			if a.Type == v1.NodeInternalIP {
				internal = a.Address
			}
		}
		if internal != n.nodeIP {
			t.Errorf("InternalIP = %q, want %q", internal, n.nodeIP)
		}
		if c := node.Status.Allocatable[v1.ResourcePods]; c.Value() != 110 {
			t.Errorf("allocatable pods = %v", c)
		}
		n.eventually(t, 15*time.Second, "node lease", func() error {
			l, err := n.admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			firstLease = l.Spec.RenewTime.Time
			return nil
		})
	})

	t.Run("PodWithInitSidecarAndTwoContainers", func(t *testing.T) {
		ns := n.namespace(t, "lifecycle")
		init := busybox("init", "echo initialized")
		side := busybox("sidecar", sleeper)
		side.RestartPolicy = ptr(v1.ContainerRestartPolicyAlways)
		p := n.createPod(t, &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "full", Namespace: ns},
			Spec: v1.PodSpec{
				InitContainers: []v1.Container{init, side},
				Containers:     []v1.Container{busybox("a", sleeper), busybox("b", sleeper)},
			},
		})
		start := time.Now()
		p = n.waitPod(t, ns, p.Name, 90*time.Second, "Ready", readyPod)
		t.Logf("pod Ready %s after creation", time.Since(start).Round(time.Millisecond))
		st := p.Status
		if st.Phase != v1.PodRunning {
			t.Errorf("phase = %s", st.Phase)
		}
		if ip := net.ParseIP(st.PodIP); ip == nil || !strings.HasPrefix(st.PodIP, "10.247.") {
			t.Errorf("podIP = %q, want one from the node's pod range", st.PodIP)
		}
		if st.HostIP != n.nodeIP || st.StartTime == nil || st.QOSClass != v1.PodQOSBestEffort {
			t.Errorf("hostIP %q startTime %v qos %s", st.HostIP, st.StartTime, st.QOSClass)
		}
		for _, ct := range []v1.PodConditionType{v1.PodScheduled, v1.PodReadyToStartContainers, v1.PodInitialized, v1.ContainersReady, v1.PodReady} {
			ok := false
			for _, c := range st.Conditions {
				if c.Type == ct && c.Status == v1.ConditionTrue {
					ok = true
				}
			}
			if !ok {
				t.Errorf("condition %s not True: %v", ct, st.Conditions)
			}
		}
		if len(st.InitContainerStatuses) != 2 {
			t.Fatalf("init statuses = %v", st.InitContainerStatuses)
		}
		ic := st.InitContainerStatuses[0]
		if ic.State.Terminated == nil || ic.State.Terminated.Reason != "Completed" || ic.State.Terminated.ExitCode != 0 || ic.Ready {
			t.Errorf("init container status = %+v", ic)
		}
		sc := st.InitContainerStatuses[1]
		if sc.State.Running == nil || !sc.Ready || sc.Started == nil || !*sc.Started {
			t.Errorf("sidecar status = %+v", sc)
		}
		for _, cs := range append([]v1.ContainerStatus{sc}, st.ContainerStatuses...) {
			if !strings.HasPrefix(cs.ContainerID, "containerd://") || cs.ImageID == "" || cs.Image != images.Busybox || cs.RestartCount != 0 {
				t.Errorf("container %s: id %q imageID %q image %q restarts %d", cs.Name, cs.ContainerID, cs.ImageID, cs.Image, cs.RestartCount)
			}
		}
		for _, cs := range st.ContainerStatuses {
			if cs.State.Running == nil || !cs.Ready {
				t.Errorf("container %s not running and ready: %+v", cs.Name, cs.State)
			}
		}
		if out := n.containerLog(t, p, "init", 0); out != "initialized" {
			t.Errorf("init container log = %q", out)
		}
	})

	t.Run("EnvFromConfigMapSecretAndFieldRef", func(t *testing.T) {
		ns := n.namespace(t, "env")
		if _, err := n.admin.CoreV1().ConfigMaps(ns).Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"MODE": "fast"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.admin.CoreV1().Secrets(ns).Create(ctx, &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("hunter2")}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c := busybox("main", `echo "MODE=$MODE PW=$PW NAME=$POD_NAME NS=$POD_NS IP=$POD_IP CFG_MODE=$CFG_MODE API=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-present`)
		c.EnvFrom = []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}}
		c.Env = []v1.EnvVar{
			{Name: "MODE", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "MODE"}}},
			{Name: "PW", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
			{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NS", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "POD_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		}
		p := n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "env", Namespace: ns}, Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{c}}})
		p = n.waitPod(t, ns, p.Name, 60*time.Second, "Succeeded", phaseIs(v1.PodSucceeded))
		out := n.containerLog(t, p, "main", 0)
		api, err := n.admin.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("MODE=fast PW=hunter2 NAME=env NS=%s IP=%s CFG_MODE=fast API=%s:%d\n%s\ntoken-present", ns, p.Status.PodIP, api.Spec.ClusterIP, api.Spec.Ports[0].Port, ns)
		if out != want {
			t.Errorf("container output:\n%s\nwant:\n%s", out, want)
		}
	})

	t.Run("RestartPolicies", func(t *testing.T) {
		ns := n.namespace(t, "policies")
		mk := func(name string, policy v1.RestartPolicy, code int) {
			n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.PodSpec{
				RestartPolicy: policy, Containers: []v1.Container{busybox("main", fmt.Sprintf("sleep 1; exit %d", code))},
			}})
		}
		mk("never-ok", v1.RestartPolicyNever, 0)
		mk("never-fail", v1.RestartPolicyNever, 3)
		mk("onfailure-ok", v1.RestartPolicyOnFailure, 0)
		mk("onfailure-fail", v1.RestartPolicyOnFailure, 1)
		p := n.waitPod(t, ns, "never-ok", 60*time.Second, "Succeeded", phaseIs(v1.PodSucceeded))
		if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "Completed" {
			t.Errorf("never-ok container = %+v", p.Status.ContainerStatuses[0].State)
		}
		p = n.waitPod(t, ns, "never-fail", 60*time.Second, "Failed", phaseIs(v1.PodFailed))
		if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 3 || term.Reason != "Error" {
			t.Errorf("never-fail container = %+v", p.Status.ContainerStatuses[0].State)
		}
		n.waitPod(t, ns, "onfailure-ok", 60*time.Second, "Succeeded", phaseIs(v1.PodSucceeded))
		n.waitPod(t, ns, "onfailure-fail", 60*time.Second, "restarted", func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 1 {
				return fmt.Errorf("no restart yet")
			}
			if p.Status.Phase != v1.PodRunning {
				return fmt.Errorf("phase %s, want Running while it restarts", p.Status.Phase)
			}
			return nil
		})
	})

	t.Run("CrashLoopBackOffGrows", func(t *testing.T) {
		ns := n.namespace(t, "crash")
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash", Namespace: ns}, Spec: v1.PodSpec{
			Containers: []v1.Container{busybox("main", "exit 1")},
		}})
		// The kubelet runs with back-off 2 s doubling to 8 s. Watch restarts happen.
		seen := map[int32]time.Time{}
		sawBackOff := false
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			p := n.getPod(t, ns, "crash")
			if len(p.Status.ContainerStatuses) == 1 {
				cs := p.Status.ContainerStatuses[0]
				if _, ok := seen[cs.RestartCount]; !ok {
					seen[cs.RestartCount] = time.Now()
				}
				if cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
					sawBackOff = true
				}
				if cs.RestartCount >= 4 {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !sawBackOff {
			t.Error("never saw waiting reason CrashLoopBackOff")
		}
		// The first restarts follow quickly (the first one at once); restarts 2->3->4 wait 4 s
		// and 8 s. Polling sees each count change within ~1 s of when it happened.
		_, ok2 := seen[2]
		_, ok3 := seen[3]
		_, ok4 := seen[4]
		if !ok2 || !ok3 || !ok4 {
			t.Fatalf("restarts seen: %v", seen)
		}
		g23, g34 := seen[3].Sub(seen[2]), seen[4].Sub(seen[3])
		t.Logf("gaps between restarts: 2->3 %s, 3->4 %s", g23.Round(100*time.Millisecond), g34.Round(100*time.Millisecond))
		if g23 < 2500*time.Millisecond || g34 < 6*time.Second {
			t.Errorf("back-off too short: 2->3 %s (want >= 4 s), 3->4 %s (want >= 8 s)", g23, g34)
		}
	})

	t.Run("ReadinessAndLivenessProbes", func(t *testing.T) {
		ns := n.namespace(t, "probes")
		ready := busybox("main", "sleep 3; touch /tmp/ready;", sleeper)
		ready.ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}}, PeriodSeconds: 1}
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ready-later", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{ready}}})
		live := busybox("main", sleeper)
		live.LivenessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"test", "-f", "/tmp/alive"}}}, PeriodSeconds: 1, FailureThreshold: 2}
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "liveness", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{live}}})
		n.waitPod(t, ns, "ready-later", 30*time.Second, "running but not ready", func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil {
				return fmt.Errorf("not running")
			}
			if p.Status.ContainerStatuses[0].Ready || readyPod(p) == nil {
				return fmt.Errorf("ready before its readiness probe passed")
			}
			return nil
		})
		n.waitPod(t, ns, "ready-later", 30*time.Second, "Ready once the probe passes", readyPod)
		n.waitPod(t, ns, "liveness", 60*time.Second, "restarted by its liveness probe", func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 1 {
				return fmt.Errorf("not restarted")
			}
			return nil
		})
	})

	t.Run("MissingImage", func(t *testing.T) {
		ns := n.namespace(t, "image")
		c := busybox("main", sleeper)
		// On the local registry (loopback only), a name it does not have.
		c.Image = n.registry + "/missing:v1"
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "missing", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{c}}})
		reasons := map[string]bool{}
		n.waitPod(t, ns, "missing", 60*time.Second, "ErrImagePull then ImagePullBackOff", func(p *v1.Pod) error {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Waiting != nil {
					reasons[cs.State.Waiting.Reason] = true
				}
			}
			if !reasons["ErrImagePull"] || !reasons["ImagePullBackOff"] {
				return fmt.Errorf("reasons seen %v", reasons)
			}
			if p.Status.Phase != v1.PodPending {
				return fmt.Errorf("phase %s, want Pending", p.Status.Phase)
			}
			return nil
		})
	})

	t.Run("TooLargePodsRejected", func(t *testing.T) {
		ns := n.namespace(t, "reject")
		for name, res := range map[string]v1.ResourceList{
			"cpu": {v1.ResourceCPU: resource.MustParse("1000")},
			"mem": {v1.ResourceMemory: resource.MustParse("100Ti")},
		} {
			c := busybox("main", sleeper)
			c.Resources.Requests = res
			n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{c}}})
		}
		for name, reason := range map[string]string{"cpu": "OutOfcpu", "mem": "OutOfmemory"} {
			n.waitPod(t, ns, name, 30*time.Second, "Failed "+reason, func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodFailed || p.Status.Reason != reason {
					return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
				}
				return nil
			})
		}
		n.eventually(t, 15*time.Second, "OutOfcpu event", func() error {
			evs, err := n.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == "OutOfcpu" && e.InvolvedObject.Name == "cpu" && e.Type == v1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("not among %d events", len(evs.Items))
		})
	})

	t.Run("MemoryLimitOOMKilled", func(t *testing.T) {
		ns := n.namespace(t, "oom")
		c := busybox("main", "tail /dev/zero")
		c.Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("24Mi")}
		n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "oom", Namespace: ns}, Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{c}}})
		p := n.waitPod(t, ns, "oom", 60*time.Second, "Failed", phaseIs(v1.PodFailed))
		if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "OOMKilled" {
			t.Errorf("container state = %+v, want terminated OOMKilled", p.Status.ContainerStatuses[0].State)
		}
	})

	t.Run("PodCgroupLimitsAndCleanup", func(t *testing.T) {
		ns := n.namespace(t, "cgroup")
		c := busybox("main", sleeper)
		c.Resources = v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m"), v1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("64Mi")},
		}
		p := n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "limited", Namespace: ns}, Spec: v1.PodSpec{Containers: []v1.Container{c}}})
		p = n.waitPod(t, ns, p.Name, 60*time.Second, "Ready", readyPod)
		if p.Status.QOSClass != v1.PodQOSBurstable {
			t.Errorf("qos = %s", p.Status.QOSClass)
		}
		dirs := podCgroupDirs(n.cgroupRoot, "burstable", string(p.UID))
		checks := map[string]string{
			filepath.Join(dirs["cpu"], "cpu.cfs_quota_us"):         "50000",
			filepath.Join(dirs["cpu"], "cpu.shares"):               "256",
			filepath.Join(dirs["memory"], "memory.limit_in_bytes"): "67108864",
		}
		if v2() {
			checks = map[string]string{
				filepath.Join(dirs["unified"], "cpu.max"):    "50000 100000",
				filepath.Join(dirs["unified"], "memory.max"): "67108864",
			}
		}
		for path, want := range checks {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("read %s: %v", path, err)
				continue
			}
			if got := strings.TrimSpace(string(b)); got != want {
				t.Errorf("%s = %s, want %s", path, got, want)
			}
		}
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, ns, p.Name, 30*time.Second)
		n.eventually(t, 10*time.Second, "pod cgroup removed", func() error {
			for _, d := range dirs {
				if _, err := os.Stat(d); err == nil {
					return fmt.Errorf("%s still exists", d)
				}
			}
			return nil
		})
	})

	t.Run("DeleteRunsPreStopWithinGrace", func(t *testing.T) {
		ns := n.namespace(t, "prestop")
		out := filepath.Join(n.stateDir, "prestop-"+ns)
		if err := os.MkdirAll(out, 0o777); err != nil {
			t.Fatal(err)
		}
		c := busybox("main", sleeper)
		c.VolumeMounts = []v1.VolumeMount{{Name: "out", MountPath: "/out"}}
		c.Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"sh", "-c", "echo bye > /out/prestop"}}}}
		p := n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bye", Namespace: ns}, Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(10)),
			Containers:                    []v1.Container{c},
			Volumes:                       []v1.Volume{{Name: "out", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: out}}}},
		}})
		n.waitPod(t, ns, p.Name, 60*time.Second, "Ready", readyPod)
		start := time.Now()
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, ns, p.Name, 15*time.Second)
		t.Logf("pod gone %s after delete (grace 10 s)", time.Since(start).Round(time.Millisecond))
		b, err := os.ReadFile(filepath.Join(out, "prestop"))
		if err != nil || strings.TrimSpace(string(b)) != "bye" {
			t.Errorf("preStop output = %q, %v", b, err)
		}
	})

	t.Run("StaticPodAndMirrorPod", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(n.staticDir, "web.yaml"), []byte(staticManifest), 0o644); err != nil {
			t.Fatal(err)
		}
		name := "static-web-" + n.name
		p := n.waitPod(t, "default", name, 60*time.Second, "mirror pod Running", func(p *v1.Pod) error {
			if p.Annotations["kubernetes.io/config.mirror"] == "" {
				return fmt.Errorf("not a mirror pod: %v", p.Annotations)
			}
			return readyPod(p)
		})
		if p.Spec.NodeName != n.name {
			t.Errorf("mirror pod nodeName = %q", p.Spec.NodeName)
		}
		// Deleting the mirror pod does not stop the static pod; the mirror comes back.
		if err := n.admin.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitPod(t, "default", name, 60*time.Second, "mirror pod recreated", func(q *v1.Pod) error {
			if q.UID == p.UID {
				return fmt.Errorf("old mirror still there")
			}
			return readyPod(q)
		})
		if err := os.Remove(filepath.Join(n.staticDir, "web.yaml")); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, "default", name, 60*time.Second)
	})

	t.Run("LeaseRenewed", func(t *testing.T) {
		n.eventually(t, 20*time.Second, "lease renewed", func() error {
			l, err := n.admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !l.Spec.RenewTime.Time.After(firstLease) {
				return fmt.Errorf("renewTime %v not after %v", l.Spec.RenewTime.Time, firstLease)
			}
			return nil
		})
	})

	t.Run("KubeletRestartAdoptsRunningPodsAndCleansUp", func(t *testing.T) {
		ns := n.namespace(t, "restart")
		var uids []string
		for _, name := range []string{"keep", "gone"} {
			p := n.createPod(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.PodSpec{
				Containers: []v1.Container{busybox("a", sleeper), busybox("b", sleeper)},
			}})
			n.waitPod(t, ns, name, 60*time.Second, "Ready", readyPod)
			uids = append(uids, string(p.UID))
		}
		p := n.getPod(t, ns, "keep")
		before := map[string]string{}
		for _, cs := range p.Status.ContainerStatuses {
			before[cs.Name] = cs.ContainerID
		}
		n.stopKubelet(t)
		// While the kubelet is away, "gone" is force-deleted: only the runtime still has it.
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, "gone", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
			t.Fatal(err)
		}
		n.startKubelet(t, kubeletBin(t))
		rs, err := nodeenv.Dial(ctx, n.env.Endpoint(), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		n.eventually(t, 30*time.Second, "force-deleted pod torn down", func() error {
			sbs, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"io.kubernetes.pod.uid": uids[1]}})
			if err != nil {
				return err
			}
			if len(sbs) > 0 {
				return fmt.Errorf("%d sandboxes left", len(sbs))
			}
			return nil
		})
		p = n.waitPod(t, ns, "keep", 30*time.Second, "Ready after restart", readyPod)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.ContainerID != before[cs.Name] || cs.RestartCount != 0 || cs.State.Running == nil {
				t.Errorf("container %s after kubelet restart: id %s (was %s), restarts %d, state %+v", cs.Name, cs.ContainerID, before[cs.Name], cs.RestartCount, cs.State)
			}
		}
		// The restarted kubelet still stops pods it adopted.
		if err := n.admin.CoreV1().Pods(ns).Delete(ctx, "keep", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, ns, "keep", 30*time.Second)
	})
}

func v2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// podCgroupDirs returns the pod cgroup per hierarchy that the test checks.
func podCgroupDirs(root, qos, uid string) map[string]string {
	rel := filepath.Join(root, "kubepods", qos, "pod"+uid)
	if v2() {
		return map[string]string{"unified": filepath.Join("/sys/fs/cgroup", rel)}
	}
	return map[string]string{
		"cpu":    filepath.Join("/sys/fs/cgroup/cpu", rel),
		"memory": filepath.Join("/sys/fs/cgroup/memory", rel),
	}
}
