package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// onFreshThread runs fn on a new goroutine locked to its OS thread and never
// unlocks it, so a thread whose network namespace fn changed is discarded by
// the Go runtime instead of serving other goroutines.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// inNS runs fn with the calling work switched into ns; sockets fn opens stay
// in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	return onFreshThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return fn()
	})
}

// namedNS makes a network namespace bind-mounted at /run/netns/name (so a
// person can `ip netns exec` into it while debugging) and removes it when
// the test ends.
func namedNS(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	if err := onFreshThread(func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	}); err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	linkUp(t, h, "lo")
	return h
}

// anonNS makes an unnamed network namespace that disappears when its handle
// is closed at test end (with the veth ends inside it).
func anonNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	if err := onFreshThread(func() error {
		var err error
		h, err = netns.New()
		return err
	}); err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	linkUp(t, h, "lo")
	return h
}

func nlHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	// NETLINK_ROUTE only: the default set also opens XFRM, absent here.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func linkUp(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	h := nlHandle(t, ns)
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("link %s up: %v", name, err)
	}
}

func sysctl(t *testing.T, ns netns.NsHandle, key, value string) {
	t.Helper()
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := inNS(ns, func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

func addAddr(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags |= unix.IFA_F_NODAD
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("address %s on %s: %v", cidr, l.Attrs().Name, err)
	}
}

// podLink connects a "pod" namespace to the node namespace the way a routed
// CNI does: a veth whose node end (nodeIf, nodeAddr) is the pod's gateway and
// whose pod end is eth0 with podAddr and a default route through the node.
func podLink(t *testing.T, node, pod netns.NsHandle, nodeIf, nodeAddr, podAddr string) {
	t.Helper()
	nh, ph := nlHandle(t, node), nlHandle(t, pod)
	peer := nodeIf + "p"
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nodeIf}, PeerName: peer}); err != nil {
		t.Fatalf("veth %s: %v", nodeIf, err)
	}
	pl, err := nh.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetNsFd(pl, int(pod)); err != nil {
		t.Fatalf("move %s into the pod namespace: %v", peer, err)
	}
	if pl, err = ph.LinkByName(peer); err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetName(pl, "eth0"); err != nil {
		t.Fatal(err)
	}
	addAddr(t, ph, pl, podAddr)
	if err := ph.LinkSetUp(pl); err != nil {
		t.Fatal(err)
	}
	nl, err := nh.LinkByName(nodeIf)
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, nh, nl, nodeAddr)
	if err := nh.LinkSetUp(nl); err != nil {
		t.Fatal(err)
	}
	gw, _, _ := strings.Cut(nodeAddr, "/")
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
		t.Fatalf("default route via %s: %v", gw, err)
	}
}

// serveName runs an HTTP server inside ns on addr that answers name.
func serveName(t *testing.T, ns netns.NsHandle, addr, name string) {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s for %s: %v", addr, name, err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	srv.SetKeepAlivesEnabled(false)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

// nsClient makes HTTP requests from inside a namespace, one connection per
// request so that each one is balanced on its own.
type nsClient struct{ hc *http.Client }

func newNSClient(ns netns.NsHandle, timeout time.Duration) *nsClient {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &nsClient{hc: &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial},
	}}
}

// get returns the status code and body of GET url.
func (c *nsClient) get(url string) (int, string, error) {
	resp, err := c.hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// loopbackRelay makes addr (127.0.0.1:PORT of the host) reachable on the same
// address inside ns by relaying connections: the control plane listens on
// the host's loopback only, and a kubeconfig pointing there then works
// unchanged inside the node namespace. Closing the relay cuts the node off.
type loopbackRelay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newLoopbackRelay(t *testing.T, ns netns.NsHandle, addr string) *loopbackRelay {
	t.Helper()
	r := &loopbackRelay{conns: map[net.Conn]struct{}{}}
	if err := inNS(ns, func() error {
		var err error
		r.ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("relay listener on %s in the node namespace: %v", addr, err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			in, err := r.ln.Accept()
			if err != nil {
				return
			}
			// This goroutine's thread is in the host namespace.
			out, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			if !r.track(in, out) {
				return
			}
			r.wg.Add(2)
			go r.pipe(in, out)
			go r.pipe(out, in)
		}
	}()
	t.Cleanup(r.Close)
	return r
}

func (r *loopbackRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *loopbackRelay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Close stops accepting and cuts every relayed connection.
func (r *loopbackRelay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}

// startInNS starts cmd with ns as its network namespace: the child is forked
// from a thread switched into ns and inherits it.
func startInNS(ns netns.NsHandle, cmd *exec.Cmd) error {
	return onFreshThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return cmd.Start()
	})
}
