package proxier

import (
	"context"
	"net/netip"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// TestCoreAgainstFakeAPI runs informers + proxier against client-go's fake
// clientset: what a user creates through the API reaches the dataplane, and
// a later endpoint change is a partial sync naming only that service.
func TestCoreAgainstFakeAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(&v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "me"},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.1.5"}}},
	})
	dp := newFakeDataplane()
	p, err := New(zap.NewNop(), Config{NodeName: "me", SyncPeriod: time.Hour}, Deps{Dataplanes: map[plan.Family]Dataplane{plan.IPv4: dp}})
	if err != nil {
		t.Fatal(err)
	}
	inf, err := NewInformers(client, "me", 0, p)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { inf.Run(ctx); done <- struct{}{} }()
	go func() { _ = p.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	if c := dp.next(t, 2*time.Second); !c.full || len(c.plan.Services) != 0 {
		t.Fatalf("initial sync full=%v services=%v", c.full, c.plan.Names())
	}

	other := service("other", "10.96.0.2", v1.ProtocolTCP)
	web := service("web", "10.96.0.1", v1.ProtocolTCP)
	web.Spec.Type = v1.ServiceTypeNodePort
	web.Spec.Ports[0].NodePort = 30080
	ignored := service("elsewhere", "10.96.0.3", v1.ProtocolTCP)
	ignored.Labels = map[string]string{"service.kubernetes.io/service-proxy-name": "another-proxy"}
	for _, s := range []*v1.Service{web, other, ignored} {
		if _, err := client.CoreV1().Services("ns").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	slice := endpointSlice("web", v1.ProtocolTCP, "me", "10.0.0.1", "10.0.0.2")
	slice.Annotations = map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": time.Now().Add(-2 * time.Second).Format(time.RFC3339)}
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Within 1 s the dataplane has web with both endpoints on the node port.
	deadline := time.After(time.Second)
	var got *plan.Plan
	for got == nil {
		select {
		case c := <-dp.calls:
			if s := c.plan.Services[spn("web", plan.TCP)]; s != nil && len(s.ClusterEndpoints) == 2 && c.plan.Services[spn("other", plan.TCP)] != nil {
				got = c.plan
			}
		case <-deadline:
			t.Fatal("dataplane did not receive web with 2 endpoints within 1s")
		}
	}
	s := got.Services[spn("web", plan.TCP)]
	if s.ClusterIP != netip.MustParseAddr("10.96.0.1") || s.Port != 80 || s.NodePort != 30080 || len(s.ExternalEndpoints) != 2 {
		t.Errorf("web planned as %+v", s)
	}
	if len(got.NodeIPs) != 1 || got.NodeIPs[0] != netip.MustParseAddr("192.168.1.5") {
		t.Errorf("NodeIPs = %v", got.NodeIPs)
	}
	if _, ok := got.Services[spn("elsewhere", plan.TCP)]; ok {
		t.Error("service owned by another proxy was planned")
	}

	// The slice's trigger time reached the programming-latency metric.
	var m dto.Metric
	if err := p.metrics.programmingLatency.Write(&m); err != nil {
		t.Fatal(err)
	}
	if h := m.GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() < 1 {
		t.Errorf("network programming latency: %d samples, sum %.1fs; want 1 sample of about 2s", h.GetSampleCount(), h.GetSampleSum())
	}

	// Change one endpoint: a partial sync naming only web.
	slice.Endpoints[1].Addresses = []string{"10.0.0.3"}
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := dp.next(t, time.Second)
	if c.full || len(c.changed) != 1 {
		t.Fatalf("sync after endpoint change: full=%v changed=%v, want partial naming web", c.full, c.changed)
	}
	if _, ok := c.changed[spn("web", plan.TCP)]; !ok {
		t.Errorf("changed = %v, want web", c.changed)
	}
	eps := c.plan.Services[spn("web", plan.TCP)].ClusterEndpoints
	if len(eps) != 2 || eps[1].IP != netip.MustParseAddr("10.0.0.3") {
		t.Errorf("web endpoints = %v", eps)
	}
	if c.plan.Services[spn("other", plan.TCP)] != got.Services[spn("other", plan.TCP)] {
		t.Error("unchanged service other was rebuilt")
	}
}
