package ipvs

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Tests of the config fields the backend acts on beyond scheduling:
// loadBalancerSourceRanges, IPVS timeouts and excludeCIDRs, against the fakes.

func TestLoadBalancerSourceRanges(t *testing.T) {
	e1 := ep("10.244.1.1:8080", true)
	lbIP := netip.MustParseAddr("203.0.113.10")
	inside := netip.MustParseAddr("198.51.100.7")
	outside := netip.MustParseAddr("192.0.2.1")
	lbSvc := func(ranges ...string) *plan.Service {
		s := svc("a", "10.96.0.10", 80, e1)
		s.LoadBalancerIPs = []netip.Addr{lbIP}
		for _, r := range ranges {
			s.LoadBalancerSourceRanges = append(s.LoadBalancerSourceRanges, netip.MustParsePrefix(r))
		}
		return s
	}
	tests := []struct {
		name     string
		svc      *plan.Service
		src, dst netip.Addr
		local    bool
		wantDrop bool
	}{
		{"source inside the ranges passes", lbSvc("198.51.100.0/24"), inside, lbIP, false, false},
		{"source outside the ranges is dropped", lbSvc("198.51.100.0/24"), outside, lbIP, false, true},
		{"any of several ranges", lbSvc("192.0.2.0/30", "198.51.100.0/24"), outside, lbIP, false, false},
		{"no ranges: open", lbSvc(), outside, lbIP, false, false},
		{"pod outside the ranges is dropped", lbSvc("198.51.100.0/24"), netip.MustParseAddr("10.244.3.3"), lbIP, false, true},
		{"cluster IP is not restricted", lbSvc("198.51.100.0/24"), outside, netip.MustParseAddr("10.96.0.10"), false, false},
		{"node, node IP in the ranges, from the LB IP", lbSvc("192.168.1.0/24"), lbIP, lbIP, true, false},
		{"node, node IP in the ranges, from the node IP", lbSvc("192.168.1.0/24"), nodeIP, lbIP, true, false},
		{"node, node IP outside the ranges, is dropped like upstream", lbSvc("198.51.100.0/24"), lbIP, lbIP, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.sync(t, mkPlan(tc.svc), true)
			if got := h.fw.Packet(tc.src, tc.dst, 80, tc.local, e1.AddrPort()); got.Drop != tc.wantDrop {
				t.Fatalf("verdict %+v, want drop=%v", got, tc.wantDrop)
			}
		})
	}

	t.Run("partial syncs add and remove the ranges", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.sync(t, mkPlan(lbSvc()), true)
		p := mkPlan(lbSvc("198.51.100.0/24"))
		h.sync(t, p, false, name("a"))
		if !h.fw.Packet(outside, lbIP, 80, false, e1.AddrPort()).Drop {
			t.Fatal("ranges added by a partial sync not enforced")
		}
		h.sync(t, mkPlan(lbSvc()), false, name("a"))
		if h.fw.Packet(outside, lbIP, 80, false, e1.AddrPort()).Drop {
			t.Fatal("ranges removed by a partial sync still enforced")
		}
		if n := h.fw.Len(); n == 0 || h.fw.Has(Element{Set: SetLBFirewall, Addr: lbIP, Proto: unix.IPPROTO_TCP, Port: 80}) {
			t.Fatalf("lb-firewall element left (%d elements)", n)
		}
	})
}

func TestSourceRangeElements(t *testing.T) {
	lbIP := netip.MustParseAddr("203.0.113.10")
	tests := []struct {
		name    string
		ranges  []string
		nodeIPs []netip.Addr
		want    []string // Src of each lb-source-ranges element
	}{
		{"one range", []string{"198.51.100.0/24"}, nil, []string{"198.51.100.0/24"}},
		{"nested ranges merge (the kernel refuses overlaps)", []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32"}, nil, []string{"10.0.0.0/8"}},
		{"unmasked range is masked", []string{"198.51.100.7/24"}, nil, []string{"198.51.100.0/24"}},
		{"node IP inside adds the LB IP itself", []string{"192.168.1.0/24"}, []netip.Addr{nodeIP}, []string{"192.168.1.0/24", "203.0.113.10/32"}},
		{"LB IP already inside a range is not added twice", []string{"203.0.113.0/24", "192.168.1.0/24"}, []netip.Addr{nodeIP}, []string{"192.168.1.0/24", "203.0.113.0/24"}},
		{"node IP outside adds nothing", []string{"198.51.100.0/24"}, []netip.Addr{nodeIP}, []string{"198.51.100.0/24"}},
		{"no ranges, no elements", nil, []netip.Addr{nodeIP}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ranges []netip.Prefix
			for _, r := range tc.ranges {
				ranges = append(ranges, netip.MustParsePrefix(r))
			}
			elems := appendSourceRanges(nil, ranges, lbIP, unix.IPPROTO_TCP, 443, tc.nodeIPs)
			var got []string
			fw := 0
			for _, e := range elems {
				switch e.Set {
				case SetLBSourceRanges:
					got = append(got, e.Src().String())
				case SetLBFirewall:
					fw++
				}
				if e.Addr != lbIP || e.Port != 443 || e.Proto != unix.IPPROTO_TCP {
					t.Errorf("element %s is not for %s TCP 443", e, lbIP)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("source ranges %q, want %q", got, tc.want)
			}
			if wantFW := min(1, len(tc.want)); fw != wantFW {
				t.Errorf("%d lb-firewall elements, want %d", fw, wantFW)
			}
		})
	}
}

func TestElementKeyRoundTrip(t *testing.T) {
	for _, e := range []Element{
		sourceRange(netip.MustParseAddr("203.0.113.10"), unix.IPPROTO_TCP, 80, netip.MustParsePrefix("10.0.0.0/8")),
		sourceRange(netip.MustParseAddr("fd00::10"), unix.IPPROTO_UDP, 53, netip.MustParsePrefix("fd00:1::/64")),
		{Set: SetHairpin, Addr: netip.MustParseAddr("10.244.1.1"), Proto: unix.IPPROTO_TCP, Port: 8080, Addr2: netip.MustParseAddr("10.244.1.1")},
	} {
		if got := e.key().elem(); got != e {
			t.Errorf("%s round-trips to %s", e, got)
		}
	}
}

func TestTimeouts(t *testing.T) {
	def := Timeouts{TCP: 15 * time.Minute, TCPFin: 2 * time.Minute, UDP: 5 * time.Minute}
	tests := []struct {
		name      string
		cfg       Timeouts
		want      Timeouts
		wantCalls int
	}{
		{"unset: the kernel's stay, no call", Timeouts{}, def, 0},
		{"all three", Timeouts{TCP: time.Hour, TCPFin: 30 * time.Second, UDP: 10 * time.Second},
			Timeouts{TCP: time.Hour, TCPFin: 30 * time.Second, UDP: 10 * time.Second}, 1},
		{"one: the others stay", Timeouts{UDP: 10 * time.Second}, Timeouts{TCP: 15 * time.Minute, TCPFin: 2 * time.Minute, UDP: 10 * time.Second}, 1},
		{"equal to the kernel's: no call", Timeouts{TCP: 15 * time.Minute}, def, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Timeouts: tc.cfg})
			h.sync(t, mkPlan(), true)
			got, _ := h.k.Timeouts()
			if got != tc.want {
				t.Errorf("kernel timeouts %s, want %s", got, tc.want)
			}
			if n := h.k.Calls["SetTimeouts"]; n != tc.wantCalls {
				t.Errorf("%d SetTimeouts calls, want %d", n, tc.wantCalls)
			}
		})
	}

	t.Run("a full sync repairs a changed timeout, a partial one does not look", func(t *testing.T) {
		want := Timeouts{TCP: time.Hour}
		h := newHarness(t, Config{Timeouts: want})
		h.sync(t, mkPlan(), true)
		if err := h.k.SetTimeouts(Timeouts{TCP: time.Minute}); err != nil {
			t.Fatal(err)
		}
		h.sync(t, mkPlan(), false)
		if got, _ := h.k.Timeouts(); got.TCP != time.Minute {
			t.Fatalf("partial sync changed the TCP timeout to %s", got.TCP)
		}
		h.sync(t, mkPlan(), true)
		if got, _ := h.k.Timeouts(); got.TCP != time.Hour {
			t.Fatalf("full sync left the TCP timeout at %s, want 1h", got.TCP)
		}
	})
}

func TestExcludeCIDRs(t *testing.T) {
	h := newHarness(t, Config{ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.96.100.0/24")}})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.k.EnsureDevice("kube-ipvs0"))
	excludedDev := netip.MustParseAddr("10.96.100.1")
	staleDev := netip.MustParseAddr("10.96.9.9")
	for _, a := range []netip.Addr{excludedDev, staleDev} {
		must(h.k.AddDeviceAddress("kube-ipvs0", a))
	}
	vs := func(a netip.Addr, port uint16) VSKey {
		return VSKey{Address: a, Protocol: unix.IPPROTO_TCP, Port: port}
	}
	// Made by hand (or by another tool) on our addresses: the node IP and
	// the device. Only those outside excludeCIDRs are stale.
	for _, k := range []VSKey{vs(nodeIP, 9999), vs(excludedDev, 80), vs(staleDev, 80)} {
		must(h.k.AddVirtualServer(&VirtualServer{VSKey: k, Scheduler: "wlc"}))
	}
	s := svc("a", "10.96.0.1", 80, ep("10.244.1.1:80", true))
	s.NodePort = 30000
	h.sync(t, mkPlan(s), true)
	want := []string{
		"TCP/10.96.0.1:80 rr -> 10.244.1.1:80 w=1",
		"TCP/10.96.100.1:80 wlc -> ",
		"TCP/192.168.1.10:30000 rr -> 10.244.1.1:80 w=1",
		"TCP/192.168.1.10:9999 wlc -> ",
	}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("after full sync:\n got %q\nwant %q", got, want)
	}
	// Cleanup spares them too, but removes our own node port on the
	// excluded node address.
	if err := h.b.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = []string{"TCP/10.96.100.1:80 wlc -> ", "TCP/192.168.1.10:9999 wlc -> "}
	if got := dump(h.k); !slices.Equal(got, want) {
		t.Fatalf("after cleanup:\n got %q\nwant %q", got, want)
	}
}

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Timeouts: Timeouts{TCP: -time.Second}}, "tcpTimeout"},
		{Config{Timeouts: Timeouts{TCPFin: 500 * time.Millisecond}}, "tcpFinTimeout 500ms: must be 0"},
		{Config{Timeouts: Timeouts{UDP: time.Millisecond}}, "udpTimeout"},
		{Config{ExcludeCIDRs: []netip.Prefix{{}}}, "excludeCIDRs[0]"},
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

// Two Services claiming one LB IP and port with nested ranges: the kernel's
// range set refuses overlapping elements, which must not fail the table.
func TestConflictingSourceRanges(t *testing.T) {
	lbIP := netip.MustParseAddr("203.0.113.10")
	mk := func(n, clusterIP, r string) *plan.Service {
		s := svc(n, clusterIP, 80, ep("10.244.1.1:8080", true))
		s.LoadBalancerIPs = []netip.Addr{lbIP}
		s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix(r)}
		return s
	}
	a, b := mk("a", "10.96.0.10", "10.0.0.0/8"), mk("b", "10.96.0.11", "10.1.0.0/16")

	t.Run("the fake refuses overlaps like the kernel", func(t *testing.T) {
		fw := NewFakeFirewall()
		e := func(p string) Element {
			return sourceRange(lbIP, unix.IPPROTO_TCP, 80, netip.MustParsePrefix(p))
		}
		if err := fw.Replace(&Ruleset{Elements: []Element{e("10.0.0.0/8"), e("10.1.0.0/16")}}); err == nil {
			t.Fatal("Replace accepted overlapping ranges")
		}
		if err := fw.Replace(&Ruleset{Elements: []Element{e("10.0.0.0/8")}}); err != nil {
			t.Fatal(err)
		}
		if err := fw.Update([]Element{e("10.1.0.0/16")}, nil); err == nil {
			t.Fatal("Update accepted an overlapping range")
		}
		if err := fw.Update([]Element{e("10.1.0.0/16")}, []Element{e("10.0.0.0/8")}); err != nil {
			t.Fatalf("replacing a range in one update: %v", err)
		}
	})

	t.Run("a full sync merges them", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.sync(t, mkPlan(a, b), true)
		if h.fw.Packet(netip.MustParseAddr("10.2.0.1"), lbIP, 80, false, netip.AddrPort{}).Drop {
			t.Error("source in the wider range dropped")
		}
		if !h.fw.Packet(netip.MustParseAddr("192.0.2.1"), lbIP, 80, false, netip.AddrPort{}).Drop {
			t.Error("source outside both ranges not dropped")
		}
	})

	t.Run("a partial sync that conflicts recovers at the next sync", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.sync(t, mkPlan(a), true)
		p := mkPlan(a, b)
		if err := h.b.Sync(context.Background(), p, map[plan.ServicePortName]struct{}{b.Name: {}}, false); err == nil {
			t.Fatal("partial sync added an overlapping range without an error: the case this test is about did not happen")
		}
		h.sync(t, p, false) // a full one, after the failure
		if h.fw.Packet(netip.MustParseAddr("10.2.0.1"), lbIP, 80, false, netip.AddrPort{}).Drop {
			t.Error("source in the wider range dropped after recovery")
		}
	})
}
