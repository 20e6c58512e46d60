package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// One control plane for the whole test binary: starting one costs seconds
// and hundreds of MB, and the tests use unique names so they do not collide.
var shared *Cluster

func TestMain(m *testing.M) {
	if os.Getenv(BinaryEnv) == "" {
		// Each test skips with the reason; see needCluster.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "kubenode-test-controlplane-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	begin := time.Now()
	shared, err = Start(context.Background(), Options{StateDir: dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start control plane: %v\n", err)
		printLog(dir)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Printf("control plane ready in %s at %s (pid %d, rss %s)\n", time.Since(begin).Round(time.Millisecond), shared.Server(), shared.PID(), rss(shared.PID()))
	code := m.Run()
	fmt.Printf("control plane rss after tests: %s\n", rss(shared.PID()))
	begin = time.Now()
	if err := shared.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop control plane: %v\n", err)
		printLog(dir)
		code = 1
	} else {
		fmt.Printf("control plane stopped cleanly in %s\n", time.Since(begin).Round(time.Millisecond))
	}
	if code != 0 && os.Getenv("KUBENODE_KEEP_STATE") != "" {
		fmt.Printf("state kept in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func needCluster(t *testing.T) *Cluster {
	t.Helper()
	if shared == nil {
		t.Skip(BinaryEnv + " not set: run through make test-controlplane")
	}
	return shared
}

func printLog(dir string) {
	data, err := os.ReadFile(dir + "/" + logFile)
	if err != nil {
		return
	}
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	fmt.Fprintf(os.Stderr, "--- tail of %s/%s ---\n%s\n", dir, logFile, data)
}

func rss(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	var kb int
	for _, line := range strings.Split(string(data), "\n") {
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			return fmt.Sprintf("%d MiB", kb/1024)
		}
	}
	return "unknown"
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func clientFor(t *testing.T, c *Cluster, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cs, _, err := c.Client(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func adminClient(t *testing.T, c *Cluster) kubernetes.Interface {
	return clientFor(t, c, c.AdminKubeconfig())
}

func nodeClient(t *testing.T, c *Cluster, node string) kubernetes.Interface {
	t.Helper()
	kc, err := c.NodeKubeconfig(node)
	if err != nil {
		t.Fatal(err)
	}
	return clientFor(t, c, kc)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 200ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, d, true, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// registerNode creates a Node the way a kubelet does: as the node itself,
// with capacity and a Ready condition in its status.
func registerNode(t *testing.T, c *Cluster, name string, taints ...corev1.Taint) kubernetes.Interface {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	nc := nodeClient(t, c, name)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Spec:       corev1.NodeSpec{Taints: taints},
	}
	created, err := nc.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("node %s creates its Node: %v", name, err)
	}
	t.Cleanup(func() {
		_ = adminClient(t, c).CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	now := metav1.Now()
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	status := corev1.NodeStatus{
		Capacity:    res,
		Allocatable: res,
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: name}},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
	}
	// A patch, not an update: controllers (node-ipam, node-lifecycle) touch
	// a new Node at once, so a read-modify-write would race them.
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.CoreV1().Nodes().Patch(ctx, created.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("node %s patches its status: %v", name, err)
	}
	return nc
}

func TestReadyzAndVersion(t *testing.T) {
	c := needCluster(t)
	ctx := ctxFor(t, 30*time.Second)
	admin := adminClient(t, c)
	body, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		t.Fatalf("/readyz: %v (%s)", err, body)
	}
	if string(body) != "ok" {
		t.Errorf("/readyz = %q, want ok", body)
	}
	v, err := admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.2" || v.Major != "1" || v.Minor != "37" {
		t.Errorf("server version = %s (major %q minor %q), want v1.37.2 (1, 37)", v.GitVersion, v.Major, v.Minor)
	}
}

func TestNodeIdentityIsConfinedToItsNode(t *testing.T) {
	c := needCluster(t)
	ctx := ctxFor(t, time.Minute)
	nodeA, nodeB := uniqueName("kubenode-test-a"), uniqueName("kubenode-test-b")
	a := registerNode(t, c, nodeA)
	b := registerNode(t, c, nodeB)
	admin := adminClient(t, c)

	t.Run("own lease", func(t *testing.T) {
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: nodeA, Namespace: corev1.NamespaceNodeLease},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &nodeA},
		}
		if _, err := a.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
			t.Fatalf("node creates its own Lease: %v", err)
		}
		t.Cleanup(func() {
			_ = admin.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(context.Background(), nodeA, metav1.DeleteOptions{})
		})
		got, err := a.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, nodeA, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node reads its own Lease: %v", err)
		}
		renew := metav1.NewMicroTime(time.Now())
		got.Spec.RenewTime = &renew
		if _, err := a.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("node renews its own Lease: %v", err)
		}
	})

	podA := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kubenode-test-pod"), Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:   nodeA,
			Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	podA, err := admin.CoreV1().Pods("default").Create(ctx, podA, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("admin creates a pod bound to %s: %v", nodeA, err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = admin.CoreV1().Pods("default").Delete(context.Background(), podA.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	statusPatch := []byte(`{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`)

	t.Run("own pod status", func(t *testing.T) {
		got, err := a.CoreV1().Pods("default").Patch(ctx, podA.Name, types.StrategicMergePatchType, statusPatch, metav1.PatchOptions{}, "status")
		if err != nil {
			t.Fatalf("node patches the status of a pod bound to it: %v", err)
		}
		if got.Status.Phase != corev1.PodRunning {
			t.Errorf("phase after patch = %s, want Running", got.Status.Phase)
		}
	})

	forbidden := []struct {
		name string
		do   func() error
	}{
		{"other node's Node", func() error {
			_, err := b.CoreV1().Nodes().Patch(ctx, nodeA, types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"other node's Node status", func() error {
			_, err := b.CoreV1().Nodes().Patch(ctx, nodeA, types.StrategicMergePatchType, []byte(`{"status":{"conditions":[{"type":"Ready","status":"False"}]}}`), metav1.PatchOptions{}, "status")
			return err
		}},
		{"create a Node for another name", func() error {
			_, err := b.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kubenode-test-c")}}, metav1.CreateOptions{})
			return err
		}},
		{"other node's Lease", func() error {
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kubenode-test-c"), Namespace: corev1.NamespaceNodeLease}}
			_, err := b.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease, metav1.CreateOptions{})
			return err
		}},
		{"other node's pod status", func() error {
			_, err := b.CoreV1().Pods("default").Patch(ctx, podA.Name, types.StrategicMergePatchType, statusPatch, metav1.PatchOptions{}, "status")
			return err
		}},
		{"read another node's pod", func() error {
			_, err := b.CoreV1().Pods("default").Get(ctx, podA.Name, metav1.GetOptions{})
			return err
		}},
	}
	for _, tc := range forbidden {
		t.Run("forbidden: "+tc.name, func(t *testing.T) {
			err := tc.do()
			if !apierrors.IsForbidden(err) {
				t.Errorf("got %v, want Forbidden", err)
			}
		})
	}
}

func TestServiceGetsEndpointSlice(t *testing.T) {
	c := needCluster(t)
	ctx := ctxFor(t, time.Minute)
	admin := adminClient(t, c)
	nodeName := uniqueName("kubenode-test-n")
	nc := registerNode(t, c, nodeName)
	app := uniqueName("app")

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: uniqueName("svc"), Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	svc, err := admin.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Services("default").Delete(context.Background(), svc.Name, metav1.DeleteOptions{})
	})
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Fatalf("service got no cluster IP: %q", svc.Spec.ClusterIP)
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kubenode-test-pod"), Namespace: "default", Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:   nodeName,
			Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
	pod, err = admin.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = admin.CoreV1().Pods("default").Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	// The node reports the pod running and ready, as its kubelet would.
	const podIP = "10.244.7.9"
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     podIP,
		PodIPs:    []corev1.PodIP{{IP: podIP}},
		HostIP:    "127.0.0.1",
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	if _, err := nc.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("node reports pod status: %v", err)
	}

	eventually(t, 30*time.Second, "EndpointSlice with the ready pod", func(ctx context.Context) (bool, error) {
		slices, err := admin.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
		if err != nil {
			return false, err
		}
		for _, s := range slices.Items {
			if len(s.Ports) != 1 || s.Ports[0].Port == nil || *s.Ports[0].Port != 8080 {
				continue
			}
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) == 1 && ep.Addresses[0] == podIP && ep.Conditions.Ready != nil && *ep.Conditions.Ready &&
					ep.NodeName != nil && *ep.NodeName == nodeName {
					return true, nil
				}
			}
		}
		return false, nil
	})
}

func TestNamespaceGetsServiceAccountAndRootCA(t *testing.T) {
	c := needCluster(t)
	ctx := ctxFor(t, 2*time.Minute)
	admin := adminClient(t, c)
	caPEM, err := os.ReadFile(c.CACertFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", uniqueName("kubenode-test-ns")} {
		t.Run(ns, func(t *testing.T) {
			if ns != "default" {
				if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 30*time.Second, "default ServiceAccount", func(ctx context.Context) (bool, error) {
				_, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
				return err == nil, nil
			})
			eventually(t, 30*time.Second, "kube-root-ca.crt ConfigMap", func(ctx context.Context) (bool, error) {
				cm, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
				if err != nil {
					return false, nil
				}
				if cm.Data["ca.crt"] != string(caPEM) {
					return false, fmt.Errorf("kube-root-ca.crt holds a different CA than %s", c.CACertFile())
				}
				return true, nil
			})
			if ns == "default" {
				return
			}
			// Pods need TokenRequest for their projected service account token.
			tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			if err != nil || tr.Status.Token == "" {
				t.Fatalf("TokenRequest for %s/default: %v", ns, err)
			}
			// Deletion finishes only when the namespace controller runs.
			if err := admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, time.Minute, "namespace deleted", func(ctx context.Context) (bool, error) {
				_, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
		})
	}
}

func TestKubeProxyIdentity(t *testing.T) {
	c := needCluster(t)
	ctx := ctxFor(t, 30*time.Second)
	kp := clientFor(t, c, c.KubeProxyKubeconfig())
	allowed := []struct {
		name string
		do   func() error
	}{
		{"list services", func() error {
			_, err := kp.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list endpointslices", func() error {
			_, err := kp.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list nodes", func() error {
			_, err := kp.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		}},
		{"watch services", func() error {
			w, err := kp.CoreV1().Services("").Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
	}
	for _, tc := range allowed {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); err != nil {
				t.Errorf("kube-proxy identity: %v", err)
			}
		})
	}
	t.Run("forbidden: create service", func(t *testing.T) {
		_, err := kp.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: uniqueName("svc")},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("got %v, want Forbidden", err)
		}
	})
}

func TestReadyNodeIsUntaintedAndGetsPods(t *testing.T) {
	c := needCluster(t)
	ctx := ctxFor(t, 2*time.Minute)
	admin := adminClient(t, c)
	nodeName := uniqueName("kubenode-test-r")
	notReady := corev1.Taint{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}
	registerNode(t, c, nodeName, notReady)

	eventually(t, time.Minute, "node-lifecycle lifts the not-ready taint and node-ipam assigns a pod CIDR", func(ctx context.Context) (bool, error) {
		n, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, tt := range n.Spec.Taints {
			if tt.Key == notReady.Key {
				return false, nil
			}
		}
		return n.Spec.PodCIDR != "", nil
	})

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kubenode-test-pod"), Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": nodeName},
			Containers:   []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	pod, err := admin.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = admin.CoreV1().Pods("default").Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	eventually(t, 30*time.Second, "scheduler binds the pod to the node", func(ctx context.Context) (bool, error) {
		p, err := admin.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Spec.NodeName != "" && p.Spec.NodeName != nodeName {
			return false, fmt.Errorf("pod bound to %s, want %s", p.Spec.NodeName, nodeName)
		}
		return p.Spec.NodeName == nodeName, nil
	})
}

func TestAttach(t *testing.T) {
	c := needCluster(t)
	got, err := Attach(c.StateDir())
	if err != nil {
		t.Fatal(err)
	}
	if got.Server() != c.Server() || got.PID() != c.PID() {
		t.Errorf("Attach = server %s pid %d, want %s pid %d", got.Server(), got.PID(), c.Server(), c.PID())
	}
	if _, err := Attach(t.TempDir()); err == nil {
		t.Error("Attach to an empty state dir succeeded, want an error")
	}
	if err := KillAll(t.TempDir()); err != nil {
		t.Errorf("KillAll with nothing running: %v", err)
	}
	if _, err := c.NodeKubeconfig("Not_A_Node"); err == nil {
		t.Error("NodeKubeconfig accepted an invalid node name")
	}
}

// TestDetachedLifecycleAndRestart is what `make up` and its teardown do: a
// control plane that outlives its starter, found again by state dir and
// killed; started again on the same state dir, it keeps its data and
// credentials.
func TestDetachedLifecycleAndRestart(t *testing.T) {
	needCluster(t)
	dir := t.TempDir()
	c, err := Start(context.Background(), Options{StateDir: dir, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = KillAll(dir) })
	if _, err := Start(context.Background(), Options{StateDir: dir}); err == nil {
		t.Error("a second Start on a running state dir succeeded, want an error")
	}
	att, err := Attach(dir)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"k": "v"}}
	if _, err := adminClient(t, att).CoreV1().ConfigMaps("default").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("attached cluster answers: %v", err)
	}
	if err := KillAll(dir); err != nil {
		t.Fatal(err)
	}
	if isControlPlane(c.PID()) {
		t.Errorf("pid %d still runs after KillAll", c.PID())
	}
	if _, err := Attach(dir); err == nil {
		t.Error("Attach after KillAll succeeded")
	}

	port := freePort(t)
	again, err := Start(context.Background(), Options{StateDir: dir, APIServerPort: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Stop() })
	if want := fmt.Sprintf("https://127.0.0.1:%d", port); again.Server() != want {
		t.Errorf("server = %s, want %s", again.Server(), want)
	}
	got, err := adminClient(t, again).CoreV1().ConfigMaps("default").Get(t.Context(), "kept", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Errorf("ConfigMap from before the restart: %v, %v", got, err)
	}
	if err := again.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A test binary killed by its timeout cannot call Stop; the control plane
// it started must notice and go away by itself rather than leak.
func TestControlPlaneExitsWithItsParent(t *testing.T) {
	needCluster(t)
	dir := t.TempDir()
	// sh stands in for the test binary: it starts the program the way
	// Start does and is then killed without a chance to clean up.
	sh := exec.Command("/bin/sh", "-c", `"$0" --state-dir="$1" --exit-with-parent >"$1/log" 2>&1 & wait`,
		os.Getenv(BinaryEnv), dir)
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = KillAll(dir) })
	eventually(t, 2*time.Minute, "ready", func(context.Context) (bool, error) {
		_, err := readReady(dir)
		return err == nil, nil
	})
	pid, ok := runningPID(dir)
	if !ok {
		t.Fatal("no running control plane after ready")
	}
	_ = sh.Process.Kill()
	_ = sh.Wait()
	eventually(t, 30*time.Second, "orphaned control plane exits", func(context.Context) (bool, error) {
		return !isControlPlane(pid), nil
	})
	if _, err := os.Stat(filepath.Join(dir, pidFile)); !os.IsNotExist(err) {
		t.Errorf("pidfile left behind after a clean shutdown: %v", err)
	}
}
