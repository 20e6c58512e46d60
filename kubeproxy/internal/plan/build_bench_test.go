package plan

import (
	"fmt"
	"net/netip"
	"testing"
)

// scale returns n services with 3 endpoints each.
func scale(n int) (ServiceMap, EndpointsMap) {
	sm, em := ServiceMap{}, EndpointsMap{}
	for i := range n {
		name := ServicePortName{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i), Port: "p", Protocol: TCP}
		sm[name] = &ServicePort{Name: name, ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})}, Port: 80, NodePort: uint16(30000 + i%2000)}
		for j := range 3 {
			em[name] = append(em[name], Endpoint{IP: netip.AddrFrom4([4]byte{10, byte(j + 1), byte(i >> 8), byte(i)}), Port: 8080, Ready: true, Serving: true})
		}
	}
	return sm, em
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		sm, em := scale(n)
		b.Run(fmt.Sprintf("full/%d", n), func(b *testing.B) {
			for b.Loop() {
				Build(IPv4, sm, em, NodeFacts{}, Config{}, nil, nil)
			}
		})
		prev := Build(IPv4, sm, em, NodeFacts{}, Config{}, nil, nil)
		one := map[ServicePortName]struct{}{{Namespace: "ns", Name: "svc-7", Port: "p", Protocol: TCP}: {}}
		b.Run(fmt.Sprintf("one-change/%d", n), func(b *testing.B) {
			for b.Loop() {
				Build(IPv4, sm, em, NodeFacts{}, Config{}, prev, one)
			}
		})
	}
}
