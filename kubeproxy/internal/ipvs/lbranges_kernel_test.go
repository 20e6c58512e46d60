//go:build ipvskernel

package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/vishvananda/netns"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

func TestIPVSLoadBalancerSourceRanges(t *testing.T) {
	topo := newTopology(t)
	serve(t, topo.b1, "b1")
	serve(t, topo.b2, "b2")
	b, err := New(Config{NetNSPath: fmt.Sprintf("/proc/self/fd/%d", int(topo.node))}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	t.Cleanup(func() { _ = b.Cleanup(ctx) })

	mk := func(n, ip, lbIP string, ranges ...string) *plan.Service {
		s := &plan.Service{Name: plan.ServicePortName{Namespace: "default", Name: n, Port: "http", Protocol: plan.TCP},
			ClusterIP: netip.MustParseAddr(ip), Port: 80, ClusterEndpoints: []plan.Endpoint{backend1, b2},
			ExternalEndpoints: []plan.Endpoint{backend1, b2}, HasEndpoints: true,
			LoadBalancerIPs: []netip.Addr{netip.MustParseAddr(lbIP)}}
		for _, r := range ranges {
			s.LoadBalancerSourceRanges = append(s.LoadBalancerSourceRanges, netip.MustParsePrefix(r))
		}
		return s
	}
	// Off-cluster clients only: the off-cluster client's and the node's
	// network, so the node is allowed too (a range holds the node IP).
	ext := mk("ext-only", "10.96.0.20", "172.31.0.10", "192.168.50.0/24")
	// Pods only: the node IP is outside.
	pods := mk("pods-only", "10.96.0.21", "172.31.0.11", "10.244.1.0/24")
	open := mk("open", "10.96.0.22", "172.31.0.12")
	p := &plan.Plan{Family: plan.IPv4, Services: map[plan.ServicePortName]*plan.Service{},
		NodeIPs: []netip.Addr{nodeAddr}, ClusterCIDRs: []netip.Prefix{clusterCIDR}}
	for _, s := range []*plan.Service{ext, pods, open} {
		p.Services[s.Name] = s
	}
	if err := b.Sync(ctx, p, nil, true); err != nil {
		t.Fatalf("full sync: %v", err)
	}
	lb := func(s *plan.Service) netip.AddrPort { return netip.AddrPortFrom(s.LoadBalancerIPs[0], 80) }
	reaches := func(t *testing.T, from string, ns netns.NsHandle, addr netip.AddrPort) {
		t.Helper()
		names, _ := tally(t, ns, addr, 4)
		if names["b1"]+names["b2"] != 4 {
			t.Fatalf("from %s to %s: answers %v", from, addr, names)
		}
	}
	dropped := func(t *testing.T, from string, ns netns.NsHandle, addr netip.AddrPort) {
		t.Helper()
		err := inNS(ns, func() error {
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("from %s to %s: err = %v, want a timeout (dropped)", from, addr, err)
		}
	}

	t.Run("off-cluster source inside the ranges reaches the LB IP", func(t *testing.T) { reaches(t, "ext", topo.ext, lb(ext)) })
	t.Run("pod outside the ranges is dropped", func(t *testing.T) { dropped(t, "pod", topo.client, lb(ext)) })
	t.Run("node IP inside the ranges: the node reaches the LB IP", func(t *testing.T) { reaches(t, "node", topo.node, lb(ext)) })
	t.Run("pod inside the ranges reaches the LB IP", func(t *testing.T) { reaches(t, "pod", topo.client, lb(pods)) })
	t.Run("off-cluster source outside the ranges is dropped", func(t *testing.T) { dropped(t, "ext", topo.ext, lb(pods)) })
	t.Run("node IP outside the ranges: the node is dropped, like upstream", func(t *testing.T) { dropped(t, "node", topo.node, lb(pods)) })
	t.Run("no ranges: open to everyone", func(t *testing.T) {
		reaches(t, "ext", topo.ext, lb(open))
		reaches(t, "pod", topo.client, lb(open))
	})
	t.Run("cluster IP of a firewalled service stays open", func(t *testing.T) {
		reaches(t, "pod", topo.client, netip.AddrPortFrom(ext.ClusterIP, 80))
	})
	t.Run("ranges removed by a partial sync: open", func(t *testing.T) {
		opened := mk("pods-only", "10.96.0.21", "172.31.0.11")
		p.Services[opened.Name] = opened
		if err := b.Sync(ctx, p, map[plan.ServicePortName]struct{}{opened.Name: {}}, false); err != nil {
			t.Fatal(err)
		}
		reaches(t, "ext", topo.ext, lb(opened))
	})
}

// The timeouts ipvs.tcpTimeout/tcpFinTimeout/udpTimeout reach the kernel and
// read back through the IPVS "get config" command; zero keeps a value.
func TestIPVSTimeouts(t *testing.T) {
	ns := newNetNS(t)
	path := fmt.Sprintf("/proc/self/fd/%d", int(ns))
	ctx := context.Background()
	sync := func(t *testing.T, to Timeouts) *Backend {
		t.Helper()
		b, err := New(Config{NetNSPath: path, Timeouts: to}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		t.Cleanup(func() { _ = b.Cleanup(ctx) })
		if err := b.Sync(ctx, &plan.Plan{Family: plan.IPv4, Services: map[plan.ServicePortName]*plan.Service{}}, nil, true); err != nil {
			t.Fatalf("full sync: %v", err)
		}
		return b
	}
	read := func(t *testing.T) Timeouts {
		t.Helper()
		k := newNetlinkKernel(t, ns)
		got, err := k.Timeouts()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	before := read(t)
	if before.TCP == 0 || before.UDP == 0 {
		t.Fatalf("kernel defaults read back as %s: GetConfig does not work", before)
	}

	want := Timeouts{TCP: 1234 * time.Second, TCPFin: 56 * time.Second, UDP: 78 * time.Second}
	sync(t, want)
	if got := read(t); got != want {
		t.Fatalf("after a full sync with %s: kernel has %s", want, got)
	}

	// Someone changes one; the next full sync of a backend configured with
	// only udpTimeout sets that and leaves the rest.
	k := newNetlinkKernel(t, ns)
	if err := k.SetTimeouts(Timeouts{UDP: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	sync(t, Timeouts{UDP: 90 * time.Second})
	if got, w := read(t), (Timeouts{TCP: 1234 * time.Second, TCPFin: 56 * time.Second, UDP: 90 * time.Second}); got != w {
		t.Fatalf("kernel has %s, want %s (zero fields kept)", got, w)
	}
}

// A virtual server inside ipvs.excludeCIDRs that someone made by hand on a
// node address survives full syncs and Cleanup; one outside does not.
func TestIPVSExcludeCIDRs(t *testing.T) {
	ns := newNetNS(t)
	nodeA, nodeB := netip.MustParseAddr("192.168.50.1"), netip.MustParseAddr("192.168.60.1")
	b, err := New(Config{NetNSPath: fmt.Sprintf("/proc/self/fd/%d", int(ns)),
		ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()

	k := newNetlinkKernel(t, ns)
	kept := VSKey{Address: nodeA, Protocol: unix.IPPROTO_TCP, Port: 9999}
	gone := VSKey{Address: nodeB, Protocol: unix.IPPROTO_TCP, Port: 9999}
	for _, key := range []VSKey{kept, gone} {
		if err := k.AddVirtualServer(&VirtualServer{VSKey: key, Scheduler: "wrr"}); err != nil {
			t.Fatal(err)
		}
		if err := k.AddRealServer(key, &RealServer{Address: netip.MustParseAddr("10.1.1.1"), Port: 80, Weight: 3}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = k.DeleteVirtualServer(kept) })

	s := &plan.Service{Name: plan.ServicePortName{Namespace: "default", Name: "np", Port: "http", Protocol: plan.TCP},
		ClusterIP: netip.MustParseAddr("10.96.0.30"), Port: 80, NodePort: 30090,
		ClusterEndpoints: []plan.Endpoint{backend1}, ExternalEndpoints: []plan.Endpoint{backend1}, HasEndpoints: true}
	p := &plan.Plan{Family: plan.IPv4, Services: map[plan.ServicePortName]*plan.Service{s.Name: s},
		NodeIPs: []netip.Addr{nodeA, nodeB}}
	for i := range 2 {
		if err := b.Sync(ctx, p, nil, true); err != nil {
			t.Fatalf("full sync #%d: %v", i+1, err)
		}
	}
	if _, err := k.VirtualServer(gone); !errors.Is(err, ErrNotFound) {
		t.Errorf("stale virtual server %s on a node address outside excludeCIDRs: err = %v, want it deleted", gone, err)
	}
	check := func(when string) {
		t.Helper()
		vs, err := k.VirtualServer(kept)
		if err != nil {
			t.Fatalf("%s: excluded virtual server %s: %v, want it kept", when, kept, err)
		}
		rss, err := k.RealServers(kept)
		if err != nil || len(rss) != 1 || rss[0].Weight != 3 || vs.Scheduler != "wrr" {
			t.Fatalf("%s: excluded virtual server changed: %s -> %v (err %v)", when, vs, rss, err)
		}
	}
	check("after full syncs")
	if err := b.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	check("after Cleanup")
	if err := b.Sync(ctx, p, nil, true); err != nil {
		t.Fatal(err)
	}
	// Our own node-port virtual server on the same excluded address is
	// still programmed: excludeCIDRs spares, it does not disable.
	if _, err := k.VirtualServer(VSKey{Address: nodeA, Protocol: unix.IPPROTO_TCP, Port: 30090}); err != nil {
		t.Errorf("node port on %s: %v", nodeA, err)
	}
	// ...and Cleanup removes what this process made there.
	if err := b.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := k.VirtualServer(VSKey{Address: nodeA, Protocol: unix.IPPROTO_TCP, Port: 30090}); !errors.Is(err, ErrNotFound) {
		t.Errorf("our node port on excluded %s after Cleanup: err = %v, want it deleted", nodeA, err)
	}
	check("after the second Cleanup")
}
