package proxier

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

type syncCall struct {
	plan    *plan.Plan
	changed map[plan.ServicePortName]struct{}
	full    bool
	at      time.Time
}

// fakeDataplane records syncs; it fails the next `fail` syncs.
type fakeDataplane struct {
	mu    sync.Mutex
	fail  int
	calls chan syncCall
}

var _ Dataplane = (*fakeDataplane)(nil)

func newFakeDataplane() *fakeDataplane { return &fakeDataplane{calls: make(chan syncCall, 100)} }

func (f *fakeDataplane) Sync(_ context.Context, p *plan.Plan, changed map[plan.ServicePortName]struct{}, full bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls <- syncCall{plan: p, changed: changed, full: full, at: time.Now()}
	if f.fail > 0 {
		f.fail--
		return errors.New("injected failure")
	}
	return nil
}

func (f *fakeDataplane) Cleanup(context.Context) error { return nil }

func (f *fakeDataplane) next(t *testing.T, within time.Duration) syncCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(within):
		t.Fatalf("no sync within %s", within)
		return syncCall{}
	}
}

func (f *fakeDataplane) none(t *testing.T, during time.Duration) {
	t.Helper()
	select {
	case c := <-f.calls:
		t.Fatalf("unexpected sync (full=%v changed=%v)", c.full, c.changed)
	case <-time.After(during):
	}
}

type fakeHealth struct {
	mu              sync.Mutex
	queued, updated int
	nodeUnhealthy   bool
}

func (h *fakeHealth) SetNodeHealthy(ok bool) { h.mu.Lock(); h.nodeUnhealthy = !ok; h.mu.Unlock() }

func (h *fakeHealth) QueuedUpdate() { h.mu.Lock(); h.queued++; h.mu.Unlock() }
func (h *fakeHealth) Updated()      { h.mu.Lock(); h.updated++; h.mu.Unlock() }

type fakeServiceHealth struct {
	mu    sync.Mutex
	addrs []netip.Addr
	ports map[types.NamespacedName]uint16
	local map[types.NamespacedName]int
}

func (h *fakeServiceHealth) SyncServices(addrs []netip.Addr, ports map[types.NamespacedName]uint16, local map[types.NamespacedName]int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addrs, h.ports, h.local = addrs, ports, local
	return nil
}

// wait waits until the health checks listen on exactly addrs (the proxier
// syncs them right after the dataplane).
func (h *fakeServiceHealth) wait(t *testing.T, addrs ...string) {
	t.Helper()
	want := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		want[i] = netip.MustParseAddr(a)
	}
	deadline := time.Now().Add(time.Second)
	for {
		h.mu.Lock()
		got := h.addrs
		h.mu.Unlock()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health checks listen on %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

func service(name, ip string, proto v1.Protocol) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []v1.ServicePort{{Name: "p", Port: 80, Protocol: proto}}},
	}
}

func endpointSlice(svcName string, proto v1.Protocol, nodeName string, ips ...string) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svcName + "-abc", Labels: map[string]string{discovery.LabelServiceName: svcName}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("p"), Port: ptr(int32(8080)), Protocol: ptr(proto)}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{ip}, NodeName: ptr(nodeName)})
	}
	return s
}

func spn(name string, proto plan.Protocol) plan.ServicePortName {
	return plan.ServicePortName{Namespace: "ns", Name: name, Port: "p", Protocol: proto}
}

type harness struct {
	p      *Proxier
	dp     *fakeDataplane
	health *fakeHealth
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, cfg Config, deps Deps) *harness {
	t.Helper()
	if cfg.NodeName == "" {
		cfg.NodeName = "me"
	}
	h := &harness{dp: newFakeDataplane(), health: &fakeHealth{}, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	deps.Dataplanes = map[plan.Family]Dataplane{plan.IPv4: h.dp}
	deps.Registerer = h.reg
	deps.Health = h.health
	p, err := New(zap.NewNop(), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { defer close(h.done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-h.done })
	return h
}

func TestNewValidates(t *testing.T) {
	dp := map[plan.Family]Dataplane{plan.IPv4: newFakeDataplane()}
	tests := []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{name: "no node name", cfg: Config{SyncPeriod: time.Second}, deps: Deps{Dataplanes: dp}},
		{name: "no sync period", cfg: Config{NodeName: "n"}, deps: Deps{Dataplanes: dp}},
		{name: "min above sync period", cfg: Config{NodeName: "n", SyncPeriod: time.Second, MinSyncPeriod: time.Minute}, deps: Deps{Dataplanes: dp}},
		{name: "no dataplane", cfg: Config{NodeName: "n", SyncPeriod: time.Second}},
		{name: "unknown family", cfg: Config{NodeName: "n", SyncPeriod: time.Second}, deps: Deps{Dataplanes: map[plan.Family]Dataplane{"IPv5": newFakeDataplane()}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(zap.NewNop(), tc.cfg, tc.deps); err == nil {
				t.Error("New accepted invalid input")
			}
		})
	}
}

func TestRunnerWaitsForSyncThenPartialSyncs(t *testing.T) {
	svcHealth := &fakeServiceHealth{}
	h := start(t, Config{SyncPeriod: time.Hour}, Deps{ServiceHealth: svcHealth})
	a, b := service("a", "10.96.0.1", v1.ProtocolTCP), service("b", "10.96.0.2", v1.ProtocolUDP)
	h.p.OnServiceUpdate(nil, a)
	h.p.OnServiceUpdate(nil, b)
	h.p.OnServicesSynced()
	h.dp.none(t, 100*time.Millisecond) // slices not synced yet
	h.health.mu.Lock()
	if h.health.queued == 0 || h.health.updated != 0 {
		t.Errorf("before the first sync: queued %d updated %d; want the first sync pending", h.health.queued, h.health.updated)
	}
	h.health.mu.Unlock()
	h.p.OnEndpointSliceUpdate(endpointSlice("a", v1.ProtocolTCP, "me", "10.0.0.1"), false)
	h.p.OnEndpointSlicesSynced()

	first := h.dp.next(t, time.Second)
	if !first.full || len(first.plan.Services) != 2 {
		t.Fatalf("first sync full=%v services=%d, want full with 2", first.full, len(first.plan.Services))
	}
	if eps := first.plan.Services[spn("a", plan.TCP)].ClusterEndpoints; len(eps) != 1 || eps[0].IP != netip.MustParseAddr("10.0.0.1") || !eps[0].Local {
		t.Errorf("a's endpoints = %v", eps)
	}
	if got := first.plan.Services[spn("b", plan.UDP)].ClusterTarget(); got != plan.TargetReject {
		t.Errorf("b without endpoints: target %s, want reject", got)
	}

	h.p.OnEndpointSliceUpdate(endpointSlice("b", v1.ProtocolUDP, "other", "10.0.0.2"), false)
	second := h.dp.next(t, time.Second)
	if second.full || len(second.changed) != 1 {
		t.Fatalf("second sync full=%v changed=%v, want partial naming b", second.full, second.changed)
	}
	if _, ok := second.changed[spn("b", plan.UDP)]; !ok {
		t.Errorf("changed = %v, want b", second.changed)
	}
	if second.plan.Services[spn("a", plan.TCP)] != first.plan.Services[spn("a", plan.TCP)] {
		t.Error("unchanged service a was rebuilt")
	}

	// Updates that change nothing the proxy uses cause no sync.
	relabeled := a.DeepCopy()
	relabeled.Labels = map[string]string{"x": "y"}
	h.p.OnServiceUpdate(a, relabeled)
	h.dp.none(t, 100*time.Millisecond)

	h.p.OnServiceUpdate(b, nil)
	third := h.dp.next(t, time.Second)
	if _, ok := third.plan.Services[spn("b", plan.UDP)]; ok || len(third.changed) != 1 {
		t.Errorf("after deleting b: services %v changed %v", third.plan.Names(), third.changed)
	}
	if v := testutil.ToFloat64(h.p.metrics.servicesTotal); v != 4 {
		t.Errorf("service changes total = %v, want 4", v)
	}
	if v := testutil.ToFloat64(h.p.metrics.lastSync); v == 0 {
		t.Error("last sync timestamp not set")
	}
	h.health.mu.Lock()
	if h.health.updated != 3 {
		t.Errorf("health updated %d times, want 3", h.health.updated)
	}
	h.health.mu.Unlock()
}

func TestRunnerMinSyncPeriodBurstsTwoThenCoalesces(t *testing.T) {
	h := start(t, Config{SyncPeriod: time.Hour, MinSyncPeriod: 300 * time.Millisecond}, Deps{})
	h.p.OnServicesSynced()
	h.p.OnEndpointSlicesSynced()
	first := h.dp.next(t, time.Second)
	// A change right after a sync is not held back: the runner allows a burst of two.
	h.p.OnServiceUpdate(nil, service("a", "10.96.0.1", v1.ProtocolTCP))
	second := h.dp.next(t, time.Second)
	if gap := second.at.Sub(first.at); gap >= 300*time.Millisecond {
		t.Errorf("second sync %s after the first, want it at once (burst of two)", gap)
	}
	// A third sync waits until minSyncPeriod after the first, coalescing what arrives meanwhile.
	for i, n := range []string{"b", "c"} {
		h.p.OnServiceUpdate(nil, service(n, "10.96.0."+string(rune('2'+i)), v1.ProtocolTCP))
	}
	third := h.dp.next(t, 2*time.Second)
	if gap := third.at.Sub(first.at); gap < 300*time.Millisecond {
		t.Errorf("third sync %s after the first, want >= minSyncPeriod 300ms", gap)
	}
	if len(third.changed) != 2 {
		t.Errorf("changed = %v, want b and c coalesced into one sync", third.changed)
	}
	h.dp.none(t, 400*time.Millisecond)
}

func TestRunnerPeriodicFullResync(t *testing.T) {
	h := start(t, Config{SyncPeriod: 200 * time.Millisecond}, Deps{})
	h.p.OnServicesSynced()
	h.p.OnEndpointSlicesSynced()
	if c := h.dp.next(t, time.Second); !c.full {
		t.Fatal("first sync not full")
	}
	if c := h.dp.next(t, time.Second); !c.full {
		t.Fatal("periodic sync not full")
	}
}

func TestRunnerRetriesFailuresWithFullSync(t *testing.T) {
	h := start(t, Config{SyncPeriod: time.Hour, RetryInitial: 50 * time.Millisecond}, Deps{})
	h.p.OnServicesSynced()
	h.p.OnEndpointSlicesSynced()
	h.dp.next(t, time.Second)
	h.dp.mu.Lock()
	h.dp.fail = 2
	h.dp.mu.Unlock()
	h.p.OnServiceUpdate(nil, service("a", "10.96.0.1", v1.ProtocolTCP))
	failed := h.dp.next(t, time.Second)
	if failed.full {
		t.Error("a change after a good sync should be partial")
	}
	retry1 := h.dp.next(t, time.Second)
	retry2 := h.dp.next(t, time.Second)
	if !retry1.full || !retry2.full {
		t.Error("retries after failure must be full")
	}
	if d1, d2 := retry1.at.Sub(failed.at), retry2.at.Sub(retry1.at); d1 < 50*time.Millisecond || d2 < 100*time.Millisecond {
		t.Errorf("back-off %s then %s, want >= 50ms then >= 100ms", d1, d2)
	}
	if _, ok := retry2.plan.Services[spn("a", plan.TCP)]; !ok {
		t.Error("retried plan lost the service")
	}
	h.dp.none(t, 300*time.Millisecond)
	if v := testutil.ToFloat64(h.p.metrics.syncFailures); v != 2 {
		t.Errorf("failures = %v, want 2", v)
	}
}

func TestRunnerServiceHealthAndNode(t *testing.T) {
	svcHealth := &fakeServiceHealth{}
	h := start(t, Config{SyncPeriod: time.Hour}, Deps{ServiceHealth: svcHealth})
	lb := service("lb", "10.96.0.9", v1.ProtocolTCP)
	lb.Spec.Type = v1.ServiceTypeLoadBalancer
	lb.Spec.Ports[0].NodePort = 30080
	lb.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	lb.Spec.HealthCheckNodePort = 32123
	h.p.OnNodeUpdate(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "me"}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.1.5"}}}})
	h.p.OnServiceUpdate(nil, lb)
	h.p.OnEndpointSliceUpdate(endpointSlice("lb", v1.ProtocolTCP, "me", "10.0.0.1", "10.0.0.2"), false)
	h.p.OnServicesSynced()
	h.p.OnEndpointSlicesSynced()
	c := h.dp.next(t, time.Second)
	if len(c.plan.NodeIPs) != 1 || c.plan.NodeIPs[0] != netip.MustParseAddr("192.168.1.5") {
		t.Errorf("NodeIPs = %v", c.plan.NodeIPs)
	}
	key := types.NamespacedName{Namespace: "ns", Name: "lb"}
	svcHealth.wait(t, "192.168.1.5")
	svcHealth.mu.Lock()
	if svcHealth.ports[key] != 32123 || svcHealth.local[key] != 2 {
		t.Errorf("service health ports %v local %v", svcHealth.ports, svcHealth.local)
	}
	svcHealth.mu.Unlock()

	// A new node address means a full rebuild.
	h.p.OnNodeUpdate(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "me"}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.1.6"}}}})
	c = h.dp.next(t, time.Second)
	if !c.full || c.plan.NodeIPs[0] != netip.MustParseAddr("192.168.1.6") {
		t.Errorf("after node change: full=%v NodeIPs=%v", c.full, c.plan.NodeIPs)
	}
	svcHealth.wait(t, "192.168.1.6") // the health checks follow the node-port address
	// Other nodes are ignored.
	h.p.OnNodeUpdate(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other", DeletionTimestamp: &metav1.Time{}}})
	h.dp.none(t, 100*time.Millisecond)
	// A Node being deleted turns healthz's nodeHealthy off; rules stay.
	h.p.OnNodeUpdate(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "me", DeletionTimestamp: &metav1.Time{Time: time.Now()}}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.1.6"}}}})
	h.health.mu.Lock()
	if !h.health.nodeUnhealthy {
		t.Error("deleting node not reported unhealthy")
	}
	h.health.mu.Unlock()
}

type fakeAddrs struct{ calls int }

func (f *fakeAddrs) LocalAddrs() ([]netip.Addr, error) {
	f.calls++
	return []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("172.16.0.1")}, nil
}

func TestRunnerNodeAddresses(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantIPs   []string
		wantCalls bool
	}{
		{name: "no Node: fallback address", cfg: Config{FallbackNodeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, wantIPs: []string{"192.0.2.1"}},
		{name: "CIDRs select interface addresses", cfg: Config{Plan: plan.Config{NodePortCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}, wantIPs: []string{"10.1.2.3"}, wantCalls: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addrs := &fakeAddrs{}
			tc.cfg.SyncPeriod = time.Hour
			h := start(t, tc.cfg, Deps{Addrs: addrs})
			h.p.OnServicesSynced()
			h.p.OnEndpointSlicesSynced()
			c := h.dp.next(t, time.Second)
			var got []string
			for _, a := range c.plan.NodeIPs {
				got = append(got, a.String())
			}
			if len(got) != len(tc.wantIPs) || (len(got) > 0 && got[0] != tc.wantIPs[0]) {
				t.Errorf("NodeIPs = %v, want %v", got, tc.wantIPs)
			}
			h.cancel()
			<-h.done
			if (addrs.calls > 0) != tc.wantCalls {
				t.Errorf("interface addresses listed %d times, want calls=%v", addrs.calls, tc.wantCalls)
			}
		})
	}
}

type fakeCleaner struct {
	mu    sync.Mutex
	plans []*plan.Plan
}

func (f *fakeCleaner) CleanStaleFlows(_ context.Context, p *plan.Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans = append(f.plans, p)
	return nil
}

func (f *fakeCleaner) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.plans) }

func TestRunnerCleansConntrackOnUDPChanges(t *testing.T) {
	ct := &fakeCleaner{}
	h := start(t, Config{SyncPeriod: time.Hour}, Deps{Conntrack: ct})
	h.p.OnServiceUpdate(nil, service("dns", "10.96.0.10", v1.ProtocolUDP))
	h.p.OnServiceUpdate(nil, service("web", "10.96.0.11", v1.ProtocolTCP))
	h.p.OnServicesSynced()
	h.p.OnEndpointSlicesSynced()
	h.dp.next(t, time.Second)
	if n := ct.count(); n != 1 {
		t.Fatalf("full sync cleaned conntrack %d times, want 1", n)
	}
	h.p.OnEndpointSliceUpdate(endpointSlice("web", v1.ProtocolTCP, "me", "10.0.0.1"), false)
	h.dp.next(t, time.Second)
	if n := ct.count(); n != 1 {
		t.Errorf("a TCP-only change cleaned conntrack (%d calls)", n)
	}
	h.p.OnEndpointSliceUpdate(endpointSlice("dns", v1.ProtocolUDP, "me", "10.0.0.2"), false)
	c := h.dp.next(t, time.Second)
	if n := ct.count(); n != 2 {
		t.Fatalf("a UDP change did not clean conntrack (%d calls)", n)
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.plans[1] != c.plan {
		t.Error("conntrack cleaned against a different plan than the one synced")
	}
}

func TestRunnerHealthCheckAddressesOnAllAddresses(t *testing.T) {
	svcHealth := &fakeServiceHealth{}
	h := start(t, Config{SyncPeriod: time.Hour, Plan: plan.Config{NodePortCIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}},
		Deps{ServiceHealth: svcHealth, Addrs: &fakeAddrs{}})
	h.p.OnServicesSynced()
	h.p.OnEndpointSlicesSynced()
	h.dp.next(t, time.Second)
	svcHealth.wait(t, "0.0.0.0")
}

func TestRunnerFollowsTheNodesZone(t *testing.T) {
	h := start(t, Config{SyncPeriod: time.Hour}, Deps{})
	node := func(zone string) *v1.Node {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "me", Labels: map[string]string{v1.LabelTopologyZone: zone}},
			Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.1.5"}}}}
	}
	h.p.OnNodeUpdate(node("z1"))
	h.p.OnServiceUpdate(nil, service("a", "10.96.0.1", v1.ProtocolTCP))
	h.p.OnServiceUpdate(nil, service("b", "10.96.0.2", v1.ProtocolTCP))
	hinted := endpointSlice("a", v1.ProtocolTCP, "other", "10.0.0.1", "10.0.0.2")
	hinted.Endpoints[0].Hints = &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: "z1"}}}
	hinted.Endpoints[1].Hints = &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: "z2"}}}
	h.p.OnEndpointSliceUpdate(hinted, false)
	h.p.OnEndpointSliceUpdate(endpointSlice("b", v1.ProtocolTCP, "other", "10.0.1.1"), false)
	h.p.OnServicesSynced()
	h.p.OnEndpointSlicesSynced()
	first := h.dp.next(t, time.Second)
	if got := first.plan.Services[spn("a", plan.TCP)].ClusterEndpoints; len(got) != 1 || got[0].IP != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("in z1, a's endpoints = %v, want only 10.0.0.1", got)
	}

	// Relabelling the node re-targets only the hinted service, incrementally.
	h.p.OnNodeUpdate(node("z2"))
	c := h.dp.next(t, time.Second)
	if c.full || len(c.changed) != 1 {
		t.Errorf("zone change: full=%v changed=%v, want a partial sync of a", c.full, c.changed)
	}
	if got := c.plan.Services[spn("a", plan.TCP)].ClusterEndpoints; len(got) != 1 || got[0].IP != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("in z2, a's endpoints = %v, want only 10.0.0.2", got)
	}
	// Other label changes sync nothing.
	n := node("z2")
	n.Labels["unrelated"] = "x"
	h.p.OnNodeUpdate(n)
	h.dp.none(t, 100*time.Millisecond)
}
