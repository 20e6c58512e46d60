package nft

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// scaleWorld is n services x eps endpoints, in the shapes the planner
// produces, for benchmarks. Addresses are synthetic and never carry
// traffic. It holds what a kube-proxy holds: the service and endpoints
// maps (the trackers' state) and the last plan.
type scaleWorld struct {
	n        int
	services plan.ServiceMap
	eps      plan.EndpointsMap
	prev     *plan.Plan
	cfg      plan.Config
	node     plan.NodeFacts
}

func addrFrom(base netip.Addr, off uint32) netip.Addr {
	b := base.As4()
	v := binary.BigEndian.Uint32(b[:]) + off
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func newScaleWorld(n, eps int) *scaleWorld {
	w := &scaleWorld{
		n:        n,
		services: make(plan.ServiceMap, n),
		eps:      make(plan.EndpointsMap, n),
		cfg:      plan.Config{NodePortPrimary: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/9")}},
		node:     plan.NodeFacts{PrimaryIPs: []netip.Addr{netip.MustParseAddr("192.168.0.10")}},
	}
	cipBase := netip.MustParseAddr("10.96.0.0")
	epBase := netip.MustParseAddr("10.128.0.0")
	for i := range n {
		name := scaleName(i)
		sp := &plan.ServicePort{Name: name, ClusterIPs: []netip.Addr{addrFrom(cipBase, uint32(i+1))}, Port: 80}
		if i%10 == 0 {
			sp.NodePort = uint16(30000 + i/10%2768)
		}
		w.services[name] = sp
		list := make([]plan.Endpoint, eps)
		for j := range eps {
			list[j] = plan.Endpoint{IP: addrFrom(epBase, uint32(i*eps+j)), Port: 8080, Ready: true, Serving: true, Local: j == 0}
		}
		w.eps[name] = list
	}
	return w
}

func scaleName(i int) plan.ServicePortName {
	return plan.ServicePortName{Namespace: fmt.Sprintf("ns-%d", i%100), Name: fmt.Sprintf("svc-%d", i), Port: "http", Protocol: plan.TCP}
}

func (w *scaleWorld) plan(changed map[plan.ServicePortName]struct{}) *plan.Plan {
	p := plan.Build(plan.IPv4, w.services, w.eps, w.node, w.cfg, w.prev, changed)
	w.prev = p
	return p
}

// change moves one endpoint of service i to a new address (like a pod
// being replaced) and returns the changed set.
func (w *scaleWorld) change(i, round int) map[plan.ServicePortName]struct{} {
	name := scaleName(i % w.n)
	list := append([]plan.Endpoint(nil), w.eps[name]...)
	list[round%len(list)].IP = addrFrom(netip.MustParseAddr("10.200.0.0"), uint32(round))
	w.eps[name] = list
	return map[plan.ServicePortName]struct{}{name: {}}
}

func benchBackend(b testing.TB) (*Backend, func()) {
	needRoot(b)
	ns := newNS(b)
	be, err := New(Config{Family: plan.IPv4, NetNSFd: int(ns)}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	return be, func() { _ = be.Cleanup(context.Background()) }
}

func BenchmarkFullSync(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			w := newScaleWorld(n, 10)
			p := w.plan(nil)
			be, cleanup := benchBackend(b)
			defer cleanup()
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				cleanup()
				fresh, err := New(Config{Family: plan.IPv4, NetNSFd: be.k.(*netlinkKernel).netns}, zap.NewNop())
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := fresh.Sync(ctx, p, nil, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOneServiceChange(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			w := newScaleWorld(n, 10)
			be, cleanup := benchBackend(b)
			defer cleanup()
			ctx := context.Background()
			if err := be.Sync(ctx, w.plan(nil), nil, true); err != nil {
				b.Fatal(err)
			}
			round := 0
			for b.Loop() {
				b.StopTimer()
				round++
				ch := w.change(round*7919, round)
				p := w.plan(ch)
				b.StartTimer()
				if err := be.Sync(ctx, p, ch, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
