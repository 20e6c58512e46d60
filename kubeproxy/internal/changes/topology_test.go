package changes

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// hinted makes a one-endpoint-per-IP slice where hints[ip] lists "zone:X"
// and "node:Y" hints.
func hinted(hints map[string][]string, ips ...string) *discovery.EndpointSlice {
	s := slice("a-1", "a", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP)
	for _, ip := range ips {
		e := discovery.Endpoint{Addresses: []string{ip}}
		if hs, ok := hints[ip]; ok {
			e.Hints = &discovery.EndpointHints{}
			for _, h := range hs {
				switch h[:5] {
				case "zone:":
					e.Hints.ForZones = append(e.Hints.ForZones, discovery.ForZone{Name: h[5:]})
				case "node:":
					e.Hints.ForNodes = append(e.Hints.ForNodes, discovery.ForNode{Name: h[5:]})
				}
			}
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

func TestEndpointHints(t *testing.T) {
	tests := []struct {
		name  string
		zone  string
		hints []string
		want  plan.Hints
	}{
		{name: "no hints", zone: "z1", want: 0},
		{name: "zone hint for this zone", zone: "z1", hints: []string{"zone:z2", "zone:z1"}, want: plan.HasZoneHints | plan.ForThisZone},
		{name: "zone hint for another zone", zone: "z1", hints: []string{"zone:z2"}, want: plan.HasZoneHints},
		{name: "node without a zone label matches no zone", zone: "", hints: []string{"zone:z1"}, want: plan.HasZoneHints},
		{name: "node hint for this node", zone: "z1", hints: []string{"node:me"}, want: plan.HasNodeHints | plan.ForThisNode},
		{name: "node hint for another node", zone: "z1", hints: []string{"node:other", "zone:z1"}, want: plan.HasNodeHints | plan.HasZoneHints | plan.ForThisZone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewEndpointsTracker("me", []plan.Family{plan.IPv4})
			tr.SetZone(tc.zone)
			hints := map[string][]string{}
			if tc.hints != nil {
				hints["10.0.0.1"] = tc.hints
			}
			tr.Update(hinted(hints, "10.0.0.1"), false)
			m := plan.EndpointsMap{}
			tr.Apply(m)
			eps := m[spn("a", "http", plan.TCP)]
			if len(eps) != 1 {
				t.Fatalf("endpoints = %v, want one", eps)
			}
			if eps[0].Hints != tc.want {
				t.Errorf("Hints = %04b, want %04b", eps[0].Hints, tc.want)
			}
		})
	}
}

func TestSetZone(t *testing.T) {
	name := spn("a", "http", plan.TCP)
	forThisZone := func(m plan.EndpointsMap) []string {
		var out []string
		for _, e := range m[name] {
			if e.Hints&plan.ForThisZone != 0 {
				out = append(out, e.IP.String())
			}
		}
		return out
	}
	tr := NewEndpointsTracker("me", []plan.Family{plan.IPv4})
	tr.SetZone("z1")
	tr.Update(hinted(map[string][]string{"10.0.0.1": {"zone:z1"}, "10.0.0.2": {"zone:z2"}}, "10.0.0.1", "10.0.0.2"), false)
	// A service without zone hints is not touched by zone changes.
	plain := slice("b-1", "b", discovery.AddressTypeIPv4, 8080, v1.ProtocolTCP, ep{ip: "10.0.1.1"})
	tr.Update(plain, false)
	m := plan.EndpointsMap{}
	tr.Apply(m)
	if got := forThisZone(m); len(got) != 1 || got[0] != "10.0.0.1" {
		t.Fatalf("in z1, endpoints for this zone = %v, want [10.0.0.1]", got)
	}

	if tr.SetZone("z1") {
		t.Error("setting the same zone made a change pending")
	}
	if !tr.SetZone("z2") {
		t.Fatal("moving to z2 made no change pending")
	}
	if tr.Pending() != 1 {
		t.Errorf("Pending() = %d, want 1 (only the hinted service)", tr.Pending())
	}
	res := tr.Apply(m)
	if _, ok := res.Changed[name]; !ok || len(res.Changed) != 1 {
		t.Errorf("Changed = %v, want only %v", res.Changed, name)
	}
	if got := forThisZone(m); len(got) != 1 || got[0] != "10.0.0.2" {
		t.Errorf("in z2, endpoints for this zone = %v, want [10.0.0.2]", got)
	}

	// Moving away and back before an Apply cancels out.
	tr.SetZone("z3")
	tr.SetZone("z2")
	if tr.Pending() != 0 {
		t.Errorf("zone changed and changed back: Pending() = %d, want 0", tr.Pending())
	}
}
