package plan

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
	web    = ServicePortName{Namespace: "ns", Name: "web", Port: "http", Protocol: TCP}
)

// ep makes an endpoint from a compact spec: "10.0.0.1 local ready", where the
// words after the IP are flags (local, ready, serving, terminating).
func ep(spec string) Endpoint {
	f := strings.Fields(spec)
	e := Endpoint{IP: addr(f[0]), Port: 8080}
	for _, w := range f[1:] {
		switch w {
		case "local":
			e.Local = true
		case "ready":
			e.Ready, e.Serving = true, true
		case "serving":
			e.Serving = true
		case "terminating":
			e.Terminating = true
		}
	}
	return e
}

func ips(eps []Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		out = append(out, e.IP.String())
	}
	return out
}

func TestBuildServicePolicies(t *testing.T) {
	base := ServicePort{Name: web, ClusterIPs: []netip.Addr{addr("10.96.0.1"), addr("fd00::1")}, Port: 80}
	mixed := []Endpoint{ep("10.0.0.1 ready"), ep("10.0.0.2 local ready"), ep("10.0.0.3 serving terminating"), ep("10.0.0.4 local serving terminating"), ep("10.0.0.5"), ep("fd01::1 ready")}
	terminatingOnly := []Endpoint{ep("10.0.0.3 serving terminating"), ep("10.0.0.4 local serving terminating"), ep("10.0.0.6 terminating")}
	remoteOnly := []Endpoint{ep("10.0.0.1 ready")}
	tests := []struct {
		name         string
		mutate       func(*ServicePort)
		eps          []Endpoint
		wantCluster  []string
		wantExternal []string
		wantCT       Target // cluster target
		wantET       Target // external target
	}{
		{name: "ClusterIP: ready endpoints only, other family dropped", eps: mixed,
			wantCluster: []string{"10.0.0.1", "10.0.0.2"}, wantExternal: []string{}, wantCT: TargetEndpoints, wantET: TargetDrop},
		{name: "ClusterIP: no ready endpoints falls back to serving terminating", eps: terminatingOnly,
			wantCluster: []string{"10.0.0.3", "10.0.0.4"}, wantExternal: []string{}, wantCT: TargetEndpoints, wantET: TargetDrop},
		{name: "ClusterIP: no endpoints rejects", eps: nil,
			wantCluster: []string{}, wantExternal: []string{}, wantCT: TargetReject, wantET: TargetReject},
		{name: "ClusterIP: only not-ready, not-serving endpoints rejects", eps: []Endpoint{ep("10.0.0.5"), ep("10.0.0.6 terminating")},
			wantCluster: []string{}, wantExternal: []string{}, wantCT: TargetReject, wantET: TargetReject},
		{name: "ITP Local: local ready only", mutate: func(s *ServicePort) { s.InternalPolicyLocal = true }, eps: mixed,
			wantCluster: []string{"10.0.0.2"}, wantExternal: []string{}, wantCT: TargetEndpoints, wantET: TargetDrop},
		{name: "ITP Local: local terminating fallback", mutate: func(s *ServicePort) { s.InternalPolicyLocal = true }, eps: terminatingOnly,
			wantCluster: []string{"10.0.0.4"}, wantExternal: []string{}, wantCT: TargetEndpoints, wantET: TargetDrop},
		{name: "ITP Local without local endpoints and no external access rejects", mutate: func(s *ServicePort) { s.InternalPolicyLocal = true }, eps: remoteOnly,
			wantCluster: []string{}, wantExternal: []string{}, wantCT: TargetReject, wantET: TargetReject},
		{name: "ITP Local without local endpoints but a node port drops internal traffic", mutate: func(s *ServicePort) { s.InternalPolicyLocal = true; s.NodePort = 30080 }, eps: remoteOnly,
			wantCluster: []string{}, wantExternal: []string{"10.0.0.1"}, wantCT: TargetDrop, wantET: TargetEndpoints},
		{name: "NodePort ETP Cluster: external uses all ready", mutate: func(s *ServicePort) { s.NodePort = 30080 }, eps: mixed,
			wantCluster: []string{"10.0.0.1", "10.0.0.2"}, wantExternal: []string{"10.0.0.1", "10.0.0.2"}, wantCT: TargetEndpoints, wantET: TargetEndpoints},
		{name: "NodePort ETP Local: external uses local ready", mutate: func(s *ServicePort) { s.NodePort = 30080; s.ExternalPolicyLocal = true }, eps: mixed,
			wantCluster: []string{"10.0.0.1", "10.0.0.2"}, wantExternal: []string{"10.0.0.2"}, wantCT: TargetEndpoints, wantET: TargetEndpoints},
		{name: "LoadBalancer ETP Local without local endpoints drops external", mutate: func(s *ServicePort) {
			s.NodePort = 30080
			s.LoadBalancerIPs = []netip.Addr{addr("192.0.2.1")}
			s.ExternalPolicyLocal = true
			s.HealthCheckNodePort = 32000
		}, eps: remoteOnly,
			wantCluster: []string{"10.0.0.1"}, wantExternal: []string{}, wantCT: TargetEndpoints, wantET: TargetDrop},
		{name: "ExternalIPs with no endpoints rejects both", mutate: func(s *ServicePort) { s.ExternalIPs = []netip.Addr{addr("192.0.2.9")} }, eps: nil,
			wantCluster: []string{}, wantExternal: []string{}, wantCT: TargetReject, wantET: TargetReject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := base
			if tc.mutate != nil {
				tc.mutate(&sp)
			}
			p := Build(IPv4, ServiceMap{web: &sp}, EndpointsMap{web: tc.eps}, NodeFacts{}, Config{}, nil, nil)
			s := p.Services[web]
			if s == nil {
				t.Fatal("service missing from plan")
			}
			if got := ips(s.ClusterEndpoints); !slices.Equal(got, tc.wantCluster) {
				t.Errorf("ClusterEndpoints = %v, want %v", got, tc.wantCluster)
			}
			if got := ips(s.ExternalEndpoints); !slices.Equal(got, tc.wantExternal) {
				t.Errorf("ExternalEndpoints = %v, want %v", got, tc.wantExternal)
			}
			if s.ClusterTarget() != tc.wantCT || s.ExternalTarget() != tc.wantET {
				t.Errorf("targets = %s/%s, want %s/%s", s.ClusterTarget(), s.ExternalTarget(), tc.wantCT, tc.wantET)
			}
			if s.ClusterIP != addr("10.96.0.1") {
				t.Errorf("ClusterIP = %s", s.ClusterIP)
			}
		})
	}
}

func TestBuildFamiliesAndAddresses(t *testing.T) {
	sp := &ServicePort{
		Name: web, ClusterIPs: []netip.Addr{addr("10.96.0.1"), addr("fd00::1")}, Port: 80, NodePort: 30080,
		ExternalIPs:              []netip.Addr{addr("192.0.2.9"), addr("2001:db8::9")},
		LoadBalancerIPs:          []netip.Addr{addr("192.0.2.1"), addr("2001:db8::1")},
		LoadBalancerSourceRanges: []netip.Prefix{prefix("198.51.100.0/24"), prefix("2001:db8:1::/48")},
		AffinityTimeout:          time.Hour,
	}
	v4only := &ServicePort{Name: ServicePortName{Namespace: "ns", Name: "v4", Protocol: UDP}, ClusterIPs: []netip.Addr{addr("10.96.0.2")}, Port: 53}
	sm := ServiceMap{sp.Name: sp, v4only.Name: v4only}
	em := EndpointsMap{web: {ep("10.0.0.1 ready"), ep("fd01::1 ready")}}
	node := NodeFacts{PrimaryIPs: []netip.Addr{addr("192.168.1.5"), addr("192.168.1.6"), addr("fd02::5")}, LocalAddrs: []netip.Addr{addr("192.168.1.5"), addr("10.1.0.1"), addr("fd02::5"), addr("fd03::7")}}
	cidrs := []netip.Prefix{prefix("10.244.0.0/16"), prefix("fd10::/64")}

	tests := []struct {
		name        string
		family      Family
		cfg         Config
		wantSvcs    int
		wantNodeIPs []string
		wantAll     bool
		wantExt     string
		wantLB      string
		wantRange   string
		wantCIDR    string
	}{
		{name: "IPv4 primary by default", family: IPv4, cfg: Config{ClusterCIDRs: cidrs}, wantSvcs: 2, wantNodeIPs: []string{"192.168.1.5"},
			wantExt: "192.0.2.9", wantLB: "192.0.2.1", wantRange: "198.51.100.0/24", wantCIDR: "10.244.0.0/16"},
		{name: "IPv6 with CIDR selection", family: IPv6, cfg: Config{ClusterCIDRs: cidrs, NodePortCIDRs: []netip.Prefix{prefix("fd03::/16")}}, wantSvcs: 1, wantNodeIPs: []string{"fd03::7"},
			wantExt: "2001:db8::9", wantLB: "2001:db8::1", wantRange: "2001:db8:1::/48", wantCIDR: "fd10::/64"},
		{name: "IPv4 primary plus CIDR", family: IPv4, cfg: Config{NodePortPrimary: true, NodePortCIDRs: []netip.Prefix{prefix("10.1.0.0/16")}}, wantSvcs: 2, wantNodeIPs: []string{"10.1.0.1", "192.168.1.5"},
			wantExt: "192.0.2.9", wantLB: "192.0.2.1", wantRange: "198.51.100.0/24"},
		{name: "IPv4 all local addresses", family: IPv4, cfg: Config{NodePortCIDRs: []netip.Prefix{prefix("0.0.0.0/0")}}, wantSvcs: 2, wantNodeIPs: []string{"10.1.0.1", "192.168.1.5"}, wantAll: true,
			wantExt: "192.0.2.9", wantLB: "192.0.2.1", wantRange: "198.51.100.0/24"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(tc.family, sm, em, node, tc.cfg, nil, nil)
			if len(p.Services) != tc.wantSvcs {
				t.Fatalf("%d services, want %d", len(p.Services), tc.wantSvcs)
			}
			var nips []string
			for _, a := range p.NodeIPs {
				nips = append(nips, a.String())
			}
			if !slices.Equal(nips, tc.wantNodeIPs) || p.NodePortsOnAllLocalAddresses != tc.wantAll {
				t.Errorf("NodeIPs = %v all=%v, want %v all=%v", nips, p.NodePortsOnAllLocalAddresses, tc.wantNodeIPs, tc.wantAll)
			}
			s := p.Services[web]
			if len(s.ExternalIPs) != 1 || s.ExternalIPs[0].String() != tc.wantExt || len(s.LoadBalancerIPs) != 1 || s.LoadBalancerIPs[0].String() != tc.wantLB {
				t.Errorf("external %v lb %v, want %s %s", s.ExternalIPs, s.LoadBalancerIPs, tc.wantExt, tc.wantLB)
			}
			if len(s.LoadBalancerSourceRanges) != 1 || s.LoadBalancerSourceRanges[0].String() != tc.wantRange {
				t.Errorf("source ranges %v, want %s", s.LoadBalancerSourceRanges, tc.wantRange)
			}
			if len(s.ClusterEndpoints) != 1 || familyOf(s.ClusterEndpoints[0].IP) != tc.family {
				t.Errorf("cluster endpoints %v not of family %s", s.ClusterEndpoints, tc.family)
			}
			if s.AffinityTimeout != time.Hour || s.NodePort != 30080 {
				t.Errorf("affinity %v nodePort %d", s.AffinityTimeout, s.NodePort)
			}
			if (tc.wantCIDR == "") != (len(p.ClusterCIDRs) == 0) || (tc.wantCIDR != "" && p.ClusterCIDRs[0].String() != tc.wantCIDR) {
				t.Errorf("ClusterCIDRs = %v, want %s", p.ClusterCIDRs, tc.wantCIDR)
			}
		})
	}
}

func TestBuildIncrementalSharesUnchanged(t *testing.T) {
	a := &ServicePort{Name: ServicePortName{Namespace: "ns", Name: "a", Protocol: TCP}, ClusterIPs: []netip.Addr{addr("10.96.0.1")}, Port: 80}
	b := &ServicePort{Name: ServicePortName{Namespace: "ns", Name: "b", Protocol: UDP}, ClusterIPs: []netip.Addr{addr("10.96.0.2")}, Port: 53}
	sm := ServiceMap{a.Name: a, b.Name: b}
	em := EndpointsMap{a.Name: {ep("10.0.0.1 ready")}, b.Name: {ep("10.0.0.2 ready")}}
	p1 := Build(IPv4, sm, em, NodeFacts{}, Config{}, nil, nil)

	em[b.Name] = []Endpoint{ep("10.0.0.3 ready")}
	p2 := Build(IPv4, sm, em, NodeFacts{}, Config{}, p1, map[ServicePortName]struct{}{b.Name: {}})
	if p2.Services[a.Name] != p1.Services[a.Name] {
		t.Error("unchanged service a got a new pointer")
	}
	if got := ips(p2.Services[b.Name].ClusterEndpoints); !slices.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("b endpoints = %v", got)
	}
	if ips(p1.Services[b.Name].ClusterEndpoints)[0] != "10.0.0.2" {
		t.Error("previous plan was modified")
	}

	// A full rebuild keeps pointers of services that did not change.
	p3 := Build(IPv4, sm, em, NodeFacts{}, Config{}, p2, nil)
	if p3.Services[a.Name] != p2.Services[a.Name] || p3.Services[b.Name] != p2.Services[b.Name] {
		t.Error("full rebuild replaced equal services")
	}

	delete(sm, a.Name)
	p4 := Build(IPv4, sm, em, NodeFacts{}, Config{}, p3, map[ServicePortName]struct{}{a.Name: {}})
	if _, ok := p4.Services[a.Name]; ok || len(p4.Services) != 1 {
		t.Errorf("deleted service still planned: %v", p4.Names())
	}
}

func TestParseNodePortAddresses(t *testing.T) {
	tests := []struct {
		in      []string
		primary bool
		cidrs   int
		err     string
	}{
		{in: nil},
		{in: []string{"primary"}, primary: true},
		{in: []string{"10.0.0.0/8", " fd00::/8"}, cidrs: 2},
		{in: []string{"10.0.0.1"}, err: `nodePortAddresses[0]: "10.0.0.1"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.in, ","), func(t *testing.T) {
			primary, cidrs, err := ParseNodePortAddresses(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || primary != tc.primary || len(cidrs) != tc.cidrs {
				t.Errorf("got %v %v %v", primary, cidrs, err)
			}
		})
	}
}

func TestPlanNamesSorted(t *testing.T) {
	p := &Plan{Services: map[ServicePortName]*Service{}}
	for _, n := range []string{"c", "a", "b"} {
		name := ServicePortName{Namespace: "ns", Name: n, Protocol: TCP}
		p.Services[name] = &Service{Name: name}
	}
	var got []string
	for _, s := range p.SortedServices() {
		got = append(got, s.Name.String())
	}
	if want := []string{"ns/a:/TCP", "ns/b:/TCP", "ns/c:/TCP"}; !slices.Equal(got, want) {
		t.Errorf("SortedServices = %v, want %v", got, want)
	}
}

// TestBuildSharesEndpointLists: at 30k services the endpoint lists are most
// of a proxy's memory, so a plan must reuse the endpoints map's list when
// nothing is filtered out, and copy only when something is.
func TestBuildSharesEndpointLists(t *testing.T) {
	allReady := []Endpoint{ep("10.0.0.1 ready"), ep("10.0.0.2 local ready")}
	oneNotReady := []Endpoint{ep("10.0.0.1 ready"), ep("10.0.0.2 local")}
	dual := []Endpoint{ep("10.0.0.1 ready"), ep("fd01::1 ready")}
	tests := []struct {
		name      string
		eps       []Endpoint
		etpLocal  bool
		wantShare bool
		want      []string
	}{
		{name: "all ready, one family: shared", eps: allReady, wantShare: true, want: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "one not ready: copied", eps: oneNotReady, want: []string{"10.0.0.1"}},
		{name: "other family present: copied", eps: dual, want: []string{"10.0.0.1"}},
		{name: "ETP=Local: cluster list still shared", eps: allReady, etpLocal: true, wantShare: true, want: []string{"10.0.0.1", "10.0.0.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := &ServicePort{Name: web, ClusterIPs: []netip.Addr{addr("10.96.0.1")}, Port: 80, NodePort: 30080, ExternalPolicyLocal: tc.etpLocal}
			p := Build(IPv4, ServiceMap{web: sp}, EndpointsMap{web: tc.eps}, NodeFacts{}, Config{}, nil, nil)
			s := p.Services[web]
			if got := ips(s.ClusterEndpoints); !slices.Equal(got, tc.want) {
				t.Fatalf("cluster endpoints %v, want %v", got, tc.want)
			}
			shared := &s.ClusterEndpoints[0] == &tc.eps[0]
			if shared != tc.wantShare {
				t.Fatalf("cluster endpoints share the map's list: %v, want %v", shared, tc.wantShare)
			}
			if cap(s.ClusterEndpoints) != len(s.ClusterEndpoints) {
				t.Errorf("cluster endpoints have spare capacity %d > %d: an append could write into the endpoints map", cap(s.ClusterEndpoints), len(s.ClusterEndpoints))
			}
			if tc.etpLocal {
				if got := ips(s.ExternalEndpoints); !slices.Equal(got, []string{"10.0.0.2"}) {
					t.Errorf("external endpoints %v, want the local one", got)
				}
			} else if len(s.ExternalEndpoints) == 0 || &s.ExternalEndpoints[0] != &s.ClusterEndpoints[0] {
				t.Errorf("external endpoints are not the cluster list")
			}
		})
	}
}
