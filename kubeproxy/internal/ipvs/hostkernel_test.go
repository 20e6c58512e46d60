//go:build !ipvskernel

package ipvs

// Tests against the build host's own kernel, each in a throwaway network
// namespace. This kernel has no IPVS and no dummy link type, so they cover
// what works without them: the service-address device (adopted when it
// already exists) and the nftables support table, with real traffic. The
// IPVS paths themselves run under qemu (the ipvskernel tag).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

const hostDev = "kube-ipvs0"

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN)")
	}
}

// hostNetNS makes an anonymous network namespace with lo up; it goes away
// (with every link, address and nftables table in it) when the handle is
// closed at the end of the test, pass or fail.
func hostNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := onThreadIn(netns.None(), func() error {
		var err error
		// netns.New switches this thread; onThreadIn never unlocks it, so the
		// runtime discards the thread instead of reusing it.
		ns, err = netns.New()
		return err
	})
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h := rtnl(t, ns)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up: %v", err)
	}
	return ns
}

// onThreadIn runs fn on a fresh locked thread in ns (netns.None(): the
// thread's current namespace). Sockets fn opens stay in that namespace.
func onThreadIn(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if ns.IsOpen() {
			if err := netns.Set(ns); err != nil {
				errc <- fmt.Errorf("enter netns: %w", err)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// rtnl is an independent rtnetlink handle in ns, for setting up topology and
// reading back what the code under test did.
func rtnl(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("rtnetlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// deviceKernel is the real Netlink restricted to links and addresses:
// NewNetlink refuses a kernel without IPVS, and the device methods never
// touch the IPVS handle.
func deviceKernel(t *testing.T, ns netns.NsHandle) *Netlink {
	return &Netlink{ns: ns, nl: rtnl(t, ns)}
}

// hostKernel is the fake for IPVS and sysctls (this kernel has neither the
// IPVS family nor net/ipv4/vs/*) and the real netlink code for the device,
// so a Backend sync programs real addresses.
type hostKernel struct {
	*Fake
	dev *Netlink
}

func (k hostKernel) EnsureDevice(n string) error                    { return k.dev.EnsureDevice(n) }
func (k hostKernel) DeleteDevice(n string) error                    { return k.dev.DeleteDevice(n) }
func (k hostKernel) DeviceAddresses(n string) ([]netip.Addr, error) { return k.dev.DeviceAddresses(n) }
func (k hostKernel) AddDeviceAddress(n string, a netip.Addr) error {
	return k.dev.AddDeviceAddress(n, a)
}
func (k hostKernel) DeleteDeviceAddress(n string, a netip.Addr) error {
	return k.dev.DeleteDeviceAddress(n, a)
}
func (k hostKernel) LocalAddresses(skip string) ([]netip.Addr, error) {
	return k.dev.LocalAddresses(skip)
}

// addBridge makes an empty bridge: this kernel's stand-in for the dummy
// device (it holds local addresses the same way).
func addBridge(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("add bridge %s: %v", name, err)
	}
}

// linkAddrs reads the link's addresses independently, as "addr/bits".
func linkAddrs(t *testing.T, h *netlink.Handle, name string) map[string]netlink.Addr {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("addresses of %s: %v", name, err)
	}
	out := map[string]netlink.Addr{}
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		out[a.IPNet.String()] = a
	}
	return out
}

func TestHostKernelServiceDevice(t *testing.T) {
	needRoot(t)
	ns := hostNetNS(t)
	h := rtnl(t, ns)
	k := deviceKernel(t, ns)

	t.Run("creating the device without a dummy link type fails clearly", func(t *testing.T) {
		err := k.EnsureDevice(hostDev)
		if err == nil {
			// A kernel with CONFIG_DUMMY (not this build host's): then the
			// device must be a dummy and up.
			l, lerr := h.LinkByName(hostDev)
			if lerr != nil {
				t.Fatalf("EnsureDevice succeeded but link is missing: %v", lerr)
			}
			if l.Type() != "dummy" || l.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("EnsureDevice made a %s link, flags %v; want an up dummy", l.Type(), l.Attrs().Flags)
			}
			if err := k.DeleteDevice(hostDev); err != nil {
				t.Fatal(err)
			}
			return
		}
		for _, want := range []string{hostDev, "dummy", "CONFIG_DUMMY"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("EnsureDevice error %q does not mention %q", err, want)
			}
		}
		if _, lerr := h.LinkByName(hostDev); lerr == nil {
			t.Errorf("failed EnsureDevice left link %s behind", hostDev)
		}
	})

	addBridge(t, h, hostDev)
	t.Run("an existing link is adopted and set up, idempotently", func(t *testing.T) {
		for i := range 2 {
			if err := k.EnsureDevice(hostDev); err != nil {
				t.Fatalf("EnsureDevice #%d on an existing link: %v", i+1, err)
			}
			l, err := h.LinkByName(hostDev)
			if err != nil {
				t.Fatal(err)
			}
			if l.Type() != "bridge" || l.Attrs().Flags&net.FlagUp == 0 {
				t.Fatalf("after EnsureDevice #%d: %s link flags %v, want the same bridge, up", i+1, l.Type(), l.Attrs().Flags)
			}
		}
	})

	addrs := []struct {
		addr, prefix string
	}{
		{"10.96.0.10", "10.96.0.10/32"},
		{"10.96.0.11", "10.96.0.11/32"},
		{"fd00:96::10", "fd00:96::10/128"},
	}
	for _, tc := range addrs {
		t.Run("add "+tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if err := k.AddDeviceAddress(hostDev, a); err != nil {
				t.Fatalf("AddDeviceAddress: %v", err)
			}
			got, ok := linkAddrs(t, h, hostDev)[tc.prefix]
			if !ok {
				t.Fatalf("%s not on %s after AddDeviceAddress: %v", tc.prefix, hostDev, linkAddrs(t, h, hostDev))
			}
			if got.Flags&unix.IFA_F_TENTATIVE != 0 {
				t.Errorf("%s is tentative (duplicate address detection ran); services could not use it yet", tc.prefix)
			}
			// The node must treat the address as its own (a local route), or
			// nothing addressed to the service reaches the input hook.
			// IPv6 installs the local route asynchronously after the
			// address (seen here on a port-less bridge): allow it a moment.
			var rs []netlink.Route
			var err error
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				rs, err = h.RouteGet(net.IP(a.AsSlice()))
				if (err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL) || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || len(rs) == 0 || rs[0].Type != unix.RTN_LOCAL {
				t.Errorf("route to %s = %v (err %v), want a local route", a, rs, err)
			}
			if err := k.AddDeviceAddress(hostDev, a); !errors.Is(err, ErrExist) {
				t.Errorf("second AddDeviceAddress: err = %v, want ErrExist", err)
			}
		})
	}

	t.Run("listing", func(t *testing.T) {
		got, err := k.DeviceAddresses(hostDev)
		if err != nil {
			t.Fatal(err)
		}
		local, err := k.LocalAddresses(hostDev)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range addrs {
			a := netip.MustParseAddr(tc.addr)
			if !slices.Contains(got, a) {
				t.Errorf("DeviceAddresses = %v, missing %s", got, a)
			}
			if slices.Contains(local, a) {
				t.Errorf("LocalAddresses(skip %s) = %v includes the device's %s", hostDev, local, a)
			}
		}
	})

	for _, tc := range addrs {
		t.Run("delete "+tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if err := k.DeleteDeviceAddress(hostDev, a); err != nil {
				t.Fatalf("DeleteDeviceAddress: %v", err)
			}
			if _, ok := linkAddrs(t, h, hostDev)[tc.prefix]; ok {
				t.Fatalf("%s still on %s after DeleteDeviceAddress", tc.prefix, hostDev)
			}
			if err := k.DeleteDeviceAddress(hostDev, a); !errors.Is(err, ErrNotFound) {
				t.Errorf("second DeleteDeviceAddress: err = %v, want ErrNotFound", err)
			}
		})
	}

	t.Run("delete the device, idempotently", func(t *testing.T) {
		for i := range 2 {
			if err := k.DeleteDevice(hostDev); err != nil {
				t.Fatalf("DeleteDevice #%d: %v", i+1, err)
			}
		}
		if _, err := h.LinkByName(hostDev); err == nil {
			t.Fatalf("%s still exists after DeleteDevice", hostDev)
		}
		if _, err := k.DeviceAddresses(hostDev); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeviceAddresses after DeleteDevice: err = %v, want ErrNotFound", err)
		}
		if err := k.AddDeviceAddress(hostDev, netip.MustParseAddr("10.96.0.10")); !errors.Is(err, ErrNotFound) {
			t.Errorf("AddDeviceAddress without the device: err = %v, want ErrNotFound", err)
		}
	})
}

// countingFirewall tells full replaces from element updates.
type countingFirewall struct {
	Firewall
	replaces, updates int
}

func (f *countingFirewall) Replace(r *Ruleset) error { f.replaces++; return f.Firewall.Replace(r) }
func (f *countingFirewall) Update(add, del []Element) error {
	f.updates++
	return f.Firewall.Update(add, del)
}

// nftDump reads the support table back through its own google/nftables
// connection: chains as "name type hook" and set elements as readable keys.
type nftDump struct {
	chains map[string]string
	rules  map[string]int
	elems  map[string][]string // set name -> sorted elements
}

func readTable(t *testing.T, ns netns.NsHandle, table string, fam nftables.TableFamily) (nftDump, bool) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := c.ListTableOfFamily(table, fam)
	if errors.Is(err, unix.ENOENT) {
		return nftDump{}, false
	}
	if err != nil {
		t.Fatalf("list table %s: %v", table, err)
	}
	d := nftDump{chains: map[string]string{}, rules: map[string]int{}, elems: map[string][]string{}}
	chains, err := c.ListChainsOfTableFamily(fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		if ch.Table.Name != table {
			continue
		}
		desc := string(ch.Type)
		if ch.Hooknum != nil {
			desc += fmt.Sprintf(" hook %d", *ch.Hooknum)
		}
		d.chains[ch.Name] = desc
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Fatalf("rules of %s: %v", ch.Name, err)
		}
		d.rules[ch.Name] = len(rules)
	}
	sets, err := c.GetSets(tbl)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		es, err := c.GetSetElements(s)
		if err != nil {
			t.Fatalf("elements of %s: %v", s.Name, err)
		}
		list := []string{}
		for _, e := range es {
			list = append(list, decodeKey(s, e))
		}
		slices.Sort(list)
		d.elems[s.Name] = list
	}
	return d, true
}

// decodeKey renders an element key field by field, as nft prints it. It
// walks the set's declared key types (each field padded to 4 bytes), so it
// does not share the encoder it checks.
func decodeKey(s *nftables.Set, e nftables.SetElement) string {
	if !s.Concatenation {
		a, _ := netip.AddrFromSlice(e.Key)
		if e.IntervalEnd {
			return "end " + a.String()
		}
		return a.String()
	}
	var parts []string
	b := e.Key
	for _, f := range nftables.ConcatSetTypeElements(s.KeyType) {
		switch f.Name {
		case nftables.TypeIPAddr.Name, nftables.TypeIP6Addr.Name:
			n := int(f.Bytes)
			a, _ := netip.AddrFromSlice(b[:n])
			parts, b = append(parts, a.String()), b[n:]
		case nftables.TypeInetProto.Name:
			parts, b = append(parts, protoName(uint16(b[0]))), b[4:]
		case nftables.TypeInetService.Name:
			parts, b = append(parts, fmt.Sprint(binary.BigEndian.Uint16(b))), b[4:]
		default:
			return fmt.Sprintf("unknown field %v in %x", f, e.Key)
		}
	}
	out := strings.Join(parts, " . ")
	if len(e.KeyEnd) > 0 {
		end := decodeKey(s, nftables.SetElement{Key: e.KeyEnd})
		out += " - " + end
	}
	return out
}

// hostFamily holds one IP family's addresses for the support-rule test.
type hostFamily struct {
	name                 plan.Family
	nftFam               nftables.TableFamily
	bits                 int
	nodeIP, clientIP     string
	webVIP, emptyVIP     string
	webEP, emptyEP       string
	cidr, cidrStart, end string
	// refuseWithin bounds how long a rejected connect may take. Over veth
	// the whole round trip runs in the client's own connect call; TCP over
	// IPv6 then drops the first ICMPv6 error while the socket is locked
	// (TcpExt LockDroppedIcmps) and is refused on the SYN retransmit, ~1 s
	// later. A drop instead of a reject would time out (3 s) either way.
	refuseWithin time.Duration
}

var hostFamilies = []hostFamily{
	{name: plan.IPv4, nftFam: nftables.TableFamilyIPv4, bits: 24,
		nodeIP: "10.0.0.1", clientIP: "10.0.0.2", webVIP: "10.96.0.10", emptyVIP: "10.96.0.20",
		webEP: "10.244.1.5", emptyEP: "10.244.1.6", cidr: "10.244.0.0/16", cidrStart: "10.244.0.0", end: "end 10.245.0.0",
		refuseWithin: 500 * time.Millisecond},
	{name: plan.IPv6, nftFam: nftables.TableFamilyIPv6, bits: 64,
		nodeIP: "fd00:1::1", clientIP: "fd00:1::2", webVIP: "fd00:96::10", emptyVIP: "fd00:96::20",
		webEP: "fd00:244::5", emptyEP: "fd00:244::6", cidr: "fd00:244::/48", cidrStart: "fd00:244::", end: "end fd00:244:1::",
		refuseWithin: 2 * time.Second},
}

// connectVeth joins client to node with a veth pair on one subnet, the
// client routing everything through the node.
func connectVeth(t *testing.T, node, client netns.NsHandle, f hostFamily) {
	t.Helper()
	hn, hc := rtnl(t, node), rtnl(t, client)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "kn-node"}, PeerName: "kn-client"}
	if err := hn.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	peer, err := hn.LinkByName("kn-client")
	if err != nil {
		t.Fatal(err)
	}
	if err := hn.LinkSetNsFd(peer, int(client)); err != nil {
		t.Fatalf("move veth peer: %v", err)
	}
	setup := func(h *netlink.Handle, name, addr string) netlink.Link {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(addr), Mask: net.CIDRMask(f.bits, len(net.ParseIP(addr).To16())*8)}}
		if f.name == plan.IPv4 {
			a.Mask = net.CIDRMask(f.bits, 32)
		} else {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s: %v", addr, name, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	setup(hn, "kn-node", f.nodeIP)
	cl := setup(hc, "kn-client", f.clientIP)
	if err := hc.RouteAdd(&netlink.Route{LinkIndex: cl.Attrs().Index, Gw: net.ParseIP(f.nodeIP)}); err != nil {
		t.Fatalf("client default route: %v", err)
	}
}

// listen serves TCP on addr inside ns until the test ends, accepting and
// closing every connection.
func listen(t *testing.T, ns netns.NsHandle, addr string) {
	t.Helper()
	var l net.Listener
	err := onThreadIn(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// dial connects from ns, returning the error and how long it took.
func dial(ns netns.NsHandle, addr string) (time.Duration, error) {
	start := time.Now()
	err := onThreadIn(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return time.Since(start), err
}

func TestHostKernelSupportRules(t *testing.T) {
	needRoot(t)
	for _, f := range hostFamilies {
		t.Run(string(f.name), func(t *testing.T) { testSupportRules(t, f) })
	}
}

func testSupportRules(t *testing.T, f hostFamily) {
	node, client := hostNetNS(t), hostNetNS(t)
	hn := rtnl(t, node)
	addBridge(t, hn, hostDev)
	connectVeth(t, node, client, f)

	const table = "kubenode-ipvs"
	nft, err := NewNftables(table, f.name == plan.IPv6, node)
	if err != nil {
		t.Fatal(err)
	}
	defer nft.Close()
	fw := &countingFirewall{Firewall: nft}
	b, err := NewWithKernel(Config{Family: f.name}, zaptest.NewLogger(t), hostKernel{Fake: NewFake(), dev: deviceKernel(t, node)}, fw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	web := svc("web", f.webVIP, 80, ep(netip.AddrPortFrom(netip.MustParseAddr(f.webEP), 8080).String(), true))
	web.NodePort = 30080
	empty := svc("empty", f.emptyVIP, 80)
	p := mkPlan(web, empty)
	p.Family = f.name
	p.NodeIPs = []netip.Addr{netip.MustParseAddr(f.nodeIP)}
	p.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix(f.cidr)}
	if err := b.Sync(ctx, p, nil, true); err != nil {
		t.Fatalf("full sync: %v", err)
	}

	tcp := func(a string, port int) string { return fmt.Sprintf("%s . TCP . %d", a, port) }
	want := map[string][]string{
		"service-vips":        {tcp(f.webVIP, 80), tcp(f.emptyVIP, 80), tcp(f.nodeIP, 30080)},
		"cluster-vips":        {tcp(f.webVIP, 80), tcp(f.emptyVIP, 80)},
		"external-masq":       {tcp(f.nodeIP, 30080)},
		"hairpin":             {tcp(f.webEP, 8080) + " . " + f.webEP},
		"no-endpoints-reject": {tcp(f.emptyVIP, 80)},
		"no-endpoints-drop":   {},
		"node-ports":          {"TCP . 30080"},
		"cluster-cidrs":       {f.cidrStart, f.end},
		"lb-firewall":         {},
		"lb-source-ranges":    {},
	}
	checkTable := func(t *testing.T, want map[string][]string) {
		t.Helper()
		want = maps(want)
		for _, l := range want {
			slices.Sort(l)
		}
		d, ok := readTable(t, node, table, f.nftFam)
		if !ok {
			t.Fatalf("table %s missing", table)
		}
		wantChains := map[string]string{
			"nat-prerouting": "nat hook 0", "filter-input": "filter hook 1", "filter-forward": "filter hook 2",
			"nat-output": "nat hook 3", "nat-postrouting": "nat hook 4",
			"filter-prerouting": "filter hook 0", "filter-output": "filter hook 3",
		}
		if fmt.Sprint(d.chains) != fmt.Sprint(wantChains) {
			t.Errorf("chains = %v, want %v", d.chains, wantChains)
		}
		for ch, n := range d.rules {
			if n == 0 {
				t.Errorf("chain %s has no rules", ch)
			}
		}
		if fmt.Sprint(d.elems) != fmt.Sprint(want) {
			t.Errorf("set elements:\n got %v\nwant %v", d.elems, want)
		}
	}
	t.Run("full sync programs chains, sets and elements", func(t *testing.T) { checkTable(t, want) })

	t.Run("service addresses are on the device", func(t *testing.T) {
		got := linkAddrs(t, hn, hostDev)
		for _, a := range []string{f.webVIP, f.emptyVIP} {
			ip := netip.MustParseAddr(a)
			if _, ok := got[netip.PrefixFrom(ip, ip.BitLen()).String()]; !ok {
				t.Errorf("%s not on %s: %v", a, hostDev, got)
			}
		}
	})

	// Both VIPs have a listener, so a refusal can only come from our rule.
	webAddr := net.JoinHostPort(f.webVIP, "80")
	emptyAddr := net.JoinHostPort(f.emptyVIP, "80")
	listen(t, node, webAddr)
	listen(t, node, emptyAddr)
	refused := func(t *testing.T, addr string) {
		t.Helper()
		d, err := dial(client, addr)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect to %s (no endpoints): err = %v after %s, want connection refused", addr, err, d)
		}
		if d > f.refuseWithin {
			t.Errorf("connect to %s refused only after %s, want within %s", addr, d, f.refuseWithin)
		}
	}
	accepted := func(t *testing.T, addr string) {
		t.Helper()
		if d, err := dial(client, addr); err != nil {
			t.Fatalf("connect to %s: %v after %s; our rules must not stop it", addr, err, d)
		}
	}
	t.Run("service without endpoints is rejected", func(t *testing.T) { refused(t, emptyAddr) })
	t.Run("service with endpoints is not rejected", func(t *testing.T) { accepted(t, webAddr) })

	t.Run("partial sync changes only that service's elements", func(t *testing.T) {
		before := fw.replaces
		// A changed service is a new object, as the planner hands it over.
		p.Services[empty.Name] = svc("empty", f.emptyVIP, 80, ep(netip.AddrPortFrom(netip.MustParseAddr(f.emptyEP), 8080).String(), false))
		if err := b.Sync(ctx, p, map[plan.ServicePortName]struct{}{empty.Name: {}}, false); err != nil {
			t.Fatalf("partial sync: %v", err)
		}
		if fw.replaces != before || fw.updates != 1 {
			t.Errorf("partial sync: %d replaces, %d updates; want the table updated in place once", fw.replaces-before, fw.updates)
		}
		w := maps(want)
		w["no-endpoints-reject"] = []string{}
		w["hairpin"] = append(w["hairpin"], tcp(f.emptyEP, 8080)+" . "+f.emptyEP)
		checkTable(t, w)
		accepted(t, emptyAddr)
	})

	t.Run("losing endpoints rejects again", func(t *testing.T) {
		p.Services[empty.Name] = svc("empty", f.emptyVIP, 80)
		if err := b.Sync(ctx, p, map[plan.ServicePortName]struct{}{empty.Name: {}}, false); err != nil {
			t.Fatalf("partial sync: %v", err)
		}
		checkTable(t, want)
		refused(t, emptyAddr)
	})

	t.Run("removing a service removes its elements and address", func(t *testing.T) {
		delete(p.Services, web.Name)
		if err := b.Sync(ctx, p, map[plan.ServicePortName]struct{}{web.Name: {}}, false); err != nil {
			t.Fatalf("partial sync: %v", err)
		}
		checkTable(t, map[string][]string{
			"service-vips":        {tcp(f.emptyVIP, 80)},
			"cluster-vips":        {tcp(f.emptyVIP, 80)},
			"external-masq":       {},
			"hairpin":             {},
			"no-endpoints-reject": {tcp(f.emptyVIP, 80)},
			"no-endpoints-drop":   {},
			"node-ports":          {},
			"cluster-cidrs":       {f.cidrStart, f.end},
			"lb-firewall":         {},
			"lb-source-ranges":    {},
		})
		ip := netip.MustParseAddr(f.webVIP)
		if _, ok := linkAddrs(t, hn, hostDev)[netip.PrefixFrom(ip, ip.BitLen()).String()]; ok {
			t.Errorf("%s still on %s after its service was removed", f.webVIP, hostDev)
		}
	})

	t.Run("cleanup removes the table and the device, idempotently", func(t *testing.T) {
		for i := range 2 {
			if err := b.Cleanup(ctx); err != nil {
				t.Fatalf("Cleanup #%d: %v", i+1, err)
			}
			if _, ok := readTable(t, node, table, f.nftFam); ok {
				t.Fatalf("table %s still exists after Cleanup #%d", table, i+1)
			}
			if _, err := hn.LinkByName(hostDev); err == nil {
				t.Fatalf("%s still exists after Cleanup #%d", hostDev, i+1)
			}
		}
	})
}

func maps(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// dialFrom connects from ns with the given local address (invalid: any) and
// a short timeout; a dropped SYN shows as a timeout.
func dialFrom(ns netns.NsHandle, local netip.Addr, addr string, timeout time.Duration) error {
	return onThreadIn(ns, func() error {
		d := net.Dialer{Timeout: timeout}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		c, err := d.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// The loadBalancerSourceRanges rules on this kernel's nftables: without
// IPVS the LB IP is simply a local address with a listener, so whatever
// stops a connection is our table. The same behaviour through IPVS is
// TestIPVSLoadBalancerSourceRanges under qemu.
// lbFamily holds one family's addresses for the source-range test.
type lbFamily struct {
	hostFamily
	outside, lbIP, openLB string
	narrow                []string // overlapping, holding clientIP only
	wide                  string   // the node's subnet
	wantRange             string   // the merged narrow ranges as read back
}

var lbFamilies = []lbFamily{
	{hostFamily: hostFamilies[0], outside: "10.0.0.5", lbIP: "192.0.2.10", openLB: "192.0.2.11",
		narrow: []string{"10.0.0.2/32", "10.0.0.2/31"}, wide: "10.0.0.0/24",
		wantRange: "192.0.2.10 . TCP . 80 . 10.0.0.2 - 192.0.2.10 . TCP . 80 . 10.0.0.3"},
	{hostFamily: hostFamilies[1], outside: "fd00:1::5", lbIP: "fd00:db8::10", openLB: "fd00:db8::11",
		narrow: []string{"fd00:1::2/128", "fd00:1::2/127"}, wide: "fd00:1::/64",
		wantRange: "fd00:db8::10 . TCP . 80 . fd00:1::2 - fd00:db8::10 . TCP . 80 . fd00:1::3"},
}

func TestHostKernelLoadBalancerSourceRanges(t *testing.T) {
	needRoot(t)
	for _, f := range lbFamilies {
		t.Run(string(f.name), func(t *testing.T) { testLoadBalancerSourceRanges(t, f) })
	}
}

func testLoadBalancerSourceRanges(t *testing.T, f lbFamily) {
	node, client := hostNetNS(t), hostNetNS(t)
	hn := rtnl(t, node)
	addBridge(t, hn, hostDev)
	connectVeth(t, node, client, f.hostFamily)
	// A second client address, outside the range below.
	inside, outside := netip.MustParseAddr(f.clientIP), netip.MustParseAddr(f.outside)
	hc := rtnl(t, client)
	cl, err := hc.LinkByName("kn-client")
	if err != nil {
		t.Fatal(err)
	}
	bits := outside.BitLen()
	if err := hc.AddrAdd(cl, &netlink.Addr{IPNet: &net.IPNet{IP: outside.AsSlice(), Mask: net.CIDRMask(f.bits, bits)}, Flags: unix.IFA_F_NODAD}); err != nil {
		t.Fatal(err)
	}

	nft, err := NewNftables("kubenode-ipvs", f.name == plan.IPv6, node)
	if err != nil {
		t.Fatal(err)
	}
	defer nft.Close()
	b, err := NewWithKernel(Config{Family: f.name}, zaptest.NewLogger(t), hostKernel{Fake: NewFake(), dev: deviceKernel(t, node)}, nft)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lbIP := netip.MustParseAddr(f.lbIP)
	lb := svc("lb", f.webVIP, 80, ep(netip.AddrPortFrom(netip.MustParseAddr(f.webEP), 8080).String(), true))
	lb.LoadBalancerIPs = []netip.Addr{lbIP}
	// Overlapping ranges on purpose: the kernel's range set refuses
	// overlapping elements, so the backend must merge them.
	for _, r := range f.narrow {
		lb.LoadBalancerSourceRanges = append(lb.LoadBalancerSourceRanges, netip.MustParsePrefix(r))
	}
	open := svc("open", f.emptyVIP, 80, ep(netip.AddrPortFrom(netip.MustParseAddr(f.emptyEP), 8080).String(), true))
	openLB := netip.MustParseAddr(f.openLB)
	open.LoadBalancerIPs = []netip.Addr{openLB}
	p := mkPlan(lb, open)
	p.Family = f.name
	p.ClusterCIDRs = nil
	p.NodeIPs = []netip.Addr{netip.MustParseAddr(f.nodeIP)}
	if err := b.Sync(ctx, p, nil, true); err != nil {
		t.Fatalf("full sync: %v", err)
	}
	t.Cleanup(func() { _ = b.Cleanup(ctx) })
	lbAddr, openAddr := netip.AddrPortFrom(lbIP, 80).String(), netip.AddrPortFrom(openLB, 80).String()
	listen(t, node, lbAddr)
	listen(t, node, openAddr)

	reaches := func(t *testing.T, ns netns.NsHandle, src netip.Addr, addr string) {
		t.Helper()
		if err := dialFrom(ns, src, addr, 3*time.Second); err != nil {
			t.Fatalf("from %v to %s: %v, want a connection", src, addr, err)
		}
	}
	dropped := func(t *testing.T, ns netns.NsHandle, src netip.Addr, addr string) {
		t.Helper()
		err := dialFrom(ns, src, addr, time.Second)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("from %v to %s: err = %v, want a timeout (dropped)", src, addr, err)
		}
	}

	d, ok := readTable(t, node, "kubenode-ipvs", f.nftFam)
	if !ok {
		t.Fatal("table missing")
	}
	wantRanges := []string{f.wantRange}
	if !slices.Equal(d.elems["lb-source-ranges"], wantRanges) {
		t.Errorf("lb-source-ranges = %q, want %q", d.elems["lb-source-ranges"], wantRanges)
	}

	// First, so neighbour discovery for the outside address is done and
	// cannot pass for a drop below.
	t.Run("service without ranges is open to all", func(t *testing.T) { reaches(t, client, outside, openAddr) })
	t.Run("source inside the ranges reaches the LB IP", func(t *testing.T) { reaches(t, client, inside, lbAddr) })
	t.Run("source outside the ranges is dropped", func(t *testing.T) { dropped(t, client, outside, lbAddr) })
	t.Run("node outside the ranges is dropped too, like upstream", func(t *testing.T) {
		dropped(t, node, netip.Addr{}, lbAddr)
	})

	t.Run("widening the ranges to the node's subnet lets the node in", func(t *testing.T) {
		wide := *lb
		wide.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix(f.wide)}
		p.Services[lb.Name] = &wide
		if err := b.Sync(ctx, p, map[plan.ServicePortName]struct{}{lb.Name: {}}, false); err != nil {
			t.Fatalf("partial sync: %v", err)
		}
		reaches(t, node, netip.Addr{}, lbAddr)
		reaches(t, client, outside, lbAddr)
	})

	t.Run("dropping the ranges opens the LB IP", func(t *testing.T) {
		none := *lb
		none.LoadBalancerSourceRanges = nil
		p.Services[lb.Name] = &none
		if err := b.Sync(ctx, p, nil, true); err != nil {
			t.Fatalf("full sync: %v", err)
		}
		d, _ := readTable(t, node, "kubenode-ipvs", f.nftFam)
		if len(d.elems["lb-firewall"])+len(d.elems["lb-source-ranges"]) != 0 {
			t.Fatalf("firewall elements left: %v", d.elems)
		}
		reaches(t, client, outside, lbAddr)
	})

	t.Run("two services with nested ranges on one LB IP: merged, not refused", func(t *testing.T) {
		wide, narrow := *lb, *lb
		wide.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix(f.wide)}
		narrow.Name.Name, narrow.ClusterIP = "lb-twin", netip.MustParseAddr(f.emptyVIP).Next()
		narrow.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix(f.narrow[0])}
		p.Services[lb.Name], p.Services[narrow.Name] = &wide, &narrow
		if err := b.Sync(ctx, p, nil, true); err != nil {
			t.Fatalf("full sync: %v", err)
		}
		reaches(t, client, outside, lbAddr)
		// What the merge avoids: the kernel refuses the overlapping element.
		e := sourceRange(lbIP, unix.IPPROTO_TCP, 80, netip.MustParsePrefix(f.narrow[0]))
		if err := nft.Update([]Element{e}, nil); err == nil {
			t.Error("the kernel accepted an overlapping range element; merging would be unnecessary")
		}
	})
}
