package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/kubeletharness"
)

const kubeletBinEnv = "KUBENODE_KUBELET_BIN"

// TestServiceOnRealNode runs our kubelet and kube-proxy (nftables, host network namespace, as
// on a real node) against the real control plane: a Deployment of the echo image behind a
// ClusterIP Service. Each pod must answer through the ClusterIP from the node within 1 s of
// turning Ready, and deleting a pod (with a preStop sleep, as users write for graceful
// removal) must not fail one request of a concurrent request loop.
//
// kube-proxy's table is the host's inet "kubenode": a `make up` node must not be running.
func TestServiceOnRealNode(t *testing.T) {
	requireRoot(t)
	kubelet := binFromEnv(t, kubeletBinEnv)
	binFromEnv(t, kubeProxyBinEnv)
	kubeletharness.SkipWithoutNode(t)
	if hostHasTable(t, "kubenode") {
		t.Fatal("the host already has nftables table inet kubenode: another kube-proxy (make up?) runs here; make down first")
	}
	ctx := context.Background()
	log := zap.NewNop()
	id := randomHex(t, 3)
	sd := t.TempDir()
	cp, admin := startControlPlane(t, sd)

	cgroupRoot := "/kubenode-test-" + id
	// Registered after the control plane's cleanup and before the agents', so containerd's
	// teardown runs after the agents stopped and before the control plane does.
	env, _ := kubeletharness.StartRuntime(t, sd, "10.246", cgroupRoot, log)
	podCIDR := env.PodCIDR()

	ip := hostIPv4()
	keepServiceTrafficLocal(t, ip)

	nodeName := "kubenode-test-node-" + id
	nodeKubeconfig, err := cp.NodeKubeconfig(nodeName)
	if err != nil {
		t.Fatal(err)
	}
	startHostProcess(t, kubelet, filepath.Join(sd, "kubelet.log"),
		"--kubeconfig="+nodeKubeconfig, "--hostname-override="+nodeName, "--node-ip="+ip,
		"--root-dir="+filepath.Join(sd, "kubelet"), "--container-runtime-endpoint="+env.Endpoint(),
		"--cgroup-root="+cgroupRoot, "--fail-swap-on=false", "--cluster-dns=10.96.0.10", "--cluster-domain=cluster.local",
		fmt.Sprintf("--port=%d", freePort(t)), fmt.Sprintf("--healthz-port=%d", freePort(t)))
	t.Cleanup(func() {
		// Registered first, so it runs after kube-proxy stopped.
		out, err := exec.Command(os.Getenv(kubeProxyBinEnv), "cleanup").CombinedOutput()
		if err != nil {
			t.Errorf("kube-proxy cleanup: %v\n%s", err, out)
		}
	})
	startHostProcess(t, os.Getenv(kubeProxyBinEnv), filepath.Join(sd, "kube-proxy.log"),
		"--kubeconfig="+cp.KubeProxyKubeconfig(), "--hostname-override="+nodeName, "--proxy-mode=nftables",
		"--cluster-cidr="+podCIDR,
		// The default minSyncPeriod (1s) with no burst holds a change that follows another
		// sync within 1 s for up to 1 s, so three pods turning Ready close together cannot all
		// be programmed within 1 s of their turn; 250ms keeps the promise testable.
		"--nftables-min-sync-period=250ms",
		fmt.Sprintf("--healthz-bind-address=127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", freePort(t)))

	eventually(t, 60*time.Second, 250*time.Millisecond, "node Ready", func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready")
	})

	ns := namespace(t, admin, "echo")
	eventually(t, 30*time.Second, 250*time.Millisecond, "default service account", func() error {
		_, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	labels := map[string]string{"app": "echo"}
	svc, err := admin.CoreV1().Services(ns).Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
		Spec:       v1.ServiceSpec{Selector: labels, Ports: []v1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:80/", svc.Spec.ClusterIP)

	// Watch before creating, so that every pod's turn to Ready is seen as it happens.
	w, err := admin.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	readyAt := map[string]time.Time{}
	var mu sync.Mutex
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*v1.Pod)
			if !ok || ev.Type == watch.Deleted || !podReady(p) {
				continue
			}
			mu.Lock()
			if _, seen := readyAt[p.Name]; !seen {
				readyAt[p.Name] = time.Now()
			}
			mu.Unlock()
		}
	}()

	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(10)),
					Containers: []v1.Container{{
						Name: "echo", Image: images.Echo, ImagePullPolicy: v1.PullIfNotPresent,
						Ports: []v1.ContainerPort{{ContainerPort: 8080}},
						ReadinessProbe: &v1.Probe{
							ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
						// Stay serving while kube-proxy takes the endpoint out of rotation.
						Lifecycle: &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: 2}}},
					}},
				},
			},
		},
	}
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	t.Run("ReadyPodsAnswerWithin1s", func(t *testing.T) {
		answeredAt := map[string]time.Time{}
		deadline := time.Now().Add(2 * time.Minute)
		for len(answeredAt) < 3 {
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("within 2 min, pods Ready %v, answered through %s %v", readyAt, url, answeredAt)
			}
			mu.Lock()
			nReady := len(readyAt)
			mu.Unlock()
			if nReady == 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			body, err := get(hc, url)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if _, ok := answeredAt[body]; !ok {
				answeredAt[body] = time.Now()
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for pod, at := range answeredAt {
			r, ok := readyAt[pod]
			if !ok {
				t.Errorf("%s answered through the Service before it was seen Ready", pod)
				continue
			}
			lag := at.Sub(r)
			t.Logf("%s answered through %s %s after turning Ready", pod, url, lag.Round(time.Millisecond))
			if lag > time.Second {
				t.Errorf("%s answered %s after turning Ready, want within 1s", pod, lag.Round(time.Millisecond))
			}
		}
	})

	t.Run("DeletedPodLeavesWithoutFailedRequests", func(t *testing.T) {
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("list pods: %v (%d)", err, len(pods.Items))
		}
		victim := pods.Items[0].Name
		var total, failed atomic.Int64
		var lastVictim atomic.Int64 // unix nanos of the victim's last answer
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var firstErr atomic.Value
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				body, err := get(hc, url)
				total.Add(1)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					if failed.Add(1) >= 10 {
						return // enough to fail the test; stop sending
					}
					continue
				}
				if body == victim {
					lastVictim.Store(time.Now().UnixNano())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		time.Sleep(500 * time.Millisecond)
		deleted := time.Now()
		if err := admin.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, 250*time.Millisecond, "pod "+victim+" gone", func() error {
			_, err := admin.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{})
			if err == nil {
				return errors.New("still there")
			}
			return nil
		})
		time.Sleep(time.Second)
		close(stop)
		wg.Wait()
		if v := lastVictim.Load(); v != 0 && time.Unix(0, v).After(deleted) {
			t.Logf("%s last answered %s after its deletion", victim, time.Unix(0, v).Sub(deleted).Round(time.Millisecond))
		}
		t.Logf("%d requests while %s was deleted, %d failed", total.Load(), victim, failed.Load())
		if !hostHasTable(t, "kubenode") {
			t.Fatal("the host's nftables table kubenode vanished during the test: another test's node teardown deletes kubenode* tables; run the suites one at a time")
		}
		if failed.Load() > 0 {
			t.Errorf("%d of %d requests failed while a pod was deleted (first: %v)", failed.Load(), total.Load(), firstErr.Load())
		}
	})
}

func get(hc *http.Client, url string) (string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

func podReady(p *v1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady && c.Status == v1.ConditionTrue {
			return true
		}
	}
	return false
}

// startHostProcess runs bin in the host's namespaces until the test ends.
func startHostProcess(t *testing.T, bin, logPath string, args ...string) {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttrPgid()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &process{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.dumpLog(t)
		}
	})
}

func hostHasTable(t *testing.T, name string) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	ts, err := c.ListTables()
	if err != nil {
		t.Fatalf("list nftables tables: %v", err)
	}
	for _, tb := range ts {
		if tb.Name == name {
			return true
		}
	}
	return false
}

// hostIPv4 is the address of the interface with the default route (UDP connect sends nothing).
func hostIPv4() string {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
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

// serviceCIDR is the control plane's --service-cluster-ip-range.
const serviceCIDR = "10.96.0.0/16"

// keepServiceTrafficLocal routes the Service range to lo (with the node's address as source)
// while the test runs. A node needs some route covering Service IPs for its own connections
// to reach the nat output hook; with this one, should kube-proxy's table be missing,
// requests to a ClusterIP die on this host instead of leaving by the default route.
func keepServiceTrafficLocal(t *testing.T, src string) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR(serviceCIDR)
	r := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Src: net.ParseIP(src), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteAdd(r); err != nil {
		t.Fatalf("route %s dev lo: %v (is a make up node running? make down first)", serviceCIDR, err)
	}
	t.Cleanup(func() {
		if err := netlink.RouteDel(r); err != nil {
			t.Errorf("delete route %s dev lo: %v", serviceCIDR, err)
		}
	})
}
