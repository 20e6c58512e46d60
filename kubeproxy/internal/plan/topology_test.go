package plan

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// hep is ep with topology words: "zone" (hinted for another zone),
// "zone=me" (hinted for this node's zone), "node", "node=me" likewise.
func hep(spec string) Endpoint {
	e := ep(spec)
	for _, w := range strings.Fields(spec)[1:] {
		switch w {
		case "zone":
			e.Hints |= HasZoneHints
		case "zone=me":
			e.Hints |= HasZoneHints | ForThisZone
		case "node":
			e.Hints |= HasNodeHints
		case "node=me":
			e.Hints |= HasNodeHints | ForThisNode
		}
	}
	return e
}

func heps(specs ...string) []Endpoint {
	out := make([]Endpoint, len(specs))
	for i, s := range specs {
		out[i] = hep(s)
	}
	return out
}

func TestEndpointStaysSmall(t *testing.T) {
	// Hundreds of thousands of endpoints live in memory at scale: the hints
	// must fit in the padding.
	if got := unsafe.Sizeof(Endpoint{}); got != 32 {
		t.Errorf("Endpoint is %d bytes, want 32", got)
	}
}

func TestTopologyHints(t *testing.T) {
	base := ServicePort{Name: web, ClusterIPs: []netip.Addr{addr("10.96.0.1")}, Port: 80}
	nodePort := func(s *ServicePort) { s.NodePort = 30080 }
	tests := []struct {
		name         string
		mutate       func(*ServicePort)
		eps          []Endpoint
		wantCluster  []string
		wantExternal []string
	}{
		{name: "no hints: every ready endpoint",
			eps:         heps("10.0.0.1 ready", "10.0.0.2 ready"),
			wantCluster: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "zone hints: only this zone's endpoints",
			eps:         heps("10.0.0.1 ready zone=me", "10.0.0.2 ready zone", "10.0.0.3 ready zone=me"),
			wantCluster: []string{"10.0.0.1", "10.0.0.3"}},
		{name: "a ready endpoint without a hint: all",
			eps:         heps("10.0.0.1 ready zone=me", "10.0.0.2 ready"),
			wantCluster: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "a not-ready endpoint without a hint does not matter",
			eps:         heps("10.0.0.1 ready zone=me", "10.0.0.2 ready zone", "10.0.0.3"),
			wantCluster: []string{"10.0.0.1"}},
		{name: "no hint for this zone: all",
			eps:         heps("10.0.0.1 ready zone", "10.0.0.2 ready zone"),
			wantCluster: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "the zone's only endpoint is not ready: all",
			eps:         heps("10.0.0.1 zone=me", "10.0.0.2 ready zone", "10.0.0.3 ready zone"),
			wantCluster: []string{"10.0.0.2", "10.0.0.3"}},
		{name: "no ready endpoint: serving terminating ones whatever their hints",
			eps:         heps("10.0.0.1 serving terminating zone=me", "10.0.0.2 serving terminating zone"),
			wantCluster: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "node hints win over zone hints",
			eps:         heps("10.0.0.1 ready zone=me node", "10.0.0.2 ready zone=me node=me", "10.0.0.3 ready zone node"),
			wantCluster: []string{"10.0.0.2"}},
		{name: "node hints for other nodes fall back to zone hints",
			eps:         heps("10.0.0.1 ready zone=me node", "10.0.0.2 ready zone node"),
			wantCluster: []string{"10.0.0.1"}},
		{name: "node hints missing on one endpoint fall back to zone hints",
			eps:         heps("10.0.0.1 ready zone node=me", "10.0.0.2 ready zone=me"),
			wantCluster: []string{"10.0.0.2"}},
		{name: "node hints alone",
			eps:         heps("10.0.0.1 ready node", "10.0.0.2 local ready node=me"),
			wantCluster: []string{"10.0.0.2"}},
		{name: "ETP Cluster: external traffic follows the hints too", mutate: nodePort,
			eps:         heps("10.0.0.1 ready zone=me", "10.0.0.2 ready zone"),
			wantCluster: []string{"10.0.0.1"}, wantExternal: []string{"10.0.0.1"}},
		{name: "ETP Local takes precedence for external traffic",
			mutate:      func(s *ServicePort) { nodePort(s); s.ExternalPolicyLocal = true },
			eps:         heps("10.0.0.1 ready zone=me", "10.0.0.2 local ready zone"),
			wantCluster: []string{"10.0.0.1"}, wantExternal: []string{"10.0.0.2"}},
		{name: "ITP Local takes precedence for cluster traffic",
			mutate:      func(s *ServicePort) { s.InternalPolicyLocal = true },
			eps:         heps("10.0.0.1 ready zone=me", "10.0.0.2 local ready zone"),
			wantCluster: []string{"10.0.0.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := base
			if tc.mutate != nil {
				tc.mutate(&sp)
			}
			p := Build(IPv4, ServiceMap{web: &sp}, EndpointsMap{web: tc.eps}, NodeFacts{PrimaryIPs: []netip.Addr{addr("192.0.2.1")}}, Config{}, nil, nil)
			s := p.Services[web]
			if s == nil {
				t.Fatal("service missing from the plan")
			}
			if got := ips(s.ClusterEndpoints); !slices.Equal(got, tc.wantCluster) {
				t.Errorf("cluster endpoints = %v, want %v", got, tc.wantCluster)
			}
			wantExternal := tc.wantExternal
			if wantExternal == nil {
				wantExternal = []string{}
			}
			if got := ips(s.ExternalEndpoints); !slices.Equal(got, wantExternal) {
				t.Errorf("external endpoints = %v, want %v", got, wantExternal)
			}
			if !s.HasEndpoints {
				t.Error("HasEndpoints = false")
			}
		})
	}
}

func TestTopologySharesUnfilteredLists(t *testing.T) {
	eps := heps("10.0.0.1 ready zone=me", "10.0.0.2 ready zone=me")
	if got := preferSameTopology(eps); &got[0] != &eps[0] {
		t.Error("every endpoint hinted for this zone: the list was copied")
	}
	eps = heps("10.0.0.1 ready zone=me", "10.0.0.2 ready zone")
	got := preferSameTopology(eps)
	if &got[0] == &eps[0] {
		t.Error("filtered list shares the input's array")
	}
	if eps[1].IP != addr("10.0.0.2") {
		t.Error("input modified")
	}
}
