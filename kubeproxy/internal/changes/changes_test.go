package changes

import (
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

func ptr[T any](v T) *T { return &v }

func svc(name string, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10"},
			Ports:      []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func spn(name, port string, proto plan.Protocol) plan.ServicePortName {
	return plan.ServicePortName{Namespace: "ns", Name: name, Port: port, Protocol: proto}
}

func TestServicePorts(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name string
		svc  *v1.Service
		want map[plan.ServicePortName]plan.ServicePort
	}{
		{name: "headless", svc: svc("h", func(s *v1.Service) { s.Spec.ClusterIP = "None"; s.Spec.ClusterIPs = []string{"None"} }), want: map[plan.ServicePortName]plan.ServicePort{}},
		{name: "external name", svc: svc("e", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeExternalName }), want: map[plan.ServicePortName]plan.ServicePort{}},
		{name: "cluster IP dual stack, two ports", svc: svc("c", func(s *v1.Service) {
			s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::10"}
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP})
		}), want: map[plan.ServicePortName]plan.ServicePort{
			spn("c", "http", plan.TCP): {Name: spn("c", "http", plan.TCP), ClusterIPs: []netip.Addr{a("10.96.0.10"), a("fd00::10")}, Port: 80},
			spn("c", "dns", plan.UDP):  {Name: spn("c", "dns", plan.UDP), ClusterIPs: []netip.Addr{a("10.96.0.10"), a("fd00::10")}, Port: 53},
		}},
		{name: "node port ignored on ClusterIP type", svc: svc("c", func(s *v1.Service) { s.Spec.Ports[0].NodePort = 30000 }),
			want: map[plan.ServicePortName]plan.ServicePort{spn("c", "http", plan.TCP): {Name: spn("c", "http", plan.TCP), ClusterIPs: []netip.Addr{a("10.96.0.10")}, Port: 80}}},
		{name: "load balancer, ETP local, affinity, source ranges, proxy-mode ingress skipped", svc: svc("lb", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32000
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Spec.ExternalIPs = []string{"192.0.2.9"}
			s.Spec.LoadBalancerSourceRanges = []string{" 198.51.100.0/24", "203.0.113.7/32"}
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.1"}, {IP: "192.0.2.2", IPMode: ptr(v1.LoadBalancerIPModeProxy)}, {Hostname: "lb.example"}}
		}), want: map[plan.ServicePortName]plan.ServicePort{spn("lb", "http", plan.TCP): {
			Name: spn("lb", "http", plan.TCP), ClusterIPs: []netip.Addr{a("10.96.0.10")}, Port: 80, NodePort: 30080,
			ExternalIPs: []netip.Addr{a("192.0.2.9")}, LoadBalancerIPs: []netip.Addr{a("192.0.2.1")},
			LoadBalancerSourceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.7/32")},
			AffinityTimeout:          3 * time.Hour, ExternalPolicyLocal: true, HealthCheckNodePort: 32000,
		}}},
		{name: "ETP local on ClusterIP without external IPs means nothing; ITP local; affinity timeout", svc: svc("c", func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.InternalTrafficPolicy = ptr(v1.ServiceInternalTrafficPolicyLocal)
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
		}), want: map[plan.ServicePortName]plan.ServicePort{spn("c", "http", plan.TCP): {
			Name: spn("c", "http", plan.TCP), ClusterIPs: []netip.Addr{a("10.96.0.10")}, Port: 80, InternalPolicyLocal: true, AffinityTimeout: time.Minute,
		}}},
		{name: "SCTP node port", svc: svc("n", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeNodePort
			s.Spec.Ports = []v1.ServicePort{{Port: 9, NodePort: 30009, Protocol: v1.ProtocolSCTP}}
		}), want: map[plan.ServicePortName]plan.ServicePort{spn("n", "", plan.SCTP): {Name: spn("n", "", plan.SCTP), ClusterIPs: []netip.Addr{a("10.96.0.10")}, Port: 9, NodePort: 30009}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ServicePorts(tc.svc)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d ports, want %d: %+v", len(got), len(tc.want), got)
			}
			for n, w := range tc.want {
				if !got[n].Equal(&w) {
					t.Errorf("%s:\n got %+v\nwant %+v", n, got[n], w)
				}
			}
		})
	}
}

func TestServiceTracker(t *testing.T) {
	base := svc("a")
	changedPort := svc("a", func(s *v1.Service) { s.Spec.Ports[0].Port = 81 })
	relabeled := svc("a", func(s *v1.Service) { s.Labels = map[string]string{"x": "y"} })
	tests := []struct {
		name        string
		initial     *v1.Service
		updates     [][2]*v1.Service
		wantChanged []plan.ServicePortName
		wantPresent bool
	}{
		{name: "add", updates: [][2]*v1.Service{{nil, base}}, wantChanged: []plan.ServicePortName{spn("a", "http", plan.TCP)}, wantPresent: true},
		{name: "add then delete is a no-op", updates: [][2]*v1.Service{{nil, base}, {base, nil}}},
		{name: "label-only update is a no-op", initial: base, updates: [][2]*v1.Service{{base, relabeled}}, wantPresent: true},
		{name: "update then revert is a no-op", initial: base, updates: [][2]*v1.Service{{base, changedPort}, {changedPort, base}}, wantPresent: true},
		{name: "port change", initial: base, updates: [][2]*v1.Service{{base, changedPort}}, wantChanged: []plan.ServicePortName{spn("a", "http", plan.TCP)}, wantPresent: true},
		{name: "delete", initial: base, updates: [][2]*v1.Service{{base, nil}}, wantChanged: []plan.ServicePortName{spn("a", "http", plan.TCP)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewServiceTracker()
			m := plan.ServiceMap{}
			if tc.initial != nil {
				tr.Update(nil, tc.initial)
				tr.Apply(m)
			}
			for _, u := range tc.updates {
				tr.Update(u[0], u[1])
			}
			if want := len(tc.wantChanged); tr.Pending() != min(want, 1) {
				t.Errorf("Pending() = %d, want %d", tr.Pending(), min(want, 1))
			}
			changed := tr.Apply(m)
			if len(changed) != len(tc.wantChanged) {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			for _, n := range tc.wantChanged {
				if _, ok := changed[n]; !ok {
					t.Errorf("%s not in changed %v", n, changed)
				}
			}
			if _, ok := m[spn("a", "http", plan.TCP)]; ok != tc.wantPresent {
				t.Errorf("present in map = %v, want %v", ok, tc.wantPresent)
			}
			if tr.Pending() != 0 {
				t.Errorf("Pending() after Apply = %d", tr.Pending())
			}
		})
	}
}

type ep struct {
	ip, node             string
	ready, serving, term *bool
}

func slice(name, svcName string, at discovery.AddressType, port int32, proto v1.Protocol, eps ...ep) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discovery.LabelServiceName: svcName}},
		AddressType: at,
		Ports:       []discovery.EndpointPort{{Name: ptr("http"), Port: ptr(port), Protocol: ptr(proto)}},
	}
	for _, e := range eps {
		de := discovery.Endpoint{Addresses: []string{e.ip}, Conditions: discovery.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.term}}
		if e.node != "" {
			de.NodeName = ptr(e.node)
		}
		s.Endpoints = append(s.Endpoints, de)
	}
	return s
}

func pe(ip string, port uint16, local, ready, serving, term bool) plan.Endpoint {
	return plan.Endpoint{IP: netip.MustParseAddr(ip), Port: port, Local: local, Ready: ready, Serving: serving, Terminating: term}
}

func TestEndpointsTracker(t *testing.T) {
	T, F := ptr(true), ptr(false)
	name := spn("a", "http", plan.TCP)
	tests := []struct {
		name        string
		initial     []*discovery.EndpointSlice
		updates     []*discovery.EndpointSlice
		removes     []*discovery.EndpointSlice
		wantChanged bool
		want        []plan.Endpoint
	}{
		{
			name:        "conditions default and local node",
			updates:     []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.2", node: "me"}, ep{ip: "10.0.0.1", node: "other", ready: F, serving: T, term: T}, ep{ip: "10.0.0.3", ready: F})},
			wantChanged: true,
			want:        []plan.Endpoint{pe("10.0.0.1", 8080, false, false, true, true), pe("10.0.0.2", 8080, true, true, true, false), pe("10.0.0.3", 8080, false, false, false, false)},
		},
		{
			name:        "duplicate across slices keeps the ready copy",
			updates:     []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.1", ready: T}), slice("a-2", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.1", ready: F})},
			wantChanged: true,
			want:        []plan.Endpoint{pe("10.0.0.1", 8080, false, true, true, false)},
		},
		{
			name:    "other family, FQDN and unlabeled slices ignored",
			updates: []*discovery.EndpointSlice{slice("a-6", "a", discovery.AddressTypeIPv6, 8080, v1.ProtocolTCP, ep{ip: "fd00::1"}), slice("a-f", "a", discovery.AddressTypeFQDN, 8080, v1.ProtocolTCP, ep{ip: "x.example"}), slice("a-n", "", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.9"})},
		},
		{
			name:    "identical update is a no-op",
			initial: []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.1"})},
			updates: []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.1"})},
			want:    []plan.Endpoint{pe("10.0.0.1", 8080, false, true, true, false)},
		},
		{
			name:    "moving an endpoint between slices is a no-op",
			initial: []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.1"})},
			updates: []*discovery.EndpointSlice{slice("a-2", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.1"})},
			removes: []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP)},
			want:    []plan.Endpoint{pe("10.0.0.1", 8080, false, true, true, false)},
		},
		{
			name:        "delete last slice",
			initial:     []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.0.1"})},
			removes:     []*discovery.EndpointSlice{slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP)},
			wantChanged: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewEndpointsTracker("me", []plan.Family{plan.IPv4})
			m := plan.EndpointsMap{}
			for _, s := range tc.initial {
				tr.Update(s, false)
			}
			tr.Apply(m)
			for _, s := range tc.updates {
				tr.Update(s, false)
			}
			for _, s := range tc.removes {
				tr.Update(s, true)
			}
			res := tr.Apply(m)
			if _, ok := res.Changed[name]; ok != tc.wantChanged || len(res.Changed) > 1 {
				t.Errorf("changed = %v, want %v for %s", res.Changed, tc.wantChanged, name)
			}
			got := m[name]
			if len(got) != len(tc.want) {
				t.Fatalf("endpoints = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("endpoint %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestEndpointsTrackerTriggerTimes(t *testing.T) {
	tr := NewEndpointsTracker("me", []plan.Family{plan.IPv4})
	s := slice("a-1", "a", discovery.AddressTypeIPv4, 80, v1.ProtocolUDP, ep{ip: "10.0.0.1"})
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Annotations = map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": ts.Format(time.RFC3339)}
	if !tr.Update(s, false) {
		t.Fatal("Update of a new slice reported no pending change")
	}
	if tr.Pending() != 1 {
		t.Fatalf("Pending() = %d, want 1", tr.Pending())
	}
	res := tr.Apply(plan.EndpointsMap{})
	if len(res.TriggerTimes) != 1 || !res.TriggerTimes[0].Equal(ts) {
		t.Errorf("TriggerTimes = %v, want [%v]", res.TriggerTimes, ts)
	}
	if again := tr.Apply(plan.EndpointsMap{}); len(again.TriggerTimes) != 0 || len(again.Changed) != 0 {
		t.Errorf("second Apply = %+v, want empty", again)
	}
}

func TestNodeInfo(t *testing.T) {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "me", Labels: map[string]string{"a": "b", v1.LabelTopologyZone: "z1"}}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{
		{Type: v1.NodeHostName, Address: "me"}, {Type: v1.NodeInternalIP, Address: "192.0.2.5"}, {Type: v1.NodeExternalIP, Address: "203.0.113.5"}, {Type: v1.NodeInternalIP, Address: "fd00::5"},
	}}}
	info := NodeInfoOf(n)
	want := NodeInfo{Name: "me", Zone: "z1", InternalIPs: []netip.Addr{netip.MustParseAddr("192.0.2.5"), netip.MustParseAddr("fd00::5")}}
	if !info.Equal(want) {
		t.Errorf("NodeInfoOf = %+v, want %+v", info, want)
	}
	n.Labels["a"] = "c"
	if !NodeInfoOf(n).Equal(want) {
		t.Error("a label the proxy does not use counts as a change")
	}
	n.Labels[v1.LabelTopologyZone] = "z2"
	if NodeInfoOf(n).Equal(want) {
		t.Error("zone change not detected")
	}
}
