// Package netnstest gives e2e tests throwaway network namespaces and the plumbing to use them from
// the host: run code or start a process inside one, reach the host's loopback (where the control
// plane listens) from inside one, and make HTTP requests from inside one. Everything a call makes
// is removed when the test ends. It needs root.
package netnstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// onFreshThread runs fn on a new goroutine locked to its OS thread and never unlocks it, so a
// thread whose network namespace fn changed is discarded by the Go runtime instead of serving
// other goroutines.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// Do runs fn on a thread switched into ns; sockets fn opens stay in ns.
func Do(ns netns.NsHandle, fn func() error) error {
	return onFreshThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return fn()
	})
}

// Start starts cmd with ns as its network namespace: the child is forked from a thread switched
// into ns and inherits it. Do not set Pdeathsig: it would fire when that thread, thrown away at
// once, exits.
func Start(ns netns.NsHandle, cmd *exec.Cmd) error {
	return Do(ns, cmd.Start)
}

// New makes an unnamed network namespace with loopback up. It disappears when its handle is
// closed at test end and nothing runs in it any more (with the links inside it).
func New(t *testing.T) netns.NsHandle {
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
	LinkUp(t, h, "lo")
	return h
}

// NewNamed makes a network namespace bind-mounted at /run/netns/name (so a person can
// `ip netns exec` into it while debugging) with loopback up, and removes it when the test ends.
func NewNamed(t *testing.T, name string) netns.NsHandle {
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
	LinkUp(t, h, "lo")
	return h
}

// Netlink returns a netlink handle working in ns, closed when the test ends.
func Netlink(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	// NETLINK_ROUTE only: the default set also opens XFRM, absent on some kernels.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// LinkUp sets the link called name in ns up.
func LinkUp(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	h := Netlink(t, ns)
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("link %s up: %v", name, err)
	}
}

// Client makes HTTP requests from inside a namespace, one connection per request so that each
// one is balanced on its own. The connection is dialled on a thread in the namespace:
// http.Transport would otherwise dial on a goroutine outside it.
type Client struct{ hc *http.Client }

// NewClient returns a Client for ns whose requests (dial included) time out after timeout.
func NewClient(ns netns.NsHandle, timeout time.Duration) *Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &Client{hc: &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial},
	}}
}

// Get returns the status code and body of GET url.
func (c *Client) Get(url string) (int, string, error) {
	resp, err := c.hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Relay makes addr (127.0.0.1:PORT of the host) reachable on the same address inside a namespace
// by relaying connections: the control plane listens on the host's loopback only, and a
// kubeconfig pointing there then works unchanged inside the namespace. Closing the relay cuts
// the namespace off.
type Relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewRelay starts relaying addr into ns; it is closed when the test ends, if not before.
func NewRelay(t *testing.T, ns netns.NsHandle, addr string) *Relay {
	t.Helper()
	r := &Relay{conns: map[net.Conn]struct{}{}}
	if err := Do(ns, func() error {
		var err error
		r.ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("relay listener on %s in the namespace: %v", addr, err)
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

func (r *Relay) track(cs ...net.Conn) bool {
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

func (r *Relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Close stops accepting and cuts every relayed connection. It may be called more than once.
func (r *Relay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}
