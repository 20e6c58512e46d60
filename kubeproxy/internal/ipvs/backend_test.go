package ipvs

import (
	"context"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var (
	nodeIP  = netip.MustParseAddr("192.168.1.10")
	podCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

type harness struct {
	b     *Backend
	k     *Fake
	fw    *FakeFirewall
	clock *testClock
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	k, fw := NewFake(), NewFakeFirewall()
	b, err := NewWithKernel(cfg, zap.NewNop(), k, fw)
	if err != nil {
		t.Fatal(err)
	}
	c := &testClock{t: time.Unix(1_700_000_000, 0)}
	b.now = c.now
	return &harness{b: b, k: k, fw: fw, clock: c}
}

func (h *harness) sync(t *testing.T, p *plan.Plan, full bool, changed ...plan.ServicePortName) {
	t.Helper()
	var ch map[plan.ServicePortName]struct{}
	if !full {
		ch = map[plan.ServicePortName]struct{}{}
		for _, n := range changed {
			ch[n] = struct{}{}
		}
	}
	if err := h.b.Sync(context.Background(), p, ch, full); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// dump renders the fake's IPVS state as sorted lines, e.g.
// "TCP/10.96.0.1:80 rr -> 10.244.1.1:8080 w=1".
func dump(k *Fake) []string {
	vss, _ := k.VirtualServers()
	var out []string
	for _, vs := range vss {
		rss, _ := k.RealServers(vs.VSKey)
		var rs []string
		for _, r := range rss {
			rs = append(rs, r.String())
		}
		sort.Strings(rs)
		out = append(out, vs.String()+" -> "+strings.Join(rs, ", "))
	}
	sort.Strings(out)
	return out
}

func ep(s string, local bool) plan.Endpoint {
	ap := netip.MustParseAddrPort(s)
	return plan.Endpoint{IP: ap.Addr(), Port: ap.Port(), Local: local, Ready: true, Serving: true}
}

func name(n string) plan.ServicePortName {
	return plan.ServicePortName{Namespace: "default", Name: n, Port: "http", Protocol: plan.TCP}
}

func svc(n, clusterIP string, port uint16, eps ...plan.Endpoint) *plan.Service {
	return &plan.Service{
		Name: name(n), ClusterIP: netip.MustParseAddr(clusterIP), Port: port,
		ClusterEndpoints: eps, ExternalEndpoints: eps, HasEndpoints: len(eps) > 0,
	}
}

func mkPlan(svcs ...*plan.Service) *plan.Plan {
	p := &plan.Plan{Family: plan.IPv4, Services: map[plan.ServicePortName]*plan.Service{},
		NodeIPs: []netip.Addr{nodeIP}, ClusterCIDRs: []netip.Prefix{podCIDR}}
	for _, s := range svcs {
		p.Services[s.Name] = s
	}
	return p
}

func TestSyncServiceTypes(t *testing.T) {
	e1, e2 := ep("10.244.1.1:8080", true), ep("10.244.2.1:8080", false)
	tests := []struct {
		name      string
		cfg       Config
		svc       func() *plan.Service
		wantIPVS  []string
		wantAddrs []string
		wantElems []Element
		notElems  []Element
	}{
		{
			name: "cluster IP",
			svc:  func() *plan.Service { return svc("a", "10.96.0.10", 80, e1, e2) },
			wantIPVS: []string{
				"TCP/10.96.0.10:80 rr -> 10.244.1.1:8080 w=1, 10.244.2.1:8080 w=1",
			},
			wantAddrs: []string{"10.96.0.10"},
			wantElems: []Element{
				{Set: SetClusterVIPs, Addr: netip.MustParseAddr("10.96.0.10"), Proto: unix.IPPROTO_TCP, Port: 80},
				{Set: SetHairpin, Addr: e1.IP, Proto: unix.IPPROTO_TCP, Port: 8080, Addr2: e1.IP},
			},
			notElems: []Element{{Set: SetReject, Addr: netip.MustParseAddr("10.96.0.10"), Proto: unix.IPPROTO_TCP, Port: 80}},
		},
		{
			name: "scheduler from config",
			cfg:  Config{Scheduler: "sh"},
			svc:  func() *plan.Service { return svc("a", "10.96.0.10", 80, e1) },
			wantIPVS: []string{
				"TCP/10.96.0.10:80 sh -> 10.244.1.1:8080 w=1",
			},
			wantAddrs: []string{"10.96.0.10"},
		},
		{
			name: "node port",
			svc: func() *plan.Service {
				s := svc("a", "10.96.0.10", 80, e1, e2)
				s.NodePort = 30080
				return s
			},
			wantIPVS: []string{
				"TCP/10.96.0.10:80 rr -> 10.244.1.1:8080 w=1, 10.244.2.1:8080 w=1",
				"TCP/192.168.1.10:30080 rr -> 10.244.1.1:8080 w=1, 10.244.2.1:8080 w=1",
			},
			wantAddrs: []string{"10.96.0.10"}, // never the node's own address
			wantElems: []Element{
				{Set: SetNodePorts, Proto: unix.IPPROTO_TCP, Port: 30080},
				{Set: SetExternalMasq, Addr: nodeIP, Proto: unix.IPPROTO_TCP, Port: 30080},
			},
		},
		{
			name: "load balancer and external IPs",
			svc: func() *plan.Service {
				s := svc("a", "10.96.0.10", 443, e1)
				s.ExternalIPs = []netip.Addr{netip.MustParseAddr("203.0.113.5")}
				s.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("198.51.100.7")}
				return s
			},
			wantIPVS: []string{
				"TCP/10.96.0.10:443 rr -> 10.244.1.1:8080 w=1",
				"TCP/198.51.100.7:443 rr -> 10.244.1.1:8080 w=1",
				"TCP/203.0.113.5:443 rr -> 10.244.1.1:8080 w=1",
			},
			wantAddrs: []string{"10.96.0.10", "198.51.100.7", "203.0.113.5"},
			wantElems: []Element{
				{Set: SetExternalMasq, Addr: netip.MustParseAddr("198.51.100.7"), Proto: unix.IPPROTO_TCP, Port: 443},
			},
		},
		{
			name: "session affinity",
			svc: func() *plan.Service {
				s := svc("a", "10.96.0.10", 80, e1)
				s.AffinityTimeout = 3 * time.Hour
				return s
			},
			wantIPVS:  []string{"TCP/10.96.0.10:80 rr persistent 10800s -> 10.244.1.1:8080 w=1"},
			wantAddrs: []string{"10.96.0.10"},
		},
		{
			name: "externalTrafficPolicy Local",
			svc: func() *plan.Service {
				s := svc("a", "10.96.0.10", 80, e1, e2)
				s.NodePort = 30080
				s.ExternalPolicyLocal = true
				s.ExternalEndpoints = []plan.Endpoint{e1}
				return s
			},
			wantIPVS: []string{
				"TCP/10.96.0.10:80 rr -> 10.244.1.1:8080 w=1, 10.244.2.1:8080 w=1",
				"TCP/192.168.1.10:30080 rr -> 10.244.1.1:8080 w=1",
			},
			wantAddrs: []string{"10.96.0.10"},
			notElems:  []Element{{Set: SetExternalMasq, Addr: nodeIP, Proto: unix.IPPROTO_TCP, Port: 30080}},
		},
		{
			name: "externalTrafficPolicy Local without local endpoints drops",
			svc: func() *plan.Service {
				s := svc("a", "10.96.0.10", 80, e2)
				s.NodePort = 30080
				s.ExternalPolicyLocal = true
				s.ExternalEndpoints = nil
				return s
			},
			wantIPVS: []string{
				"TCP/10.96.0.10:80 rr -> 10.244.2.1:8080 w=1",
				"TCP/192.168.1.10:30080 rr -> ",
			},
			wantAddrs: []string{"10.96.0.10"},
			wantElems: []Element{{Set: SetDrop, Addr: nodeIP, Proto: unix.IPPROTO_TCP, Port: 30080}},
		},
		{
			name: "internalTrafficPolicy Local",
			svc: func() *plan.Service {
				s := svc("a", "10.96.0.10", 80, e1, e2)
				s.InternalPolicyLocal = true
				s.ClusterEndpoints = []plan.Endpoint{e1}
				return s
			},
			wantIPVS:  []string{"TCP/10.96.0.10:80 rr -> 10.244.1.1:8080 w=1"},
			wantAddrs: []string{"10.96.0.10"},
		},
		{
			name: "terminating endpoints the plan still serves",
			svc: func() *plan.Service {
				e := e1
				e.Ready, e.Terminating = false, true
				return svc("a", "10.96.0.10", 80, e)
			},
			wantIPVS:  []string{"TCP/10.96.0.10:80 rr -> 10.244.1.1:8080 w=1"},
			wantAddrs: []string{"10.96.0.10"},
		},
		{
			name:      "no endpoints rejects",
			svc:       func() *plan.Service { return svc("a", "10.96.0.10", 80) },
			wantIPVS:  []string{"TCP/10.96.0.10:80 rr -> "},
			wantAddrs: []string{"10.96.0.10"},
			wantElems: []Element{{Set: SetReject, Addr: netip.MustParseAddr("10.96.0.10"), Proto: unix.IPPROTO_TCP, Port: 80}},
		},
		{
			name: "UDP",
			svc: func() *plan.Service {
				s := svc("a", "10.96.0.10", 53, ep("10.244.1.1:53", true))
				s.Name.Protocol = plan.UDP
				return s
			},
			wantIPVS:  []string{"UDP/10.96.0.10:53 rr -> 10.244.1.1:53 w=1"},
			wantAddrs: []string{"10.96.0.10"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.sync(t, mkPlan(tc.svc()), true)
			if got := dump(h.k); !slices.Equal(got, tc.wantIPVS) {
				t.Errorf("IPVS:\n got %q\nwant %q", got, tc.wantIPVS)
			}
			as, err := h.k.DeviceAddresses("kube-ipvs0")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range as {
				got = append(got, a.String())
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.wantAddrs) {
				t.Errorf("kube-ipvs0 addresses = %v, want %v", got, tc.wantAddrs)
			}
			for _, e := range tc.wantElems {
				if !h.fw.Has(e) {
					t.Errorf("nftables lacks %s", e)
				}
			}
			for _, e := range tc.notElems {
				if h.fw.Has(e) {
					t.Errorf("nftables has %s", e)
				}
			}
		})
	}
}

func TestPartialSyncTouchesOnlyChangedServices(t *testing.T) {
	h := newHarness(t, Config{})
	a := svc("a", "10.96.0.1", 80, ep("10.244.1.1:80", true))
	b := svc("b", "10.96.0.2", 80, ep("10.244.1.2:80", true))
	c := svc("c", "10.96.0.3", 80, ep("10.244.1.3:80", true))
	h.sync(t, mkPlan(a, b, c), true)

	// Drift the kernel behind the backend's back: a partial sync must not
	// look at services it was not told about.
	if err := h.k.DeleteVirtualServer(VSKey{Address: a.ClusterIP, Protocol: unix.IPPROTO_TCP, Port: 80}); err != nil {
		t.Fatal(err)
	}
	h.k.ResetCalls()
	b2 := svc("b", "10.96.0.2", 80, ep("10.244.1.2:80", true), ep("10.244.1.22:80", true))
	h.sync(t, mkPlan(a, b2, c), false, b.Name)
	if h.k.Calls["AddRealServer"] != 1 || h.k.Mutations() != 1 {
		t.Fatalf("partial sync of one added endpoint made calls %v, want one AddRealServer", h.k.Calls)
	}
	want := []string{
		"TCP/10.96.0.2:80 rr -> 10.244.1.22:80 w=1, 10.244.1.2:80 w=1",
		"TCP/10.96.0.3:80 rr -> 10.244.1.3:80 w=1",
	}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("after partial sync:\n got %q\nwant %q", got, want)
	}
	if !h.fw.Has(Element{Set: SetHairpin, Addr: netip.MustParseAddr("10.244.1.22"), Proto: unix.IPPROTO_TCP, Port: 80, Addr2: netip.MustParseAddr("10.244.1.22")}) {
		t.Error("partial sync did not add the new endpoint's hairpin element")
	}
	if h.fw.Replaces != 1 {
		t.Errorf("partial sync rebuilt the nftables table (%d replaces)", h.fw.Replaces)
	}

	// A full sync repairs the drift: the deleted virtual server comes back.
	h.sync(t, mkPlan(a, b2, c), true)
	want = append([]string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1"}, want...)
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("after full sync:\n got %q\nwant %q", got, want)
	}
}

func TestPartialSyncRemovesServices(t *testing.T) {
	h := newHarness(t, Config{})
	// Two ports of one service share the cluster IP address.
	http := svc("a", "10.96.0.1", 80, ep("10.244.1.1:80", true))
	https := svc("a", "10.96.0.1", 443, ep("10.244.1.1:443", true))
	https.Name.Port = "https"
	other := svc("b", "10.96.0.2", 80, ep("10.244.1.2:80", true))
	h.sync(t, mkPlan(http, https, other), true)

	h.sync(t, mkPlan(http, other), false, https.Name)
	if as, _ := h.k.DeviceAddresses("kube-ipvs0"); !slices.Contains(as, http.ClusterIP) {
		t.Fatalf("address %s removed while port 80 still uses it: %v", http.ClusterIP, as)
	}
	h.sync(t, mkPlan(other), false, http.Name)
	if as, _ := h.k.DeviceAddresses("kube-ipvs0"); slices.Contains(as, http.ClusterIP) {
		t.Fatalf("address %s kept after its last service port went: %v", http.ClusterIP, as)
	}
	want := []string{"TCP/10.96.0.2:80 rr -> 10.244.1.2:80 w=1"}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if h.fw.Has(Element{Set: SetClusterVIPs, Addr: http.ClusterIP, Proto: unix.IPPROTO_TCP, Port: 80}) {
		t.Error("removed service's nftables element kept")
	}
}

func TestFullSyncRemovesStaleAndKeepsForeign(t *testing.T) {
	h := newHarness(t, Config{})
	// Left by a previous run: a virtual server on an address of our device,
	// and one on the node address. Someone else's on another address.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.k.EnsureDevice("kube-ipvs0"))
	stale := netip.MustParseAddr("10.96.9.9")
	must(h.k.AddDeviceAddress("kube-ipvs0", stale))
	must(h.k.AddVirtualServer(&VirtualServer{VSKey: VSKey{Address: stale, Protocol: unix.IPPROTO_TCP, Port: 80}, Scheduler: "rr"}))
	must(h.k.AddVirtualServer(&VirtualServer{VSKey: VSKey{Address: nodeIP, Protocol: unix.IPPROTO_TCP, Port: 31000}, Scheduler: "rr"}))
	foreign := VSKey{Address: netip.MustParseAddr("172.16.0.1"), Protocol: unix.IPPROTO_TCP, Port: 80}
	must(h.k.AddVirtualServer(&VirtualServer{VSKey: foreign, Scheduler: "wlc"}))

	h.sync(t, mkPlan(svc("a", "10.96.0.1", 80, ep("10.244.1.1:80", true))), true)
	want := []string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1", "TCP/172.16.0.1:80 wlc -> "}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if as, _ := h.k.DeviceAddresses("kube-ipvs0"); slices.Contains(as, stale) {
		t.Errorf("stale address %s kept", stale)
	}
}

func TestFullSyncRepairsChangedVirtualServer(t *testing.T) {
	h := newHarness(t, Config{})
	s := svc("a", "10.96.0.1", 80, ep("10.244.1.1:80", true))
	h.sync(t, mkPlan(s), true)
	key := VSKey{Address: s.ClusterIP, Protocol: unix.IPPROTO_TCP, Port: 80}
	if err := h.k.UpdateVirtualServer(&VirtualServer{VSKey: key, Scheduler: "lc"}); err != nil {
		t.Fatal(err)
	}
	if err := h.k.UpdateRealServer(key, &RealServer{Address: netip.MustParseAddr("10.244.1.1"), Port: 80, Weight: 7}); err != nil {
		t.Fatal(err)
	}
	if err := h.k.DeleteDeviceAddress("kube-ipvs0", s.ClusterIP); err != nil {
		t.Fatal(err)
	}
	h.sync(t, mkPlan(s), true)
	want := []string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1"}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if as, _ := h.k.DeviceAddresses("kube-ipvs0"); !slices.Contains(as, s.ClusterIP) {
		t.Fatal("deleted address not restored")
	}
}

func TestGracefulTermination(t *testing.T) {
	e1, e2 := ep("10.244.1.1:80", true), ep("10.244.1.2:80", true)
	key := VSKey{Address: netip.MustParseAddr("10.96.0.1"), Protocol: unix.IPPROTO_TCP, Port: 80}
	tests := []struct {
		name    string
		proto   plan.Protocol
		conns   int
		steps   func(t *testing.T, h *harness, p *plan.Plan)
		wantEnd []string
	}{
		{
			name: "drains until connections end", proto: plan.TCP, conns: 2,
			steps: func(t *testing.T, h *harness, p *plan.Plan) {
				want := []string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1, 10.244.1.2:80 w=0"}
				if got := dump(h.k); !slices.Equal(got, want) {
					t.Fatalf("after removal: got %q, want %q", got, want)
				}
				h.sync(t, p, false) // still has connections: stays
				if got := dump(h.k); !slices.Equal(got, want) {
					t.Fatalf("while draining: got %q, want %q", got, want)
				}
				if err := h.k.SetConnections(key, e2.AddrPort(), 0, 0); err != nil {
					t.Fatal(err)
				}
				h.sync(t, p, false) // an unrelated (empty) partial sync re-checks
			},
			wantEnd: []string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1"},
		},
		{
			name: "deleted after the timeout", proto: plan.TCP, conns: 1,
			steps: func(t *testing.T, h *harness, p *plan.Plan) {
				h.clock.t = h.clock.t.Add(30 * time.Second)
				h.sync(t, p, true)
				if got := dump(h.k); len(got) != 1 || !strings.Contains(got[0], "10.244.1.2:80 w=0") {
					t.Fatalf("deleted before the timeout: %q", got)
				}
				h.clock.t = h.clock.t.Add(time.Minute)
				h.sync(t, p, true)
			},
			wantEnd: []string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1"},
		},
		{
			name: "comes back while draining", proto: plan.TCP, conns: 1,
			steps: func(t *testing.T, h *harness, p *plan.Plan) {
				back := svc("a", "10.96.0.1", 80, e1, e2)
				h.sync(t, mkPlan(back), false, back.Name)
			},
			wantEnd: []string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1, 10.244.1.2:80 w=1"},
		},
		{
			name: "no connections: deleted at once", proto: plan.TCP, conns: 0,
			steps:   func(t *testing.T, h *harness, p *plan.Plan) {},
			wantEnd: []string{"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1"},
		},
		{
			name: "UDP is deleted at once", proto: plan.UDP, conns: 3,
			steps:   func(t *testing.T, h *harness, p *plan.Plan) {},
			wantEnd: []string{"UDP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{GracefulTerminationTimeout: time.Minute})
			mk := func(eps ...plan.Endpoint) *plan.Service {
				s := svc("a", "10.96.0.1", 80, eps...)
				s.Name.Protocol = tc.proto
				return s
			}
			s := mk(e1, e2)
			h.sync(t, mkPlan(s), true)
			k := key
			k.Protocol = protoNum(tc.proto)
			if err := h.k.SetConnections(k, e2.AddrPort(), tc.conns, 0); err != nil {
				t.Fatal(err)
			}
			p := mkPlan(mk(e1))
			h.sync(t, p, false, s.Name)
			tc.steps(t, h, p)
			if got := dump(h.k); !slices.Equal(got, tc.wantEnd) {
				t.Fatalf("got %q, want %q", got, tc.wantEnd)
			}
		})
	}
}

func TestMasquerade(t *testing.T) {
	e1 := ep("10.244.1.1:8080", true)
	clusterIP := netip.MustParseAddr("10.96.0.10")
	pod := netip.MustParseAddr("10.244.3.3")
	outside := netip.MustParseAddr("198.51.100.1")
	tests := []struct {
		name     string
		plan     func() *plan.Plan
		src, dst netip.Addr
		port     uint16
		local    bool
		endpoint netip.AddrPort
		want     Verdict
	}{
		{"pod to cluster IP keeps its source", func() *plan.Plan { return mkPlan(svc("a", "10.96.0.10", 80, e1)) },
			pod, clusterIP, 80, false, e1.AddrPort(), Verdict{}},
		{"off-cluster source to cluster IP is masqueraded", func() *plan.Plan { return mkPlan(svc("a", "10.96.0.10", 80, e1)) },
			outside, clusterIP, 80, false, e1.AddrPort(), Verdict{Masquerade: true}},
		{"masqueradeAll", func() *plan.Plan {
			p := mkPlan(svc("a", "10.96.0.10", 80, e1))
			p.MasqueradeAll = true
			return p
		}, pod, clusterIP, 80, false, e1.AddrPort(), Verdict{Masquerade: true}},
		{"no cluster CIDRs: pods keep their source", func() *plan.Plan {
			p := mkPlan(svc("a", "10.96.0.10", 80, e1))
			p.ClusterCIDRs = nil
			return p
		}, outside, clusterIP, 80, false, e1.AddrPort(), Verdict{}},
		{"node itself is masqueraded", func() *plan.Plan { return mkPlan(svc("a", "10.96.0.10", 80, e1)) },
			clusterIP, clusterIP, 80, true, e1.AddrPort(), Verdict{Masquerade: true}},
		{"hairpin is masqueraded", func() *plan.Plan { return mkPlan(svc("a", "10.96.0.10", 80, e1)) },
			e1.IP, clusterIP, 80, false, e1.AddrPort(), Verdict{Masquerade: true}},
		{"node port, policy Cluster, is masqueraded", func() *plan.Plan {
			s := svc("a", "10.96.0.10", 80, e1)
			s.NodePort = 30080
			return mkPlan(s)
		}, outside, nodeIP, 30080, false, e1.AddrPort(), Verdict{Masquerade: true}},
		{"node port, policy Local, keeps the client source", func() *plan.Plan {
			s := svc("a", "10.96.0.10", 80, e1)
			s.NodePort = 30080
			s.ExternalPolicyLocal = true
			return mkPlan(s)
		}, outside, nodeIP, 30080, false, e1.AddrPort(), Verdict{}},
		{"no endpoints: rejected", func() *plan.Plan { return mkPlan(svc("a", "10.96.0.10", 80)) },
			pod, clusterIP, 80, false, netip.AddrPort{}, Verdict{Reject: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.sync(t, tc.plan(), true)
			if got := h.fw.Packet(tc.src, tc.dst, tc.port, tc.local, tc.endpoint); got != tc.want {
				t.Fatalf("verdict = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSysctls(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want map[string]string
	}{
		{"default", Config{}, map[string]string{
			"net/ipv4/vs/conntrack": "1", "net/ipv4/vs/expire_nodest_conn": "1",
			"net/ipv4/vs/expire_quiescent_template": "1", "net/ipv4/ip_forward": "1",
			"net/ipv4/conf/all/arp_ignore": "0",
		}},
		{"strict ARP", Config{StrictARP: true}, map[string]string{
			"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.sync(t, mkPlan(), true)
			for path, want := range tc.want {
				if got, _ := h.k.Sysctl(path); got != want {
					t.Errorf("%s = %q, want %q", path, got, want)
				}
			}
		})
	}
}

func TestNodePortsOnAllLocalAddresses(t *testing.T) {
	h := newHarness(t, Config{})
	h.k.SetLocalAddresses(netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("10.0.0.5"),
		netip.MustParseAddr("fd00::5"), netip.MustParseAddr("fe80::1"))
	s := svc("a", "10.96.0.1", 80, ep("10.244.1.1:80", true))
	s.NodePort = 30000
	p := mkPlan(s)
	p.NodeIPs = nil
	p.NodePortsOnAllLocalAddresses = true
	h.sync(t, p, true)
	want := []string{
		"TCP/10.0.0.5:30000 rr -> 10.244.1.1:80 w=1",
		"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1",
		"TCP/192.168.1.10:30000 rr -> 10.244.1.1:80 w=1",
	}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCleanup(t *testing.T) {
	h := newHarness(t, Config{})
	foreign := VSKey{Address: netip.MustParseAddr("172.16.0.1"), Protocol: unix.IPPROTO_TCP, Port: 80}
	if err := h.k.AddVirtualServer(&VirtualServer{VSKey: foreign, Scheduler: "rr"}); err != nil {
		t.Fatal(err)
	}
	s := svc("a", "10.96.0.1", 80, ep("10.244.1.1:80", true))
	s.NodePort = 30000
	h.sync(t, mkPlan(s), true)
	for range 2 { // idempotent
		if err := h.b.Cleanup(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := dump(h.k); !slices.Equal(got, []string{"TCP/172.16.0.1:80 rr -> "}) {
		t.Fatalf("after cleanup: %q", got)
	}
	if _, err := h.k.DeviceAddresses("kube-ipvs0"); err == nil {
		t.Error("kube-ipvs0 still exists")
	}
	if h.fw.Exists() {
		t.Error("nftables table still exists")
	}
	// A sync after cleanup starts from scratch.
	h.sync(t, mkPlan(s), false)
	if len(dump(h.k)) != 3 {
		t.Fatalf("sync after cleanup: %q", dump(h.k))
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Scheduler: "fastest"}, `scheduler "fastest"`},
		{Config{Family: "IPv5"}, `family "IPv5"`},
		{Config{GracefulTerminationTimeout: -time.Second}, "gracefulTerminationTimeout"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			_, err := NewWithKernel(tc.cfg, zap.NewNop(), NewFake(), NewFakeFirewall())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

func TestFamilyMismatch(t *testing.T) {
	h := newHarness(t, Config{Family: plan.IPv6})
	if err := h.b.Sync(context.Background(), mkPlan(), nil, true); err == nil {
		t.Fatal("IPv6 backend accepted an IPv4 plan")
	}
}

func TestIPv6(t *testing.T) {
	h := newHarness(t, Config{Family: plan.IPv6})
	s := svc("a", "fd00:96::1", 80, ep("[fd00:244::1]:80", true))
	p := mkPlan(s)
	p.Family = plan.IPv6
	p.NodeIPs = []netip.Addr{nodeIP, netip.MustParseAddr("fd00::10")}
	s.NodePort = 30000
	h.sync(t, p, true)
	want := []string{
		"TCP/[fd00:96::1]:80 rr -> [fd00:244::1]:80 w=1",
		"TCP/[fd00::10]:30000 rr -> [fd00:244::1]:80 w=1",
	}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, _ := h.k.Sysctl("net/ipv6/conf/all/forwarding"); got != "1" {
		t.Errorf("IPv6 forwarding = %q", got)
	}
}
