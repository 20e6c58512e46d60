//go:build ipvskernel

package ipvs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// topology: a node namespace routing between "pods" (a client and two
// backends, each in its own namespace behind a veth pair) and an
// off-cluster client on the node's own network.
type topology struct {
	node, client, b1, b2, ext netns.NsHandle
}

var (
	nodeAddr     = netip.MustParseAddr("192.168.50.1")
	extAddr      = netip.MustParseAddr("192.168.50.2")
	clientAddr   = netip.MustParseAddr("10.244.1.2")
	b1Addr       = netip.MustParseAddr("10.244.2.2")
	b2Addr       = netip.MustParseAddr("10.244.3.2")
	b1GW         = netip.MustParseAddr("10.244.2.1")
	b2GW         = netip.MustParseAddr("10.244.3.1")
	clusterCIDR  = netip.MustParsePrefix("10.244.0.0/16")
	backendPort  = uint16(8080)
	backend1, b2 = plan.Endpoint{IP: b1Addr, Port: backendPort, Local: true, Ready: true, Serving: true},
		plan.Endpoint{IP: b2Addr, Port: backendPort, Ready: true, Serving: true}
)

// attach makes a namespace behind a veth pair: gw/24 on the node side, addr/24
// and a default route via gw inside.
func attach(t *testing.T, node netns.NsHandle, name string, addr, gw netip.Addr) netns.NsHandle {
	t.Helper()
	ns := newNetNS(t)
	nh, err := netlink.NewHandleAt(node, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth-" + name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := nh.LinkAdd(veth); err != nil {
		t.Fatalf("veth for %s: %v", name, err)
	}
	ph, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	setup := func(h *netlink.Handle, link string, a netip.Addr) {
		l, err := h.LinkByName(link)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatalf("address %s on %s: %v", a, link, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	setup(nh, "veth-"+name, gw)
	setup(ph, "eth0", addr)
	if err := ph.RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
		t.Fatalf("default route in %s: %v", name, err)
	}
	return ns
}

func newTopology(t *testing.T) *topology {
	node := newNetNS(t)
	return &topology{
		node:   node,
		client: attach(t, node, "client", clientAddr, netip.MustParseAddr("10.244.1.1")),
		b1:     attach(t, node, "b1", b1Addr, b1GW),
		b2:     attach(t, node, "b2", b2Addr, b2GW),
		ext:    attach(t, node, "ext", extAddr, nodeAddr),
	}
}

// inNS runs fn on a thread inside ns; sockets made there stay in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread dies with the goroutine rather than
		// returning to the pool in the wrong namespace.
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// serve answers every request with "name remote-address".
func serve(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	var l net.Listener
	err := inNS(ns, func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", backendPort))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s", name, host)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func dialIn(ns netns.NsHandle, addr netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := inNS(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), 3*time.Second)
		return err
	})
	return c, err
}

// get makes one request on a fresh connection; it returns the backend's
// name and the client address the backend saw.
func get(ns netns.NsHandle, addr netip.AddrPort) (name, seen string, err error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialIn(ns, addr)
		},
	}}
	resp, err := client.Get("http://" + addr.String() + "/")
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return "", "", fmt.Errorf("unexpected answer %q", b)
	}
	return f[0], f[1], nil
}

// tally makes n requests and counts answers per backend name; it also
// returns the client addresses the backends saw.
func tally(t *testing.T, ns netns.NsHandle, addr netip.AddrPort, n int) (map[string]int, map[string]bool) {
	t.Helper()
	names, seen := map[string]int{}, map[string]bool{}
	for range n {
		name, src, err := get(ns, addr)
		if err != nil {
			t.Fatalf("GET %s: %v", addr, err)
		}
		names[name]++
		seen[src] = true
	}
	return names, seen
}

func TestIPVSTraffic(t *testing.T) {
	topo := newTopology(t)
	serve(t, topo.b1, "b1")
	serve(t, topo.b2, "b2")

	nsPath := fmt.Sprintf("/proc/self/fd/%d", int(topo.node))
	b, err := New(Config{NetNSPath: nsPath, GracefulTerminationTimeout: 2 * time.Second}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	mk := func(n, ip string, port uint16, eps ...plan.Endpoint) *plan.Service {
		return &plan.Service{Name: plan.ServicePortName{Namespace: "default", Name: n, Port: "http", Protocol: plan.TCP},
			ClusterIP: netip.MustParseAddr(ip), Port: port, ClusterEndpoints: eps, ExternalEndpoints: eps, HasEndpoints: len(eps) > 0}
	}
	web := mk("web", "10.96.0.10", 80, backend1, b2)
	web.NodePort = 30080
	sticky := mk("sticky", "10.96.0.11", 80, backend1, b2)
	sticky.AffinityTimeout = time.Hour
	self := mk("self", "10.96.0.12", 80, backend1)
	local := mk("local", "10.96.0.13", 80, backend1, b2)
	local.NodePort = 30081
	local.ExternalPolicyLocal = true
	local.ExternalEndpoints = []plan.Endpoint{backend1}
	empty := mk("empty", "10.96.0.14", 80)
	drain := mk("drain", "10.96.0.15", 80, backend1, b2)

	p := &plan.Plan{Family: plan.IPv4, Services: map[plan.ServicePortName]*plan.Service{},
		NodeIPs: []netip.Addr{nodeAddr}, ClusterCIDRs: []netip.Prefix{clusterCIDR}}
	for _, s := range []*plan.Service{web, sticky, self, local, empty, drain} {
		p.Services[s.Name] = s
	}
	ctx := context.Background()
	if err := b.Sync(ctx, p, nil, true); err != nil {
		t.Fatalf("full sync: %v", err)
	}
	vip := func(s *plan.Service) netip.AddrPort { return netip.AddrPortFrom(s.ClusterIP, s.Port) }

	t.Run("cluster IP from a pod reaches every backend, source kept", func(t *testing.T) {
		names, seen := tally(t, topo.client, vip(web), 10)
		if names["b1"] == 0 || names["b2"] == 0 {
			t.Fatalf("answers %v, want both backends", names)
		}
		if len(seen) != 1 || !seen[clientAddr.String()] {
			t.Fatalf("backends saw sources %v, want only the pod's %s", seen, clientAddr)
		}
	})

	t.Run("node port from off-cluster reaches every backend, masqueraded", func(t *testing.T) {
		names, seen := tally(t, topo.ext, netip.AddrPortFrom(nodeAddr, 30080), 10)
		if names["b1"] == 0 || names["b2"] == 0 {
			t.Fatalf("answers %v, want both backends", names)
		}
		if seen[extAddr.String()] {
			t.Fatalf("backends saw the client's own address %s: not masqueraded (%v)", extAddr, seen)
		}
	})

	t.Run("the node itself reaches a cluster IP", func(t *testing.T) {
		names, _ := tally(t, topo.node, vip(web), 4)
		if names["b1"]+names["b2"] != 4 {
			t.Fatalf("answers %v", names)
		}
	})

	t.Run("session affinity sticks", func(t *testing.T) {
		names, _ := tally(t, topo.client, vip(sticky), 10)
		if len(names) != 1 {
			t.Fatalf("answers %v, want one backend for all requests", names)
		}
	})

	t.Run("hairpin: a backend reaching its own service lands on itself", func(t *testing.T) {
		names, _ := tally(t, topo.b1, vip(self), 3)
		if names["b1"] != 3 {
			t.Fatalf("answers %v, want b1 every time", names)
		}
	})

	t.Run("externalTrafficPolicy Local reaches only local endpoints, source kept", func(t *testing.T) {
		names, seen := tally(t, topo.ext, netip.AddrPortFrom(nodeAddr, 30081), 8)
		if names["b1"] != 8 {
			t.Fatalf("answers %v, want only the local b1", names)
		}
		if !seen[extAddr.String()] || len(seen) != 1 {
			t.Fatalf("backends saw %v, want the client's own %s", seen, extAddr)
		}
	})

	t.Run("no endpoints: connection refused", func(t *testing.T) {
		start := time.Now()
		c, err := dialIn(topo.client, vip(empty))
		if err == nil {
			c.Close()
			t.Fatal("connected to a service without endpoints")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial: %v, want connection refused", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("refusal took %s", time.Since(start))
		}
	})

	t.Run("removed backend drains: weight 0, open connection works, no new ones", func(t *testing.T) {
		conn, err := dialIn(topo.client, vip(drain))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		ask := func() string {
			t.Helper()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatalf("write on the open connection: %v", err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read on the open connection: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return strings.Fields(string(body))[0]
		}
		first := ask()
		keep, gone := b2, backend1
		if first == "b2" {
			keep, gone = backend1, b2
		}
		d2 := mk("drain", "10.96.0.15", 80, keep)
		p.Services[d2.Name] = d2
		if err := b.Sync(ctx, p, map[plan.ServicePortName]struct{}{d2.Name: {}}, false); err != nil {
			t.Fatal(err)
		}
		key := VSKey{Address: d2.ClusterIP, Protocol: unix.IPPROTO_TCP, Port: 80}
		weight := func() (int, bool) {
			rss, err := b.kernel.RealServers(key)
			if err != nil {
				t.Fatal(err)
			}
			for _, rs := range rss {
				if rs.Key() == gone.AddrPort() {
					return rs.Weight, true
				}
			}
			return 0, false
		}
		if w, ok := weight(); !ok || w != 0 {
			t.Fatalf("removed backend %s: present=%v weight=%d, want present with weight 0", gone, ok, w)
		}
		names, _ := tally(t, topo.client, vip(d2), 6)
		if names[first] != 0 {
			t.Fatalf("new connections %v reached the draining backend %s", names, first)
		}
		if again := ask(); again != first {
			t.Fatalf("open connection answered by %s, want %s", again, first)
		}
		conn.Close()
		time.Sleep(2100 * time.Millisecond) // past GracefulTerminationTimeout
		if err := b.Sync(ctx, p, nil, false); err != nil {
			t.Fatal(err)
		}
		if _, ok := weight(); ok {
			t.Fatalf("drained backend %s still present after the timeout", gone)
		}
	})

	t.Run("full sync repairs drift: deleted virtual server, address and table come back", func(t *testing.T) {
		if err := b.kernel.DeleteVirtualServer(VSKey{Address: web.ClusterIP, Protocol: unix.IPPROTO_TCP, Port: 80}); err != nil {
			t.Fatal(err)
		}
		if err := b.kernel.DeleteDeviceAddress("kube-ipvs0", self.ClusterIP); err != nil {
			t.Fatal(err)
		}
		if err := b.fw.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := get(topo.client, vip(web)); err == nil {
			t.Fatal("service still answers after its virtual server was deleted: the test proves nothing")
		}
		if err := b.Sync(ctx, p, nil, true); err != nil {
			t.Fatal(err)
		}
		names, _ := tally(t, topo.client, vip(web), 6)
		if names["b1"] == 0 || names["b2"] == 0 {
			t.Fatalf("answers %v after repair, want both backends", names)
		}
		if names, _ := tally(t, topo.b1, vip(self), 2); names["b1"] != 2 {
			t.Fatalf("hairpin after repair: %v", names)
		}
	})

	t.Run("cleanup leaves nothing", func(t *testing.T) {
		if err := b.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		vss, err := b.kernel.VirtualServers()
		if err != nil {
			t.Fatal(err)
		}
		if len(vss) != 0 {
			t.Fatalf("virtual servers left: %v", vss)
		}
		if _, err := b.kernel.DeviceAddresses("kube-ipvs0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("kube-ipvs0 left (err=%v)", err)
		}
		exists, err := b.fw.(*Nftables).TableExists()
		if err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Fatal("nftables table kubenode-ipvs left")
		}
	})
}
