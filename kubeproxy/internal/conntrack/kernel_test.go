package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// TestNetlinkDeletesStaleFlows makes real UDP conntrack entries in a
// throwaway network namespace (one DNATed by an nftables rule, one rejected
// because nothing listens) and checks the cleaner deletes exactly those
// once the plan says they are stale.
func TestNetlinkDeletesStaleFlows(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables, conntrack)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // anonymous; gone once the fd closes and the thread leaves
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("returning to the original netns: %v", err)
		}
	}()

	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.96.0.10/32", "10.96.0.11/32", "10.0.0.2/32"} {
		if err := h.AddrAdd(lo, &netlink.Addr{IPNet: netlinkPrefix(a)}); err != nil {
			t.Fatalf("adding %s: %v", a, err)
		}
	}
	if err := addDNAT(int(ns), "10.96.0.10", 53, "10.0.0.2", 5353); err != nil {
		t.Fatalf("nftables DNAT: %v", err)
	}

	// An echo endpoint on 10.0.0.2:5353.
	srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap("10.0.0.2:5353")))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	if err := exchange("10.96.0.10:53"); err != nil {
		t.Fatalf("UDP through the DNAT: %v", err)
	}
	if err := exchange("10.96.0.11:53"); err == nil {
		t.Fatal("nothing listens behind 10.96.0.11:53, yet it answered")
	}

	table := NewNetlink(int(ns))
	flows, err := table.UDPFlows(plan.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	dnated, rejected := find(flows, "10.96.0.10:53"), find(flows, "10.96.0.11:53")
	if dnated == nil || !dnated.DNATed() || dnated.ReplySrc != ap("10.0.0.2:5353") {
		t.Fatalf("DNATed flow not listed correctly: %v", flows)
	}
	if rejected == nil || rejected.DNATed() {
		t.Fatalf("rejected flow not listed correctly: %v", flows)
	}

	svc := func(name, vip string, endpoints ...string) *plan.Service {
		return &plan.Service{Name: plan.ServicePortName{Namespace: "ns", Name: name, Protocol: plan.UDP},
			ClusterIP: netip.MustParseAddr(vip), Port: 53, ClusterEndpoints: eps(endpoints...), HasEndpoints: len(endpoints) > 0}
	}
	c := NewCleaner(zap.NewNop(), table)
	ctx := context.Background()
	if err := c.CleanStaleFlows(ctx, udpPlan(svc("dns", "10.96.0.10", "10.0.0.2:5353"), svc("empty", "10.96.0.11"))); err != nil {
		t.Fatal(err)
	}
	if flows, _ = table.UDPFlows(plan.IPv4); find(flows, "10.96.0.10:53") == nil || find(flows, "10.96.0.11:53") == nil {
		t.Fatalf("flows still valid under the first plan were deleted: %v", flows)
	}
	// The endpoint moves to 10.0.0.3, and the empty service gets one.
	if err := c.CleanStaleFlows(ctx, udpPlan(svc("dns", "10.96.0.10", "10.0.0.3:5353"), svc("empty", "10.96.0.11", "10.0.0.4:5353"))); err != nil {
		t.Fatal(err)
	}
	if flows, _ = table.UDPFlows(plan.IPv4); find(flows, "10.96.0.10:53") != nil || find(flows, "10.96.0.11:53") != nil {
		t.Fatalf("stale flows not deleted: %v", flows)
	}
	// Deleting what is already gone is not an error.
	if err := table.Delete([]Flow{*dnated}); err != nil {
		t.Errorf("deleting a missing flow: %v", err)
	}
}

func netlinkPrefix(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

func find(flows []Flow, dst string) *Flow {
	for i := range flows {
		if flows[i].OrigDst == ap(dst) {
			return &flows[i]
		}
	}
	return nil
}

// exchange sends one datagram and waits for the echo.
func exchange(dst string) error {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ap(dst)))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "ping" {
		return errors.New("wrong echo")
	}
	return nil
}

// addDNAT adds "ip daddr VIP udp dport PORT dnat to EP:EPPORT" in a nat
// output chain of a new table in the namespace.
func addDNAT(nsFd int, vip string, port uint16, ep string, epPort uint16) error {
	c, err := nftables.New(nftables.WithNetNSFd(nsFd))
	if err != nil {
		return err
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "kubenode-test-conntrack"})
	ch := c.AddChain(&nftables.Chain{Name: "output", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: netip.MustParseAddr(vip).AsSlice()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
		&expr.Immediate{Register: 1, Data: netip.MustParseAddr(ep).AsSlice()},
		&expr.Immediate{Register: 2, Data: be16(epPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}})
	return c.Flush()
}
