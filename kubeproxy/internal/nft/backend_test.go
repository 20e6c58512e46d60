package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

const fakeNodeIP = "192.168.1.10"

// fakeWorld drives a Backend over the fake kernel with plans from the real
// planner.
type fakeWorld struct {
	t        *testing.T
	k        *fakeKernel
	b        *Backend
	services plan.ServiceMap
	eps      plan.EndpointsMap
	cfg      plan.Config
	prev     *plan.Plan
}

func newFakeWorld(t *testing.T) *fakeWorld {
	k := newFakeKernel()
	return &fakeWorld{
		t: t, k: k,
		b:        newBackend(Config{Family: plan.IPv4}, zap.NewNop(), k),
		services: plan.ServiceMap{},
		eps:      plan.EndpointsMap{},
		cfg:      plan.Config{NodePortPrimary: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}},
	}
}

func (w *fakeWorld) set(sp *plan.ServicePort, eps ...plan.Endpoint) plan.ServicePortName {
	w.services[sp.Name] = sp
	w.eps[sp.Name] = eps
	return sp.Name
}

func (w *fakeWorld) remove(n plan.ServicePortName) {
	delete(w.services, n)
	delete(w.eps, n)
}

// sync syncs everything (no names) or only the named services.
func (w *fakeWorld) sync(changed ...plan.ServicePortName) error {
	var ch map[plan.ServicePortName]struct{}
	if len(changed) > 0 {
		ch = map[plan.ServicePortName]struct{}{}
		for _, n := range changed {
			ch[n] = struct{}{}
		}
	}
	node := plan.NodeFacts{PrimaryIPs: []netip.Addr{netip.MustParseAddr(fakeNodeIP)}}
	p := plan.Build(plan.IPv4, w.services, w.eps, node, w.cfg, w.prev, ch)
	err := w.b.Sync(context.Background(), p, ch, ch == nil)
	if err == nil {
		w.prev = p
	}
	return err
}

func (w *fakeWorld) mustSync(changed ...plan.ServicePortName) {
	w.t.Helper()
	if err := w.sync(changed...); err != nil {
		w.t.Fatalf("sync: %v", err)
	}
}

func fsvc(name, ip string, port uint16) *plan.ServicePort {
	return &plan.ServicePort{Name: plan.ServicePortName{Namespace: "ns", Name: name, Port: "p", Protocol: plan.TCP},
		ClusterIPs: []netip.Addr{netip.MustParseAddr(ip)}, Port: port}
}

func fep(ip string, local bool) plan.Endpoint {
	return plan.Endpoint{IP: netip.MustParseAddr(ip), Port: 8080, Local: local, Ready: true, Serving: true}
}

func tcp(src, dst string, port uint16) packet {
	return packet{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: plan.TCP, dport: port}
}

// spread connects n times and counts the endpoints reached.
func spread(w *walker, p packet, n int) map[string]int {
	got := map[string]int{}
	for range n {
		o := w.connect(p)
		switch {
		case o.dnat.IsValid():
			got[o.dnat.Addr().String()]++
		case o.rejected:
			got["rejected"]++
		case o.dropped:
			got["dropped"]++
		default:
			got["untouched"]++
		}
	}
	return got
}

// spreadClients makes 2000 connections from 250 clients (prefix + 1..250).
func spreadClients(w *walker, srcPrefix, dst string, port uint16) map[string]int {
	got := map[string]int{}
	for i := range 2000 {
		for k, v := range spread(w, tcp(fmt.Sprintf("%s%d", srcPrefix, i%250+1), dst, port), 1) {
			got[k] += v
		}
	}
	return got
}

func wantEven(t *testing.T, got map[string]int, n int, ips ...string) {
	t.Helper()
	if len(got) != len(ips) {
		t.Fatalf("reached %v, want exactly %v", got, ips)
	}
	for _, ip := range ips {
		if c := got[ip]; c < n/len(ips)*7/10 || c > n/len(ips)*13/10 {
			t.Errorf("%s got %d of %d, want about %d (all: %v)", ip, c, n, n/len(ips), got)
		}
	}
}

func TestServiceTraffic(t *testing.T) {
	const pod, outside = "10.244.1.5", "172.16.0.9"
	for _, tc := range []struct {
		name    string
		setup   func(w *fakeWorld)
		pkt     packet
		want    []string // endpoints reached evenly
		verdict string   // "rejected", "dropped" or "untouched" instead
		marked  bool
	}{
		{
			name: "cluster IP from a pod: every endpoint, not masqueraded",
			setup: func(w *fakeWorld) {
				w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true), fep("10.244.2.1", false), fep("10.244.3.1", false))
			},
			pkt: tcp(pod, "10.96.0.1", 80), want: []string{"10.244.1.1", "10.244.2.1", "10.244.3.1"},
		},
		{
			name:  "cluster IP from outside the cluster CIDR: masqueraded",
			setup: func(w *fakeWorld) { w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true)) },
			pkt:   tcp(outside, "10.96.0.1", 80), want: []string{"10.244.1.1"}, marked: true,
		},
		{
			name:  "wrong port on a cluster IP is not translated",
			setup: func(w *fakeWorld) { w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true)) },
			pkt:   tcp(pod, "10.96.0.1", 81), verdict: "untouched",
		},
		{
			name: "node port: every endpoint, masqueraded",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.NodePort = 30001
				w.set(s, fep("10.244.1.1", true), fep("10.244.2.1", false))
			},
			pkt: tcp(outside, fakeNodeIP, 30001), want: []string{"10.244.1.1", "10.244.2.1"}, marked: true,
		},
		{
			name: "externalTrafficPolicy=Local node port: local endpoints, source kept",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.NodePort, s.ExternalPolicyLocal = 30001, true
				w.set(s, fep("10.244.1.1", true), fep("10.244.2.1", false))
			},
			pkt: tcp(outside, fakeNodeIP, 30001), want: []string{"10.244.1.1"},
		},
		{
			name: "externalTrafficPolicy=Local from a pod short-circuits to every endpoint",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.ExternalIPs, s.ExternalPolicyLocal = []netip.Addr{netip.MustParseAddr("203.0.113.1")}, true
				w.set(s, fep("10.244.1.1", true), fep("10.244.2.1", false))
			},
			pkt: tcp(pod, "203.0.113.1", 80), want: []string{"10.244.1.1", "10.244.2.1"},
		},
		{
			name: "externalTrafficPolicy=Local without local endpoints drops external traffic",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.NodePort, s.ExternalPolicyLocal = 30001, true
				w.set(s, fep("10.244.2.1", false))
			},
			pkt: tcp(outside, fakeNodeIP, 30001), verdict: "dropped",
		},
		{
			name: "internalTrafficPolicy=Local: local endpoints only",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.InternalPolicyLocal = true
				w.set(s, fep("10.244.1.1", true), fep("10.244.2.1", false), fep("10.244.1.2", true))
			},
			pkt: tcp(pod, "10.96.0.1", 80), want: []string{"10.244.1.1", "10.244.1.2"},
		},
		{
			name:  "no endpoints: rejected, never blackholed",
			setup: func(w *fakeWorld) { w.set(fsvc("a", "10.96.0.1", 80)) },
			pkt:   tcp(pod, "10.96.0.1", 80), verdict: "rejected",
		},
		{
			name: "no endpoints on a node port: rejected",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.NodePort = 30001
				w.set(s)
			},
			pkt: tcp(outside, fakeNodeIP, 30001), verdict: "rejected",
		},
		{
			name: "terminating endpoints serve only while none is ready",
			setup: func(w *fakeWorld) {
				term := fep("10.244.9.9", true)
				term.Ready, term.Terminating = false, true
				w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true), term)
			},
			pkt: tcp(pod, "10.96.0.1", 80), want: []string{"10.244.1.1"},
		},
		{
			name: "load balancer IP from an allowed range",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.7")}
				s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/24")}
				w.set(s, fep("10.244.1.1", true))
			},
			pkt: tcp(outside, "203.0.113.7", 80), want: []string{"10.244.1.1"}, marked: true,
		},
		{
			name: "load balancer IP from outside the ranges is dropped",
			setup: func(w *fakeWorld) {
				s := fsvc("a", "10.96.0.1", 80)
				s.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.7")}
				s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
				w.set(s, fep("10.244.1.1", true))
			},
			pkt: tcp(outside, "203.0.113.7", 80), verdict: "dropped",
		},
		{
			name: "masqueradeAll masquerades pods too",
			setup: func(w *fakeWorld) {
				w.cfg.MasqueradeAll = true
				w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true))
			},
			pkt: tcp(pod, "10.96.0.1", 80), want: []string{"10.244.1.1"}, marked: true,
		},
		{
			name: "UDP and TCP on the same port are separate services",
			setup: func(w *fakeWorld) {
				w.set(fsvc("a", "10.96.0.1", 53), fep("10.244.1.1", true))
				u := fsvc("a-udp", "10.96.0.1", 53)
				u.Name.Protocol = plan.UDP
				w.set(u, fep("10.244.2.2", true))
			},
			pkt: packet{src: netip.MustParseAddr(pod), dst: netip.MustParseAddr("10.96.0.1"), proto: plan.UDP, dport: 53}, want: []string{"10.244.2.2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFakeWorld(t)
			tc.setup(w)
			w.mustSync()
			walk := newWalker(w.k, fakeNodeIP)
			const n = 3000
			got := spread(walk, tc.pkt, n)
			if tc.verdict != "" {
				if got[tc.verdict] != n {
					t.Fatalf("outcomes %v, want all %s", got, tc.verdict)
				}
				return
			}
			wantEven(t, got, n, tc.want...)
			if o := walk.connect(tc.pkt); o.marked != tc.marked || o.masq != tc.marked {
				t.Errorf("marked=%v masqueraded=%v, want %v", o.marked, o.masq, tc.marked)
			}
		})
	}
}

func TestHairpinIsMasqueraded(t *testing.T) {
	w := newFakeWorld(t)
	w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true))
	w.mustSync()
	o := newWalker(w.k).connect(tcp("10.244.1.1", "10.96.0.1", 80))
	if o.dnat.Addr().String() != "10.244.1.1" || !o.masq {
		t.Fatalf("endpoint to its own service: %+v, want DNAT to itself and masquerade", o)
	}
}

func TestSessionAffinitySticks(t *testing.T) {
	w := newFakeWorld(t)
	s := fsvc("a", "10.96.0.1", 80)
	s.AffinityTimeout = 3 * time.Hour
	w.set(s, fep("10.244.1.1", true), fep("10.244.2.1", true), fep("10.244.3.1", true))
	w.mustSync()
	walk := newWalker(w.k)
	firsts := map[string]int{}
	for i := range 300 {
		client := fmt.Sprintf("10.244.7.%d", i%250+1)
		got := spread(walk, tcp(client, "10.96.0.1", 80), 20)
		if len(got) != 1 {
			t.Fatalf("client %s reached %v, want one endpoint", client, got)
		}
		for ip := range got {
			firsts[ip]++
		}
	}
	// Different clients still spread over every endpoint.
	if len(firsts) != 3 {
		t.Fatalf("first picks %v, want all three endpoints", firsts)
	}
}

func TestIncrementalSyncs(t *testing.T) {
	w := newFakeWorld(t)
	a := w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true), fep("10.244.1.2", true))
	b := w.set(fsvc("b", "10.96.0.2", 80), fep("10.244.2.1", true), fep("10.244.2.2", true))
	w.mustSync()
	walk := newWalker(w.k)

	t.Run("an endpoint change reaches only the new endpoints", func(t *testing.T) {
		w.eps[a] = []plan.Endpoint{fep("10.244.1.1", true), fep("10.244.1.3", true), fep("10.244.1.4", true)}
		before := w.k.txs
		w.mustSync(a)
		if w.k.txs != before+1 {
			t.Fatalf("%d transactions for one change, want 1", w.k.txs-before)
		}
		wantEven(t, spread(walk, tcp("10.244.9.9", "10.96.0.1", 80), 3000), 3000, "10.244.1.1", "10.244.1.3", "10.244.1.4")
		wantEven(t, spread(walk, tcp("10.244.9.9", "10.96.0.2", 80), 2000), 2000, "10.244.2.1", "10.244.2.2")
	})
	t.Run("losing every endpoint rejects, getting them back serves", func(t *testing.T) {
		w.eps[b] = nil
		w.mustSync(b)
		if got := spread(walk, tcp("10.244.9.9", "10.96.0.2", 80), 10); got["rejected"] != 10 {
			t.Fatalf("got %v, want rejected", got)
		}
		w.eps[b] = []plan.Endpoint{fep("10.244.2.7", true)}
		w.mustSync(b)
		wantEven(t, spread(walk, tcp("10.244.9.9", "10.96.0.2", 80), 100), 100, "10.244.2.7")
	})
	t.Run("an unchanged service named as changed costs nothing", func(t *testing.T) {
		before := w.k.txs
		w.mustSync(a, b)
		if w.k.txs != before {
			t.Fatalf("a transaction for nothing")
		}
	})
	t.Run("removing services leaves no chain or element behind", func(t *testing.T) {
		w.remove(a)
		w.remove(b)
		w.mustSync(a, b)
		for name := range w.k.chains {
			if strings.Contains(name, "pick") || strings.Contains(name, "svc-") {
				t.Errorf("chain %s left behind", name)
			}
		}
		for id := range w.k.elems {
			if id.set != w.b.f.nodeIPs() {
				t.Errorf("element left in %s", id.set)
			}
		}
	})
}

func TestSharedPickersFollowTheirUsers(t *testing.T) {
	w := newFakeWorld(t)
	a := w.set(fsvc("a", "10.96.0.1", 80), fep("10.244.1.1", true), fep("10.244.1.2", true))
	b := w.set(fsvc("b", "10.96.0.2", 80), fep("10.244.2.1", true))
	w.mustSync()
	// In one transaction a goes 2 -> 1 endpoint and b goes 1 -> 2: the
	// pickers swap users, and neither may be deleted and recreated badly.
	w.eps[a] = []plan.Endpoint{fep("10.244.1.1", true)}
	w.eps[b] = []plan.Endpoint{fep("10.244.2.1", true), fep("10.244.2.2", true)}
	w.mustSync(a, b)
	walk := newWalker(w.k)
	wantEven(t, spread(walk, tcp("10.244.9.9", "10.96.0.1", 80), 100), 100, "10.244.1.1")
	wantEven(t, spread(walk, tcp("10.244.9.9", "10.96.0.2", 80), 2000), 2000, "10.244.2.1", "10.244.2.2")
	f := w.b.f
	pickerOf := func(ip string, n int) string {
		return f.pickCluster(n, shardOf(keyAddrProtoPort(netip.MustParseAddr(ip), plan.TCP, 80)))
	}
	for _, n := range []string{pickerOf("10.96.0.1", 1), pickerOf("10.96.0.2", 2)} {
		if c := w.k.chains[n]; c == nil || len(c.rules) != 1 {
			t.Errorf("picker %s: %+v, want one rule", n, c)
		}
	}
	w.remove(a)
	w.mustSync(a)
	if w.k.chains[pickerOf("10.96.0.1", 1)] != nil {
		t.Error("picker for one endpoint kept after its last user left")
	}
}

func TestFullSyncRepairsAndRestarts(t *testing.T) {
	w := newFakeWorld(t)
	np := fsvc("np", "10.96.0.3", 80)
	np.NodePort = 30003
	w.set(np, fep("10.244.3.1", true))
	aff := fsvc("aff", "10.96.0.4", 80)
	aff.AffinityTimeout = time.Minute
	w.set(aff, fep("10.244.4.1", true), fep("10.244.4.2", true))
	w.mustSync()
	want := snapshot(w.k)

	t.Run("drift is repaired", func(t *testing.T) {
		for id := range w.k.elems {
			if id.set == "ip4-service-ips" {
				delete(w.k.elems, id)
			}
		}
		w.k.chains["ip4-stray"] = &chain{name: "ip4-stray"}
		stray := elem{set: "ip4-no-endpoint-services", key: keyAddrProtoPort(netip.MustParseAddr("10.96.9.9"), plan.TCP, 80), verdict: verdictDrop}
		w.k.elems[stray.id()] = stray
		w.k.chains["ip4-services"].rules = nil
		w.mustSync()
		if got := snapshot(w.k); got != want {
			t.Fatalf("after repair:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("a restarted backend converges without touching the kernel twice", func(t *testing.T) {
		w.b = newBackend(Config{Family: plan.IPv4}, zap.NewNop(), w.k)
		w.prev = nil
		w.mustSync()
		if got := snapshot(w.k); got != want {
			t.Fatalf("after restart:\n%s\nwant:\n%s", got, want)
		}
		before := w.k.txs
		w.mustSync()
		if w.k.txs != before+1 || snapshot(w.k) != want {
			t.Fatal("second full sync changed something")
		}
	})
	t.Run("a failed sync is followed by a full repair", func(t *testing.T) {
		w.k.fail = errors.New("injected")
		w.eps[np.Name] = []plan.Endpoint{fep("10.244.3.2", true)}
		if err := w.sync(np.Name); err == nil {
			t.Fatal("sync succeeded despite the injected failure")
		}
		w.mustSync(np.Name)
		wantEven(t, spread(newWalker(w.k, fakeNodeIP), tcp("172.16.0.1", fakeNodeIP, 30003), 50), 50, "10.244.3.2")
	})
}

func snapshot(k *fakeKernel) string {
	var lines []string
	for n, c := range k.chains {
		lines = append(lines, fmt.Sprintf("chain %s %v", n, c.rules))
	}
	for _, e := range k.elems {
		lines = append(lines, fmt.Sprintf("elem %s %x %x %d %s", e.set, e.key, e.data, e.verdict, e.chain))
	}
	return strings.Join(sortStrings(lines), "\n")
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func TestConflictingExternalIPsDoNotBreakSyncs(t *testing.T) {
	w := newFakeWorld(t)
	for _, name := range []string{"a", "b"} {
		s := fsvc(name, "10.96.0."+map[string]string{"a": "1", "b": "2"}[name], 80)
		s.ExternalIPs = []netip.Addr{netip.MustParseAddr("203.0.113.9")}
		w.set(s, fep("10.244.5."+map[string]string{"a": "1", "b": "2"}[name], true))
	}
	w.mustSync()
	w.eps[w.services[plan.ServicePortName{Namespace: "ns", Name: "b", Port: "p", Protocol: plan.TCP}].Name] = nil
	w.mustSync(plan.ServicePortName{Namespace: "ns", Name: "b", Port: "p", Protocol: plan.TCP})
	got := spread(newWalker(w.k), tcp("172.16.0.1", "203.0.113.9", 80), 20)
	if got["10.244.5.1"] != 20 {
		t.Fatalf("shared external IP reached %v, want the first claimant's endpoint", got)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	bit := 40
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Family: "IPv5"}, "family"},
		{Config{Family: plan.IPv4, MasqueradeBit: &bit}, "masqueradeBit"},
		{Config{Family: plan.IPv4, NetNSFd: -1}, "netNSFd"},
		{Config{Family: plan.IPv4, Table: strings.Repeat("x", 300)}, "table"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := New(tc.cfg, zap.NewNop())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
			}
		})
	}
	if _, err := New(Config{Family: plan.IPv6}, zap.NewNop()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestSyncRejectsAPlanOfTheOtherFamily(t *testing.T) {
	b := newBackend(Config{Family: plan.IPv4}, zap.NewNop(), newFakeKernel())
	err := b.Sync(context.Background(), &plan.Plan{Family: plan.IPv6}, nil, true)
	if err == nil || !strings.Contains(err.Error(), "family") {
		t.Fatalf("got %v, want a family mismatch error", err)
	}
}

func TestServiceChangesShape(t *testing.T) {
	// A service moves between the shared pickers and chains of its own
	// (affinity, externalTrafficPolicy=Local, source ranges) and back, one
	// partial sync at a time; every step must be a valid transaction and
	// serve the right endpoints.
	w := newFakeWorld(t)
	s := fsvc("a", "10.96.0.1", 80)
	s.NodePort = 30001
	s.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	n := w.set(s, fep("10.244.1.1", true), fep("10.244.2.1", false))
	w.mustSync()
	steps := []struct {
		name   string
		change func(s *plan.ServicePort)
	}{
		{"affinity on", func(s *plan.ServicePort) { s.AffinityTimeout = time.Minute }},
		{"externalTrafficPolicy=Local", func(s *plan.ServicePort) { s.ExternalPolicyLocal = true }},
		{"source ranges", func(s *plan.ServicePort) {
			s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}
		}},
		{"back to simple", func(s *plan.ServicePort) {
			s.AffinityTimeout, s.ExternalPolicyLocal, s.LoadBalancerSourceRanges = 0, false, nil
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			cp := *w.services[n]
			step.change(&cp)
			w.services[n] = &cp
			w.mustSync(n)
			walk := newWalker(w.k, fakeNodeIP)
			// Many clients, so affinity does not pin the count to one.
			wantEven(t, spreadClients(walk, "10.244.9.", "10.96.0.1", 80), 2000, "10.244.1.1", "10.244.2.1")
			ext := []string{"10.244.1.1", "10.244.2.1"}
			if cp.ExternalPolicyLocal {
				ext = ext[:1]
			}
			wantEven(t, spreadClients(walk, "172.16.0.", fakeNodeIP, 30001), 2000, ext...)
			wantEven(t, spreadClients(walk, "172.16.0.", "203.0.113.1", 80), 2000, ext...)
		})
	}
	// Back where it started: same kernel state as a fresh build.
	fresh := newFakeWorld(t)
	fresh.set(w.services[n], w.eps[n]...)
	fresh.mustSync()
	if got, want := snapshot(w.k), snapshot(fresh.k); got != want {
		t.Fatalf("after the round trip:\n%s\nwant:\n%s", got, want)
	}
}

func TestClusterCIDRChangeRewritesServiceChains(t *testing.T) {
	w := newFakeWorld(t)
	s := fsvc("a", "10.96.0.1", 80)
	s.ExternalIPs, s.ExternalPolicyLocal = []netip.Addr{netip.MustParseAddr("203.0.113.1")}, true
	w.set(s, fep("10.244.1.1", true), fep("10.244.2.1", false))
	w.mustSync()
	// Pods of a new pod network short-circuit to every endpoint once the
	// cluster CIDRs include it.
	w.cfg.ClusterCIDRs = append(w.cfg.ClusterCIDRs, netip.MustParsePrefix("10.250.0.0/16"))
	w.mustSync(s.Name)
	wantEven(t, spreadClients(newWalker(w.k), "10.250.0.", "203.0.113.1", 80), 2000, "10.244.1.1", "10.244.2.1")
}
