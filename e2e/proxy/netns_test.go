package proxy

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kubenode/kubenode/e2e/netnstest"
)

func sysctl(t *testing.T, ns netns.NsHandle, key, value string) {
	t.Helper()
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := netnstest.Do(ns, func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
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
	nh, ph := netnstest.Netlink(t, node), netnstest.Netlink(t, pod)
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
	if err := netnstest.Do(ns, func() error {
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
