package nft

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// TestKernelReadBackMatchesWhatWasWritten syncs every kind of element
// (plain sets, data maps, goto/drop verdicts) into a real table and reads
// it back the way a full sync does: every written element must come back
// with the same fingerprints, and a set's listing must hold exactly its
// elements, or periodic resyncs would rewrite (or delete) good rules.
func TestKernelReadBackMatchesWhatWasWritten(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	b, err := New(Config{Family: plan.IPv4, NetNSFd: int(ns)}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Cleanup(context.Background()) })
	e := func(ip string, local bool) plan.Endpoint {
		return plan.Endpoint{IP: netip.MustParseAddr(ip), Port: 8080, Local: local, Ready: true, Serving: true}
	}
	simple := svcPort("simple", "10.96.0.1", 80)
	simple.NodePort = 30001
	affinity := svcPort("affinity", "10.96.0.2", 80)
	affinity.AffinityTimeout = time.Minute
	empty := svcPort("empty", "10.96.0.3", 80)
	empty.NodePort = 30003
	local := svcPort("local", "10.96.0.4", 80)
	local.NodePort, local.ExternalPolicyLocal = 30004, true
	services := plan.ServiceMap{simple.Name: simple, affinity.Name: affinity, empty.Name: empty, local.Name: local}
	eps := plan.EndpointsMap{
		simple.Name:   {e("10.244.0.2", false), e("10.244.0.3", false)},
		affinity.Name: {e("10.244.0.2", false), e("10.244.0.4", false)},
		local.Name:    {e("10.244.0.5", false)},
	}
	node := plan.NodeFacts{PrimaryIPs: []netip.Addr{netip.MustParseAddr("192.168.0.10")}}
	cfg := plan.Config{NodePortPrimary: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
	p := plan.Build(plan.IPv4, services, eps, node, cfg, nil, nil)
	if err := b.Sync(context.Background(), p, nil, true); err != nil {
		t.Fatal(err)
	}

	want := map[elemID]elem{}
	add := func(o objects) {
		for _, el := range o.elems {
			want[el.id()] = el
		}
	}
	add(staticObjects(b.f, p))
	for name, s := range p.Services {
		o, _ := serviceObjects(b.f, p, s, b.ids[name], &idAlloc{})
		add(o)
	}
	kinds := map[string]bool{}
	for _, el := range want {
		kinds[el.set] = true
	}
	for _, need := range []string{b.f.serviceIPs(), b.f.nodePorts(), b.f.noEndpoints(), b.f.noEndpointPorts(), b.f.clusterIPs(), b.f.nodeIPs()} {
		if !kinds[need] {
			t.Fatalf("the plan writes nothing to %s: the test would not cover it", need)
		}
	}

	ks := newKernelState(b.f, b.hs, 0)
	if err := b.k.read(ks); err != nil {
		t.Fatal(err)
	}
	if len(ks.elems) != len(want) {
		t.Errorf("read back %d elements, wrote %d", len(ks.elems), len(want))
	}
	for _, el := range want {
		val, ok := ks.lookup(b.hs.id(el.set, el.key))
		switch {
		case !ok:
			t.Errorf("element %x of %s not read back", el.key, el.set)
		case val != b.hs.val(el)&^0xff:
			t.Errorf("element %x of %s read back with another value", el.key, el.set)
		}
	}
	for set := range kinds {
		got, err := b.k.readElems(set)
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs, wantIDs []string
		for _, el := range got {
			if w, ok := want[el.id()]; !ok || w != el {
				t.Errorf("%s lists %+v, want %+v", set, el, w)
			}
			gotIDs = append(gotIDs, el.key)
		}
		for _, el := range want {
			if el.set == set {
				wantIDs = append(wantIDs, el.key)
			}
		}
		slices.Sort(gotIDs)
		slices.Sort(wantIDs)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("%s lists %d elements, want %d", set, len(gotIDs), len(wantIDs))
		}
	}
}
