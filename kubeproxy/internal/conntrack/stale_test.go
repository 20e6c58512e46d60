package conntrack

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

var ap = netip.MustParseAddrPort

func flow(dst, replySrc string) Flow {
	return Flow{OrigSrc: ap("10.244.1.5:40000"), OrigDst: ap(dst), ReplySrc: ap(replySrc), ReplyDst: ap("10.244.1.5:40000")}
}

func eps(addrs ...string) []plan.Endpoint {
	var out []plan.Endpoint
	for _, a := range addrs {
		p := ap(a)
		out = append(out, plan.Endpoint{IP: p.Addr(), Port: p.Port(), Ready: true, Serving: true})
	}
	return out
}

func udpPlan(svcs ...*plan.Service) *plan.Plan {
	p := &plan.Plan{Family: plan.IPv4, Services: map[plan.ServicePortName]*plan.Service{}, NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.5")}}
	for _, s := range svcs {
		p.Services[s.Name] = s
	}
	return p
}

func dns(cluster, external []plan.Endpoint) *plan.Service {
	return &plan.Service{
		Name:      plan.ServicePortName{Namespace: "kube-system", Name: "dns", Port: "dns", Protocol: plan.UDP},
		ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, NodePort: 30053,
		ExternalIPs:      []netip.Addr{netip.MustParseAddr("192.0.2.10")},
		ClusterEndpoints: cluster, ExternalEndpoints: external, HasEndpoints: len(cluster)+len(external) > 0,
	}
}

func TestStaleFlows(t *testing.T) {
	two := eps("10.0.0.1:5353", "10.0.0.2:5353")
	one := eps("10.0.0.1:5353")
	tcp := dns(nil, nil)
	tcp.Name.Protocol = plan.TCP
	tcp.ClusterIP = netip.MustParseAddr("10.96.0.20")
	flows := []Flow{
		flow("10.96.0.10:53", "10.0.0.1:5353"),         // 0 cluster IP to a kept endpoint
		flow("10.96.0.10:53", "10.0.0.2:5353"),         // 1 cluster IP to a removed endpoint
		flow("10.96.0.10:53", "10.96.0.10:53"),         // 2 cluster IP, not DNATed (rejected earlier)
		flow("192.0.2.10:53", "10.0.0.2:5353"),         // 3 external IP to a removed endpoint
		flow("192.168.1.5:30053", "10.0.0.2:5353"),     // 4 node port to a removed endpoint
		flow("192.168.1.9:30053", "192.168.1.9:30053"), // 5 some other host's port 30053: not ours
		flow("10.96.0.99:53", "10.0.0.7:5353"),         // 6 unknown service
		flow("10.96.0.20:53", "10.0.0.7:5353"),         // 7 TCP service's IP: not a UDP frontend
	}
	tests := []struct {
		name      string
		prev, cur *plan.Plan
		want      []int
	}{
		{name: "endpoint removed", prev: udpPlan(dns(two, two)), cur: udpPlan(dns(one, one), tcp), want: []int{1, 2, 3, 4}},
		{name: "first endpoint appears: rejected flows go", prev: udpPlan(dns(nil, nil)), cur: udpPlan(dns(two, two)), want: []int{2}},
		{name: "unchanged: only the never-DNATed flow goes", prev: udpPlan(dns(two, two)), cur: udpPlan(dns(two, two)), want: []int{2}},
		{name: "service removed: its DNATed flows go", prev: udpPlan(dns(two, two)), cur: udpPlan(), want: []int{0, 1, 3, 4}},
		{name: "no endpoints left: DNATed flows go, rejected stay", prev: udpPlan(dns(two, two)), cur: udpPlan(dns(nil, nil)), want: []int{0, 1, 3, 4}},
		{name: "first plan", prev: nil, cur: udpPlan(dns(one, one)), want: []int{1, 2, 3, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := StaleFlows(tc.prev, tc.cur, flows)
			var want []Flow
			for _, i := range tc.want {
				want = append(want, flows[i])
			}
			if !slices.Equal(got, want) {
				t.Errorf("stale =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

type fakeTable struct {
	flows   []Flow
	deleted []Flow
	listErr error
}

func (f *fakeTable) UDPFlows(plan.Family) ([]Flow, error) { return f.flows, f.listErr }
func (f *fakeTable) Delete(fl []Flow) error               { f.deleted = append(f.deleted, fl...); return nil }

func TestCleanerRemembersPreviousPlan(t *testing.T) {
	gone := flow("10.96.0.10:53", "10.0.0.2:5353")
	table := &fakeTable{}
	c := NewCleaner(zap.NewNop(), table)
	if err := c.CleanStaleFlows(context.Background(), udpPlan(dns(eps("10.0.0.2:5353"), nil))); err != nil {
		t.Fatal(err)
	}
	table.flows = []Flow{gone}
	if err := c.CleanStaleFlows(context.Background(), udpPlan()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(table.deleted, []Flow{gone}) {
		t.Errorf("deleted %v, want the deleted service's flow", table.deleted)
	}
	table.listErr = errors.New("boom")
	if err := c.CleanStaleFlows(context.Background(), udpPlan()); err == nil {
		t.Error("list error not reported")
	}
}
