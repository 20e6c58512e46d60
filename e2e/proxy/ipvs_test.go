package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/kubeproxy/proxytest"
)

// TestIPVSCoreProgramsWithin1s runs kube-proxy's core with the IPVS backend in-process over
// its in-memory kernel (this host has no IPVS; the kernel behaviour is tested under qemu by
// make test-ipvs) against the real control plane, with the kube-proxy identity: a Service's
// EndpointSlice changes reach the IPVS virtual server within 1 s each.
func TestIPVSCoreProgramsWithin1s(t *testing.T) {
	cp, admin := startControlPlane(t, t.TempDir())
	ctx := context.Background()
	x, nodeName := runIPVSCore(t, cp)

	ns := namespace(t, admin, "ipvs")
	svc, err := admin.CoreV1().Services(ns).Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(backendPort)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80)
	sliceAPI := admin.DiscoveryV1().EndpointSlices(ns)

	// want waits until the virtual server's destinations are exactly backends.
	want := func(t *testing.T, start time.Time, backends ...int) {
		t.Helper()
		var exp []netip.AddrPort
		for _, b := range backends {
			exp = append(exp, netip.AddrPortFrom(netip.MustParseAddr(backendIP(b)), backendPort))
		}
		eventually(t, 5*time.Second, 5*time.Millisecond, fmt.Sprintf("%s -> %v", vip, exp), func() error {
			got, err := x.Destinations(vip)
			if err != nil {
				return err
			}
			if !slices.Equal(got, exp) {
				return fmt.Errorf("destinations %v", got)
			}
			return nil
		})
		took := time.Since(start)
		t.Logf("%s -> %v programmed %s after the change", vip, exp, took.Round(time.Millisecond))
		if took > programmingBudget {
			t.Errorf("programming took %s, want within %s", took.Round(time.Millisecond), programmingBudget)
		}
	}

	slice := endpointSlice(ns, "web-1", "web", nodeName, 1)
	steps := []struct {
		name     string
		change   func() error
		backends []int
	}{
		{"Created", func() (err error) { slice, err = sliceAPI.Create(ctx, slice, metav1.CreateOptions{}); return }, []int{1}},
		{"Scaled", func() (err error) {
			slice.Endpoints = endpointSlice(ns, "", "", nodeName, 1, 2, 3).Endpoints
			slice, err = sliceAPI.Update(ctx, slice, metav1.UpdateOptions{})
			return
		}, []int{1, 2, 3}},
		{"EndpointRemoved", func() (err error) {
			slice.Endpoints = endpointSlice(ns, "", "", nodeName, 2, 3).Endpoints
			slice, err = sliceAPI.Update(ctx, slice, metav1.UpdateOptions{})
			return
		}, []int{2, 3}},
		{"SliceDeleted", func() error { return sliceAPI.Delete(ctx, slice.Name, metav1.DeleteOptions{}) }, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			// Past minSyncPeriod since the last change: each change is measured on its own.
			time.Sleep(1100 * time.Millisecond)
			start := time.Now()
			if err := s.change(); err != nil {
				t.Fatal(err)
			}
			want(t, start, s.backends...)
		})
	}
	t.Run("ServiceDeleted", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond)
		start := time.Now()
		if err := admin.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, 5*time.Millisecond, "virtual server removed", func() error {
			if x.HasVirtualServer(vip) {
				return fmt.Errorf("%s still present", vip)
			}
			return nil
		})
		if d := time.Since(start); d > programmingBudget {
			t.Errorf("virtual server removed %s after the Service, want within %s", d.Round(time.Millisecond), programmingBudget)
		}
	})
}

// TestIPVSLoadBalancerSourceRanges: a LoadBalancer Service's loadBalancerSourceRanges, from the
// API server through kube-proxy's core, restrict its ingress IP in the IPVS mode's support rules
// (walked with a virtual packet: this host has no IPVS; the same rules carry real traffic in
// make test-ipvs), and editing the ranges follows within a second.
func TestIPVSLoadBalancerSourceRanges(t *testing.T) {
	cp, admin := startControlPlane(t, t.TempDir())
	ctx := context.Background()
	x, nodeName := runIPVSCore(t, cp)

	ns := namespace(t, admin, "ipvs-lbsr")
	svcAPI := admin.CoreV1().Services(ns)
	svc, err := svcAPI.Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, LoadBalancerSourceRanges: []string{"198.51.100.0/24"},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(backendPort)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, endpointSlice(ns, "web-1", "web", nodeName, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lbIP := netip.MustParseAddr("203.0.113.10")
	svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: lbIP.String()}}
	if svc, err = svcAPI.UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	inside, outside := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.7")
	dropped := func(src netip.Addr) bool { return x.Verdict(src, lbIP, 80, false).Drop }

	eventually(t, 5*time.Second, 5*time.Millisecond, "LB IP programmed with its source ranges", func() error {
		if !x.HasVirtualServer(netip.AddrPortFrom(lbIP, 80)) {
			return fmt.Errorf("no virtual server for %s:80", lbIP)
		}
		if !dropped(outside) {
			return fmt.Errorf("%s from outside the ranges is not dropped", lbIP)
		}
		return nil
	})
	if dropped(inside) {
		t.Fatalf("%s from %s, inside the ranges, is dropped", lbIP, inside)
	}

	time.Sleep(1100 * time.Millisecond) // past minSyncPeriod: the change is measured on its own
	start := time.Now()
	svc.Spec.LoadBalancerSourceRanges = nil
	if _, err := svcAPI.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, 5*time.Millisecond, "ranges lifted", func() error {
		if dropped(outside) {
			return fmt.Errorf("%s from %s still dropped", lbIP, outside)
		}
		return nil
	})
	if d := time.Since(start); d > programmingBudget {
		t.Errorf("ranges lifted %s after the Service update, want within %s", d.Round(time.Millisecond), programmingBudget)
	}
}

// runIPVSCore runs kube-proxy's core with the IPVS backend in-process over its in-memory kernel,
// with cp's kube-proxy identity, for a node with a fresh name, until the test ends.
func runIPVSCore(t *testing.T, cp *cluster.Cluster) (*proxytest.IPVS, string) {
	t.Helper()
	kpClient, _, err := cp.Client(cp.KubeProxyKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	nodeName := "kubenode-test-ipvs-" + randomHex(t, 3)
	x, err := proxytest.NewIPVS(kpClient, proxytest.Options{NodeName: nodeName, NodeIPs: []netip.Addr{netip.MustParseAddr(nodeIP)}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("IPVS core: %v", err)
		}
	})
	return x, nodeName
}
