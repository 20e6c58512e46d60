package nft

import (
	"context"
	"fmt"
	"github.com/kubenode/kubenode/kubeproxy/internal/conntrack"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"go.uber.org/zap/zaptest"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// world is a service/endpoint map the tests edit and turn into plans with
// the real planner, then sync through a real Backend into the node netns.
type world struct {
	t        *testing.T
	tp       *topo
	b        *Backend
	services plan.ServiceMap
	eps      plan.EndpointsMap
	prev     *plan.Plan
	cfg      plan.Config
}

func newWorld(t *testing.T) *world {
	needRoot(t)
	tp := newTopo(t)
	b, err := New(Config{Family: plan.IPv4, NetNSFd: int(tp.node)}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Cleanup(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return &world{
		t: t, tp: tp, b: b,
		services: plan.ServiceMap{},
		eps:      plan.EndpointsMap{},
		cfg:      plan.Config{NodePortPrimary: true, ClusterCIDRs: []netip.Prefix{mustPrefix(podCIDR)}},
	}
}

func spn(name string) plan.ServicePortName {
	return plan.ServicePortName{Namespace: "test", Name: name, Port: "http", Protocol: plan.TCP}
}

// ep returns the endpoint of pod i (0-based), ready.
func ep(i int, local bool) plan.Endpoint {
	return plan.Endpoint{IP: netip.MustParseAddr(podIP(i)), Port: 8080, Local: local, Ready: true, Serving: true}
}

func (w *world) set(sp *plan.ServicePort, eps ...plan.Endpoint) {
	w.services[sp.Name] = sp
	w.eps[sp.Name] = eps
}

// sync plans everything and syncs; changed=nil means a full sync.
func (w *world) sync(changed ...plan.ServicePortName) {
	w.t.Helper()
	var ch map[plan.ServicePortName]struct{}
	full := len(changed) == 0
	if !full {
		ch = map[plan.ServicePortName]struct{}{}
		for _, n := range changed {
			ch[n] = struct{}{}
		}
	}
	node := plan.NodeFacts{PrimaryIPs: []netip.Addr{netip.MustParseAddr(nodeIP)}}
	p := plan.Build(plan.IPv4, w.services, w.eps, node, w.cfg, w.prev, ch)
	if err := w.b.Sync(context.Background(), p, ch, full); err != nil {
		w.t.Fatalf("sync: %v", err)
	}
	w.prev = p
}

func svcPort(name, clusterIP string, port uint16) *plan.ServicePort {
	return &plan.ServicePort{Name: spn(name), ClusterIPs: []netip.Addr{netip.MustParseAddr(clusterIP)}, Port: port}
}

// assertSpread checks that n requests reached exactly the wanted pods, each
// a fair share (at least a third of an even split).
func assertSpread(t *testing.T, got map[string]int, n int, want ...string) {
	t.Helper()
	for name, c := range got {
		if !contains(want, name) {
			t.Errorf("%d answers from %q, want only %v (all: %v)", c, name, want, got)
		}
	}
	for _, name := range want {
		if got[name] < n/len(want)/3 {
			t.Errorf("%s answered %d of %d, want about %d (all: %v)", name, got[name], n, n/len(want), got)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestKernelServices(t *testing.T) {
	w := newWorld(t)
	all := []plan.Endpoint{ep(0, true), ep(1, true), ep(2, false)}

	clusterIP := svcPort("web", "10.96.0.10", 80)
	clusterIP.NodePort = 30080
	w.set(clusterIP, all...)

	affinity := svcPort("sticky", "10.96.0.11", 80)
	affinity.AffinityTimeout = time.Hour
	w.set(affinity, all...)

	hairpin := svcPort("hairpin", "10.96.0.12", 80)
	w.set(hairpin, ep(0, true))

	etpLocal := svcPort("etp-local", "10.96.0.13", 80)
	etpLocal.NodePort = 30081
	etpLocal.ExternalPolicyLocal = true
	w.set(etpLocal, ep(0, true), ep(1, false), ep(2, false))

	itpLocal := svcPort("itp-local", "10.96.0.14", 80)
	itpLocal.InternalPolicyLocal = true
	w.set(itpLocal, ep(0, false), ep(1, true), ep(2, false))

	empty := svcPort("empty", "10.96.0.15", 80)
	empty.NodePort = 30082
	w.set(empty)

	terminating := svcPort("terminating", "10.96.0.16", 80)
	term := ep(2, true)
	term.Ready, term.Terminating = false, true
	w.set(terminating, term)

	lb := svcPort("lb", "10.96.0.17", 80)
	lb.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	lb.ExternalIPs = []netip.Addr{netip.MustParseAddr("203.0.113.20")}
	lb.LoadBalancerSourceRanges = []netip.Prefix{mustPrefix("198.51.100.0/24")}
	w.set(lb, ep(1, true))

	lbDenied := svcPort("lb-denied", "10.96.0.18", 80)
	lbDenied.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.11")}
	lbDenied.LoadBalancerSourceRanges = []netip.Prefix{mustPrefix("192.0.2.0/24")}
	w.set(lbDenied, ep(1, true))

	w.sync()

	pod := newClient(w.tp.podc, 2*time.Second)
	ext := newClient(w.tp.ext, 2*time.Second)
	node := newClient(w.tp.node, 2*time.Second)
	const n = 150

	t.Run("cluster IP spreads over every ready endpoint", func(t *testing.T) {
		assertSpread(t, pod.counts("10.96.0.10:80", n), n, "pod1", "pod2", "pod3")
	})
	t.Run("cluster IP from the node itself", func(t *testing.T) {
		assertSpread(t, node.counts("10.96.0.10:80", 60), 60, "pod1", "pod2", "pod3")
	})
	t.Run("node port spreads over every ready endpoint", func(t *testing.T) {
		assertSpread(t, ext.counts(nodeIP+":30080", n), n, "pod1", "pod2", "pod3")
	})
	t.Run("session affinity sticks to one endpoint", func(t *testing.T) {
		got := pod.counts("10.96.0.11:80", 40)
		if len(got) != 1 {
			t.Fatalf("answers from %v, want one endpoint only", got)
		}
		for name := range got {
			if strings.HasPrefix(name, "error") {
				t.Fatalf("requests failed: %v", got)
			}
		}
	})
	t.Run("hairpin: an endpoint reaches itself through its service", func(t *testing.T) {
		self := newClient(w.tp.pods[0], 2*time.Second)
		assertSpread(t, self.counts("10.96.0.12:80", 10), 10, "pod1")
	})
	t.Run("externalTrafficPolicy=Local serves external traffic from local endpoints only", func(t *testing.T) {
		assertSpread(t, ext.counts(nodeIP+":30081", 60), 60, "pod1")
		// Cluster traffic still uses every endpoint.
		assertSpread(t, pod.counts("10.96.0.13:80", n), n, "pod1", "pod2", "pod3")
	})
	t.Run("internalTrafficPolicy=Local serves cluster traffic from local endpoints only", func(t *testing.T) {
		assertSpread(t, pod.counts("10.96.0.14:80", 60), 60, "pod2")
	})
	t.Run("no endpoints: connections are refused at once", func(t *testing.T) {
		for _, c := range []struct {
			name string
			from *client
			addr string
		}{{"pod to cluster IP", pod, "10.96.0.15:80"}, {"node to cluster IP", node, "10.96.0.15:80"}, {"external to node port", ext, nodeIP + ":30082"}} {
			start := time.Now()
			err := dialErr(c.from.ns, c.addr, 3*time.Second)
			if !isRefused(err) {
				t.Errorf("%s: dial %s: %v, want connection refused", c.name, c.addr, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s: refusal took %v", c.name, d)
			}
		}
	})
	t.Run("terminating endpoints serve when no endpoint is ready", func(t *testing.T) {
		assertSpread(t, pod.counts("10.96.0.16:80", 20), 20, "pod3")
		// Once a ready endpoint exists, the terminating one gets nothing.
		w.eps[terminating.Name] = []plan.Endpoint{ep(0, true), term}
		w.sync(terminating.Name)
		assertSpread(t, pod.counts("10.96.0.16:80", 30), 30, "pod1")
	})
	t.Run("load balancer IP and external IP from an allowed source", func(t *testing.T) {
		assertSpread(t, ext.counts("203.0.113.10:80", 20), 20, "pod2")
		assertSpread(t, ext.counts("203.0.113.20:80", 20), 20, "pod2")
	})
	t.Run("load balancer source ranges drop other sources", func(t *testing.T) {
		err := dialErr(w.tp.ext, "203.0.113.11:80", 500*time.Millisecond)
		if err == nil || isRefused(err) {
			t.Fatalf("dial from a source outside the ranges: %v, want a timeout (dropped)", err)
		}
	})
}

func TestKernelNoFailuresWhileOtherServicesChange(t *testing.T) {
	w := newWorld(t)
	web := svcPort("web", "10.96.0.10", 80)
	w.set(web, ep(0, true), ep(1, true), ep(2, true))
	w.sync()

	// 500 requests on one goroutine while 100 syncs add and remove other
	// services on another, paced so the syncs spread over the requests.
	pod := newClient(w.tp.podc, 2*time.Second)
	const requests, syncs = 500, 100
	var done atomic.Int64
	var failures []string
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range requests {
			if _, err := pod.get("10.96.0.10:80"); err != nil {
				failures = append(failures, err.Error())
			}
			done.Add(1)
		}
	}()
	for i := range syncs {
		for done.Load() < int64(i*requests/syncs) {
			time.Sleep(time.Millisecond)
		}
		name := spn(fmt.Sprintf("churn-%d", i%10))
		if _, ok := w.services[name]; !ok {
			w.set(svcPort(name.Name, fmt.Sprintf("10.96.1.%d", i%10+1), 80), ep(i%3, true), ep((i+1)%3, true))
		} else {
			delete(w.services, name)
			delete(w.eps, name)
		}
		w.sync(name)
	}
	<-finished
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during %d syncs: %v", len(failures), requests, syncs, failures[:min(5, len(failures))])
	}
	t.Logf("%d requests, 0 failures, across %d syncs", requests, syncs)
}

func TestKernelFullSyncRepairsDrift(t *testing.T) {
	w := newWorld(t)
	web := svcPort("web", "10.96.0.10", 80)
	w.set(web, ep(0, true), ep(1, true))
	w.sync()
	pod := newClient(w.tp.podc, 2*time.Second)
	assertSpread(t, pod.counts("10.96.0.10:80", 40), 40, "pod1", "pod2")

	// Someone deletes our service map entry and a fixed chain's rules.
	c, err := nftables.New(nftables.WithNetNSFd(int(w.tp.node)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: DefaultTable, Family: nftables.TableFamilyINet}
	c.FlushSet(&nftables.Set{Table: tbl, Name: "ip4-service-ips"})
	c.FlushChain(&nftables.Chain{Table: tbl, Name: "ip4-nat-postrouting"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := dialErr(w.tp.podc, "10.96.0.10:80", 300*time.Millisecond); err == nil {
		t.Fatal("service still reachable after its map entry was deleted: the test broke nothing")
	}
	w.sync() // full
	assertSpread(t, pod.counts("10.96.0.10:80", 40), 40, "pod1", "pod2")
}

func TestKernelCleanupLeavesNothing(t *testing.T) {
	w := newWorld(t)
	w.set(svcPort("web", "10.96.0.10", 80), ep(0, true))
	w.sync()
	c, err := nftables.New(nftables.WithNetNSFd(int(w.tp.node)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTableOfFamily(DefaultTable, nftables.TableFamilyINet); err != nil {
		t.Fatalf("table missing after sync: %v", err)
	}
	for i := range 2 {
		if err := w.b.Cleanup(context.Background()); err != nil {
			t.Fatalf("cleanup #%d: %v", i+1, err)
		}
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		t.Errorf("table %s left behind", tb.Name)
	}
	// And the backend can start over.
	w.sync()
	assertSpread(t, newClient(w.tp.podc, 2*time.Second).counts("10.96.0.10:80", 5), 5, "pod1")
}

func TestKernelDualStackSharesTheTable(t *testing.T) {
	w := newWorld(t)
	web := svcPort("web", "10.96.0.10", 80)
	web.ClusterIPs = append(web.ClusterIPs, netip.MustParseAddr("fd00:96::10"))
	eps := []plan.Endpoint{ep(0, true), ep(1, true), ep(2, true)}
	for i := range 3 {
		e := ep(i, true)
		e.IP = netip.MustParseAddr(podIP6(i))
		eps = append(eps, e)
	}
	w.set(web, eps...)
	w.sync()

	b6, err := New(Config{Family: plan.IPv6, NetNSFd: int(w.tp.node)}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	node := plan.NodeFacts{PrimaryIPs: []netip.Addr{netip.MustParseAddr(nodeIP)}}
	cfg6 := w.cfg
	cfg6.ClusterCIDRs = []netip.Prefix{mustPrefix("fd00:244::/64")}
	p6 := plan.Build(plan.IPv6, w.services, w.eps, node, cfg6, nil, nil)
	if err := b6.Sync(context.Background(), p6, nil, true); err != nil {
		t.Fatalf("IPv6 sync: %v", err)
	}
	pod := newClient(w.tp.podc, 2*time.Second)
	assertSpread(t, pod.counts("[fd00:96::10]:80", 90), 90, "pod1", "pod2", "pod3")
	// The IPv4 backend's objects are untouched by the IPv6 one, and the
	// other way round after an IPv4 full sync.
	w.sync()
	assertSpread(t, pod.counts("10.96.0.10:80", 90), 90, "pod1", "pod2", "pod3")
	assertSpread(t, pod.counts("[fd00:96::10]:80", 30), 30, "pod1", "pod2", "pod3")
	self := newClient(w.tp.pods[1], 2*time.Second)
	assertSpread(t, self.counts("[fd00:96::10]:80", 30), 30, "pod1", "pod2", "pod3")
}

func TestKernelNodePortsOnEveryLocalAddress(t *testing.T) {
	w := newWorld(t)
	w.cfg.NodePortPrimary = false
	w.cfg.NodePortCIDRs = []netip.Prefix{mustPrefix("0.0.0.0/0")}
	web := svcPort("web", "10.96.0.10", 80)
	web.NodePort = 30090
	w.set(web, ep(0, true), ep(1, true))
	w.sync()
	// The bridge address is local too, so pods reach the node port there.
	pod := newClient(w.tp.podc, 2*time.Second)
	assertSpread(t, pod.counts("10.244.0.1:30090", 40), 40, "pod1", "pod2")
	ext := newClient(w.tp.ext, 2*time.Second)
	assertSpread(t, ext.counts(nodeIP+":30090", 40), 40, "pod1", "pod2")
	// Not on loopback, like upstream's nftables mode: nothing translates
	// the connection, so the node's own stack refuses it (a translated one
	// would time out, its 127.0.0.1 source being unroutable).
	if err := dialErr(w.tp.node, "127.0.0.1:30090", time.Second); !isRefused(err) {
		t.Fatalf("dial 127.0.0.1:30090: %v, want connection refused (not translated)", err)
	}
}

func TestKernelUDPService(t *testing.T) {
	w := newWorld(t)
	dns := svcPort("dns", "10.96.0.53", 53)
	dns.Name.Protocol = plan.UDP
	eps := []plan.Endpoint{ep(0, true), ep(1, true), ep(2, true)}
	for i := range eps {
		eps[i].Port = 8053
	}
	w.set(dns, eps...)
	w.sync()
	got := map[string]int{}
	const n = 90
	for range n {
		name, err := udpAsk(w.tp.podc, "10.96.0.53:53")
		if err != nil {
			name = "error: " + err.Error()
		}
		got[name]++
	}
	assertSpread(t, got, n, "pod1", "pod2", "pod3")

	// Without endpoints a pod's query is refused at once (ICMP port
	// unreachable), and the node's own fails at once too.
	w.eps[dns.Name] = nil
	w.sync(dns.Name)
	// kube-proxy's conntrack cleaner removes the service's UDP flows when its
	// endpoints go; without that, a new query that happens to reuse an earlier
	// source port would follow the old flow's DNAT to a backend.
	ct := conntrack.NewNetlink(int(w.tp.node))
	flows, err := ct.UDPFlows(plan.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	var stale []conntrack.Flow
	for _, f := range flows {
		if f.OrigDst.Addr() == netip.MustParseAddr("10.96.0.53") {
			stale = append(stale, f)
		}
	}
	if err := ct.Delete(stale); err != nil {
		t.Fatal(err)
	}
	if _, err := udpAsk(w.tp.podc, "10.96.0.53:53"); !isRefused(err) {
		t.Errorf("pod: %v, want connection refused", err)
	}
	start := time.Now()
	if _, err := udpAsk(w.tp.node, "10.96.0.53:53"); err == nil || time.Since(start) > 500*time.Millisecond {
		t.Errorf("node: %v after %v, want an immediate error", err, time.Since(start))
	}
}
