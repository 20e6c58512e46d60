package nft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// needRoot skips kernel tests when the process cannot administer network
// namespaces and nftables.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN)")
	}
}

// inNS runs fn on an OS thread switched into ns. Sockets made inside stay
// in ns after the thread switches back.
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: Go discards it when the goroutine ends.
		return fmt.Errorf("return to original netns: %w", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// newNS makes an anonymous network namespace with lo up, closed (and so
// destroyed once nothing else holds it) at test end.
func newNS(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("restore netns: %v", err)
	}
	orig.Close()
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close() })
	// No duplicate address detection: while link-local addresses are
	// tentative, the first IPv6 connections stall for a second or two.
	sysctl(t, ns, "net.ipv6.conf.all.accept_dad", "0")
	sysctl(t, ns, "net.ipv6.conf.default.accept_dad", "0")
	h := nsHandle(t, ns)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo: %v", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	return ns
}

func nsHandle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func sysctl(t testing.TB, ns netns.NsHandle, key, value string) {
	t.Helper()
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := inNS(ns, func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addAddr(t testing.TB, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags |= unix.IFA_F_NODAD
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("addr %s on %s: %v", cidr, l.Attrs().Name, err)
	}
}

// vethInto makes a veth pair whose first end (hostName) stays in host and
// whose peer becomes "eth0" in peerNS with addr, up.
func vethInto(t testing.TB, host *netlink.Handle, hostName string, peerNS netns.NsHandle, addr string) netlink.Link {
	t.Helper()
	peerTmp := hostName + "p"
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}, PeerName: peerTmp}
	if err := host.LinkAdd(v); err != nil {
		t.Fatalf("veth %s: %v", hostName, err)
	}
	peer, err := host.LinkByName(peerTmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.LinkSetNsFd(peer, int(peerNS)); err != nil {
		t.Fatalf("move %s: %v", peerTmp, err)
	}
	ph := nsHandle(t, peerNS)
	peer, err = ph.LinkByName(peerTmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetName(peer, "eth0"); err != nil {
		t.Fatal(err)
	}
	addAddr(t, ph, peer, addr)
	if err := ph.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	hl, err := host.LinkByName(hostName)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	return hl
}

func defaultRoute(t testing.TB, ns netns.NsHandle, gw string) {
	t.Helper()
	h := nsHandle(t, ns)
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
		t.Fatalf("default route via %s: %v", gw, err)
	}
}

// serve runs an HTTP server in ns on addr answering its name.
func serve(t testing.TB, ns netns.NsHandle, addr, name string) {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, name, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	srv.SetKeepAlivesEnabled(false)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

// client makes HTTP requests from inside ns, one connection per request so
// each is load-balanced on its own.
type client struct {
	ns netns.NsHandle
	hc *http.Client
}

func newClient(ns netns.NsHandle, timeout time.Duration) *client {
	c := &client{ns: ns}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := inNS(ns, func() error {
				d := net.Dialer{Timeout: timeout}
				var err error
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}
	c.hc = &http.Client{Transport: tr, Timeout: timeout}
	return c
}

func (c *client) get(addr string) (string, error) {
	resp, err := c.hc.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// counts does n requests and counts answers by name; errors are counted
// under "error: ...".
func (c *client) counts(addr string, n int) map[string]int {
	out := map[string]int{}
	for range n {
		name, err := c.get(addr)
		if err != nil {
			name = "error: " + err.Error()
		}
		out[name]++
	}
	return out
}

// dialErr dials addr from ns and returns the error (nil if it connected).
func dialErr(ns netns.NsHandle, addr string, timeout time.Duration) error {
	var conn net.Conn
	err := inNS(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if conn != nil {
		conn.Close()
	}
	return err
}

func isRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }

// topo is the test network:
//
//	ext ns (198.51.100.2) --veth-- node ns (198.51.100.1, node IP)
//	node ns: bridge kbr0 10.244.0.1/24, VIP route 10.96.0.0/16 dev kbr0
//	pod1..3 (10.244.0.11-13, HTTP :8080 answering "pod1".."pod3"), podc (10.244.0.100, client)
type topo struct {
	node, ext, podc netns.NsHandle
	pods            []netns.NsHandle
}

const (
	nodeIP  = "198.51.100.1"
	extIP   = "198.51.100.2"
	podCIDR = "10.244.0.0/24"
)

func podIP(i int) string  { return fmt.Sprintf("10.244.0.%d", 11+i) }
func podIP6(i int) string { return fmt.Sprintf("fd00:244::%d", 11+i) }

func newTopo(t *testing.T) *topo {
	t.Helper()
	tp := &topo{node: newNS(t), ext: newNS(t), podc: newNS(t)}
	nh := nsHandle(t, tp.node)
	sysctl(t, tp.node, "net.ipv4.ip_forward", "1")
	sysctl(t, tp.node, "net.bridge.bridge-nf-call-iptables", "1")
	sysctl(t, tp.node, "net.ipv6.conf.all.forwarding", "1")
	sysctl(t, tp.node, "net.bridge.bridge-nf-call-ip6tables", "1")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "kbr0"}}
	if err := nh.LinkAdd(br); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	brl, err := nh.LinkByName("kbr0")
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, nh, brl, "10.244.0.1/24")
	addAddr(t, nh, brl, "fd00:244::1/64")
	if err := nh.LinkSetUp(brl); err != nil {
		t.Fatal(err)
	}
	attach := func(l netlink.Link) {
		if err := nh.LinkSetMaster(l, brl); err != nil {
			t.Fatalf("attach %s: %v", l.Attrs().Name, err)
		}
		// Hairpin: a pod reaching itself through a service gets its
		// packet back out of the port it came in on.
		if err := nh.LinkSetHairpin(l, true); err != nil {
			t.Fatalf("hairpin %s: %v", l.Attrs().Name, err)
		}
	}
	for i := range 3 {
		ns := newNS(t)
		tp.pods = append(tp.pods, ns)
		attach(vethInto(t, nh, fmt.Sprintf("kveth%d", i+1), ns, podIP(i)+"/24"))
		defaultRoute(t, ns, "10.244.0.1")
		addPodIPv6(t, ns, podIP6(i))
		serve(t, ns, podIP(i)+":8080", fmt.Sprintf("pod%d", i+1))
		serve(t, ns, "["+podIP6(i)+"]:8080", fmt.Sprintf("pod%d", i+1))
		serveUDP(t, ns, podIP(i)+":8053", fmt.Sprintf("pod%d", i+1))
	}
	attach(vethInto(t, nh, "kvethc", tp.podc, "10.244.0.100/24"))
	defaultRoute(t, tp.podc, "10.244.0.1")
	addPodIPv6(t, tp.podc, "fd00:244::100")

	ev := vethInto(t, nh, "kext0", tp.ext, extIP+"/24")
	addAddr(t, nh, ev, nodeIP+"/24")
	defaultRoute(t, tp.ext, nodeIP)

	// The node reaching a VIP needs a route covering it: the route lookup
	// happens before the nat output hook rewrites the destination.
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: brl.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 96, 0, 0), Mask: net.CIDRMask(16, 32)}}); err != nil {
		t.Fatalf("VIP route: %v", err)
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: brl.Attrs().Index, Dst: &net.IPNet{IP: net.ParseIP("fd00:96::"), Mask: net.CIDRMask(112, 128)}}); err != nil {
		t.Fatalf("IPv6 VIP route: %v", err)
	}
	return tp
}

// addPodIPv6 gives a pod's eth0 an IPv6 address in fd00:244::/64 and a
// default route through the bridge.
func addPodIPv6(t testing.TB, ns netns.NsHandle, ip string) {
	t.Helper()
	h := nsHandle(t, ns)
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, h, l, ip+"/64")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("fd00:244::1"), Family: unix.AF_INET6}); err != nil {
		t.Fatalf("IPv6 default route: %v", err)
	}
}

// serveUDP answers every datagram on addr in ns with its name.
func serveUDP(t testing.TB, ns netns.NsHandle, addr, name string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
}

// udpAsk sends one datagram from a fresh socket in ns (a new conntrack
// flow, so a new endpoint pick) and returns the answer.
func udpAsk(ns netns.NsHandle, addr string) (string, error) {
	var conn net.Conn
	if err := inNS(ns, func() error {
		var err error
		conn, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("who")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
