//go:build ipvskernel

package ipvs

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newNetNS makes an anonymous network namespace that disappears when the
// test closes its handle.
func newNetNS(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the original netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	// IPVS refuses IPv4 destinations (EINVAL) until the namespace has a
	// local routing table, which bringing lo up creates, as on any node.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up: %v", err)
	}
	return ns
}

func newNetlinkKernel(t *testing.T, ns netns.NsHandle) *Netlink {
	t.Helper()
	k, err := NewNetlink(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

func TestNetlinkConformance(t *testing.T) {
	runConformance(t, func(t *testing.T) Kernel { return newNetlinkKernel(t, newNetNS(t)) })
}
