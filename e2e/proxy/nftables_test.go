package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubenode/kubenode/e2e/netnstest"
)

// Addresses inside the throwaway node namespace: nothing outside it sees them.
const (
	nodeIP      = "10.200.1.1" // the node's InternalIP and the client pod's gateway
	clientPodIP = "10.200.1.2"
	clusterCIDR = "10.200.0.0/16"
	backendPort = 8080
	// programmingBudget is the promise under test: a slice change is in the kernel within 1 s.
	programmingBudget = time.Second
)

// backendIP is the address of backend pod i (1-based): 10.200.(i+1).2.
func backendIP(i int) string { return fmt.Sprintf("10.200.%d.2", i+1) }

// TestKubeProxyNFTables runs bin/kube-proxy (nftables mode) against the real control plane in a
// node network namespace with one client pod and three backend pods, and checks what a user of
// Services relies on, in order: programming latency, NodePort, healthz and metrics, endpoint
// removal, survival of an API server outage, and `kube-proxy cleanup`.
func TestKubeProxyNFTables(t *testing.T) {
	requireRoot(t)
	binFromEnv(t, kubeProxyBinEnv)
	id := randomHex(t, 3)
	stateDir := t.TempDir()
	cp, admin := startControlPlane(t, stateDir)
	ctx := context.Background()

	// The node namespace and its pods, routed (no bridge): every packet between pods crosses
	// the node namespace's forwarding path, where kube-proxy's rules act.
	nodeName := "kubenode-test-proxy-" + id
	node := netnstest.NewNamed(t, nodeName)
	sysctl(t, node, "net.ipv4.ip_forward", "1")
	// An uplink with the default route, as a real node has: without a route covering Service
	// IPs, packets to a Service without endpoints die in routing before the filter hooks.
	outside := netnstest.New(t)
	podLink(t, node, outside, "up0", "10.201.0.2/24", "10.201.0.1/24")
	if err := netnstest.Netlink(t, node).RouteAdd(&netlink.Route{Gw: net.ParseIP("10.201.0.1")}); err != nil {
		t.Fatalf("node default route: %v", err)
	}
	clientNS := netnstest.New(t)
	podLink(t, node, clientNS, "cli0", nodeIP+"/24", clientPodIP+"/24")
	for i := 1; i <= 3; i++ {
		pod := netnstest.New(t)
		podLink(t, node, pod, fmt.Sprintf("be%d", i), fmt.Sprintf("10.200.%d.1/24", i+1), backendIP(i)+"/24")
		serveName(t, pod, fmt.Sprintf(":%d", backendPort), fmt.Sprintf("backend-%d", i))
	}
	relay := netnstest.NewRelay(t, node, hostPort(t, cp.Server()))
	createNode(t, admin, nodeName, nodeIP)

	kp := startKubeProxy(t, node, filepath.Join(stateDir, "kube-proxy.log"),
		"--kubeconfig="+cp.KubeProxyKubeconfig(), "--hostname-override="+nodeName,
		"--proxy-mode=nftables", "--cluster-cidr="+clusterCIDR, "--v=2")
	// Node-local endpoints (healthz, metrics) are asked from inside the node namespace.
	nodeClient := netnstest.NewClient(node, 2*time.Second)
	// Generous: this machine may be loaded, and a late answer is not a wrong one.
	client := netnstest.NewClient(clientNS, 3*time.Second)

	eventually(t, 30*time.Second, 100*time.Millisecond, "kube-proxy healthz 200 on :10256", func() error {
		if !kp.running() {
			t.Fatalf("kube-proxy exited: %v", kp.err)
		}
		code, body, err := nodeClient.Get("http://127.0.0.1:10256/healthz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return nil
	})

	ns := namespace(t, admin, "proxy")
	svc, err := admin.CoreV1().Services(ns).Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: v1.ServiceSpec{
			// No selector: the test owns the EndpointSlices.
			Type:  v1.ServiceTypeNodePort,
			Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(backendPort), Protocol: v1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterURL := fmt.Sprintf("http://%s:80/", svc.Spec.ClusterIP)
	nodePortURL := fmt.Sprintf("http://%s:%d/", nodeIP, svc.Spec.Ports[0].NodePort)
	slices := admin.DiscoveryV1().EndpointSlices(ns)
	slice := endpointSlice(ns, "web-1", "web", nodeName, 1)

	t.Run("SliceProgrammedWithin1s", func(t *testing.T) {
		start := time.Now()
		var err error
		if slice, err = slices.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAnswers(t, client, clusterURL, start, "backend-1")
		time.Sleep(1100 * time.Millisecond) // past minSyncPeriod, so the next change is not rate-limited

		start = time.Now()
		slice.Endpoints = endpointSlice(ns, "", "", nodeName, 1, 2, 3).Endpoints
		if slice, err = slices.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAnswers(t, client, clusterURL, start, "backend-2", "backend-3")
	})

	t.Run("NodePortReachesEveryBackend", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 200 && len(seen) < 3; i++ {
			_, body, err := client.Get(nodePortURL)
			if err != nil {
				t.Fatalf("GET %s: %v", nodePortURL, err)
			}
			seen[body] = true
		}
		if len(seen) != 3 {
			t.Errorf("NodePort %s answered from %v, want backend-1..3", nodePortURL, seen)
		}
	})

	t.Run("HealthzAndMetrics", func(t *testing.T) {
		code, body, err := nodeClient.Get("http://127.0.0.1:10256/healthz")
		if err != nil || code != 200 {
			t.Errorf("healthz: %d %q %v, want 200", code, body, err)
		}
		code, body, err = nodeClient.Get("http://127.0.0.1:10249/metrics")
		if err != nil || code != 200 {
			t.Fatalf("metrics: %d %v, want 200", code, err)
		}
		for _, m := range []string{"kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_network_programming_duration_seconds"} {
			if !strings.Contains(body, m+"_count") {
				t.Errorf("metrics do not serve %s", m)
			}
		}
		// Metrics are for the node only: 127.0.0.1, not the node's address.
		if _, _, err := nodeClient.Get(fmt.Sprintf("http://%s:10249/metrics", nodeIP)); err == nil {
			t.Errorf("metrics answer on %s:10249, want 127.0.0.1 only", nodeIP)
		}
	})

	t.Run("RemovedEndpointLeavesRotationWithin1s", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond)
		start := time.Now()
		slice.Endpoints = endpointSlice(ns, "", "", nodeName, 2, 3).Endpoints
		var err error
		if slice, err = slices.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		last := waitGone(t, client, clusterURL, start, "backend-1")
		t.Logf("backend-1 last answered %s after the slice update (0: never)", last.Round(time.Millisecond))
	})

	t.Run("DeletedSliceRejectsWithin1s", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond)
		start := time.Now()
		if err := slices.Delete(ctx, slice.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Logf("slice deleted at %s", time.Now().UTC().Format("15:04:05.000"))
		var last error
		for time.Since(start) < programmingBudget {
			_, _, err := client.Get(clusterURL)
			if errors.Is(err, syscall.ECONNREFUSED) {
				t.Logf("service without endpoints rejects %s after the slice was deleted", time.Since(start).Round(time.Millisecond))
				return
			}
			last = err
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s still not rejected %s after its only slice was deleted (last: %v)", clusterURL, programmingBudget, last)
	})

	t.Run("RulesStayWhileAPIServerIsDown", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond)
		start := time.Now()
		s := endpointSlice(ns, "web-2", "web", nodeName, 1, 2, 3)
		if _, err := slices.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAnswers(t, client, clusterURL, start, "backend-1", "backend-2", "backend-3")
		if err := cp.Stop(); err != nil {
			t.Fatalf("stop control plane: %v", err)
		}
		relay.Close()
		// Long enough for watches to fail and clients to retry.
		deadline := time.Now().Add(5 * time.Second)
		n := 0
		for time.Now().Before(deadline) {
			if _, body, err := client.Get(clusterURL); err != nil || !strings.HasPrefix(body, "backend-") {
				t.Fatalf("request %d with the API server down: %q %v", n, body, err)
			}
			n++
			time.Sleep(20 * time.Millisecond)
		}
		if !kp.running() {
			t.Fatalf("kube-proxy exited when the API server went away: %v", kp.err)
		}
		t.Logf("%d requests over 5 s with the API server stopped, all answered", n)
	})

	t.Run("CleanupLeavesNoTable", func(t *testing.T) {
		kp.stop(t)
		if names := tables(t, node); !contains(names, "kubenode") {
			t.Fatalf("after kube-proxy stopped, tables %v, want kubenode to stay until cleanup", names)
		}
		cmd := exec.Command(binFromEnv(t, kubeProxyBinEnv), "cleanup")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := netnstest.Start(node, cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("kube-proxy cleanup: %v\n%s", err, out.String())
		}
		if names := tables(t, node); len(names) != 0 {
			t.Errorf("after kube-proxy cleanup the node namespace has nftables tables %v, want none", names)
		}
		if _, _, err := client.Get(clusterURL); err == nil {
			t.Errorf("%s still answers after cleanup", clusterURL)
		}
	})
}

// endpointSlice is a ready slice of backends for service svc (nodeName is where they run).
func endpointSlice(ns, name, svc, nodeName string, backends ...int) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			discovery.LabelServiceName: svc,
			discovery.LabelManagedBy:   "e2e.kubenode.io",
		}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("http"), Port: ptr(int32(backendPort)), Protocol: ptr(v1.ProtocolTCP)}},
	}
	for _, b := range backends {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{
			Addresses:  []string{backendIP(b)},
			Conditions: discovery.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			NodeName:   ptr(nodeName),
		})
	}
	return s
}

// waitAnswers sends requests until every one of want has answered, and fails if that takes
// longer than programmingBudget from start (the moment the API accepted the change).
func waitAnswers(t *testing.T, c *netnstest.Client, url string, start time.Time, want ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	var last error
	for len(missing) > 0 {
		if time.Since(start) > programmingBudget {
			t.Fatalf("%s: %v not answering %s after the change (last error: %v)", url, keys(missing), programmingBudget, last)
		}
		_, body, err := c.Get(url)
		if err != nil {
			last = err
			time.Sleep(5 * time.Millisecond)
			continue
		}
		delete(missing, body)
	}
	t.Logf("%v answering through %s %s after the change", want, url, time.Since(start).Round(time.Millisecond))
}

// waitGone waits until gone stops answering: the first request after which 100 in a row come
// from others (or fail) must be within programmingBudget of start.
func waitGone(t *testing.T, c *netnstest.Client, url string, start time.Time, gone string) time.Duration {
	t.Helper()
	var lastSeen time.Duration
	clean := 0
	for clean < 100 {
		_, body, err := c.Get(url)
		switch {
		case err != nil:
			t.Fatalf("GET %s while %s leaves: %v", url, gone, err)
		case body == gone:
			lastSeen, clean = time.Since(start), 0
		default:
			clean++
		}
		if time.Since(start) > 10*time.Second {
			break
		}
	}
	if clean < 100 || lastSeen > programmingBudget {
		t.Fatalf("%s still answered %s after the change (last at %s, %d clean requests since)", gone, url, lastSeen, clean)
	}
	return lastSeen
}

// tables lists the nftables tables in ns.
func tables(t *testing.T, ns netns.NsHandle) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	ts, err := c.ListTables()
	if err != nil {
		t.Fatalf("list nftables tables: %v", err)
	}
	var out []string
	for _, tb := range ts {
		out = append(out, tb.Name)
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
