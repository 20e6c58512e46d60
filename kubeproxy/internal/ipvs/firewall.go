package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// SetName names one of the support rules' sets. The rules themselves are
// fixed; syncing services only changes set elements. (A small integer keeps
// element map keys cheap to hash at 100k elements.)
type SetName uint8

const (
	// SetServiceVIPs: every (address, protocol, port) IPVS serves. Traffic
	// from the node itself to them is masqueraded, and everything with
	// MasqueradeAll.
	SetServiceVIPs SetName = iota + 1
	// SetClusterVIPs: cluster IP ports, masqueraded when the source is
	// outside the cluster CIDRs.
	SetClusterVIPs
	// SetExternalMasq: external/LB IP and node-port destinations of
	// externalTrafficPolicy=Cluster services, always masqueraded.
	SetExternalMasq
	// SetHairpin: (endpoint, protocol, port, endpoint) -- an endpoint that
	// reached itself through a service is masqueraded.
	SetHairpin
	// SetReject / SetDrop: destinations with no endpoints (new connections
	// are rejected / dropped, like upstream).
	SetReject
	SetDrop
	// SetNodePorts: (protocol, port) accepted on input.
	SetNodePorts
	// SetLBFirewall: load-balancer IP destinations of services with
	// loadBalancerSourceRanges; traffic to them from a source that
	// SetLBSourceRanges does not list for that destination is dropped.
	SetLBFirewall
	// SetLBSourceRanges: (address, protocol, port, source prefix), an
	// interval set; Element.Src() is the prefix.
	SetLBSourceRanges
)

var setNames = map[SetName]string{
	SetServiceVIPs: "service-vips", SetClusterVIPs: "cluster-vips", SetExternalMasq: "external-masq",
	SetHairpin: "hairpin", SetReject: "no-endpoints-reject", SetDrop: "no-endpoints-drop", SetNodePorts: "node-ports",
	SetLBFirewall: "lb-firewall", SetLBSourceRanges: "lb-source-ranges",
}

// String returns the nftables set name.
func (s SetName) String() string { return setNames[s] }

var allSets = []SetName{SetServiceVIPs, SetClusterVIPs, SetExternalMasq, SetHairpin, SetReject, SetDrop, SetNodePorts,
	SetLBFirewall, SetLBSourceRanges}

// Element is one set element; fields a set does not use are zero.
type Element struct {
	Set   SetName
	Addr  netip.Addr
	Proto uint8
	Port  uint16
	// Bits is the source prefix length of a SetLBSourceRanges element,
	// whose prefix address is Addr2 (see Src). A byte here fits in padding:
	// a netip.Prefix field would grow every element by a third.
	Bits  uint8
	Addr2 netip.Addr
}

// sourceRange is the SetLBSourceRanges element for destination
// addr/proto/port and source prefix src.
func sourceRange(addr netip.Addr, proto uint8, port uint16, src netip.Prefix) Element {
	src = src.Masked()
	return Element{Set: SetLBSourceRanges, Addr: addr, Proto: proto, Port: port, Addr2: src.Addr(), Bits: uint8(src.Bits())}
}

// Src is the source prefix of a SetLBSourceRanges element.
func (e Element) Src() netip.Prefix {
	if e.Set != SetLBSourceRanges {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(e.Addr2, int(e.Bits))
}

func (e Element) String() string {
	s := fmt.Sprintf("%s{%s . %s . %d", e.Set, e.Addr, protoName(uint16(e.Proto)), e.Port)
	if src := e.Src(); src.IsValid() {
		s += " . " + src.String()
	} else if e.Addr2.IsValid() {
		s += " . " + e.Addr2.String()
	}
	return s + "}"
}

// elemKey is Element without pointers (netip.Addr holds one): maps of
// 100k+ elements then hash plain memory and cost the GC nothing to scan.
type elemKey struct {
	set   SetName
	proto uint8
	port  uint16
	v6    bool
	bits  uint8 // Src's prefix length; Src's address is in a2
	a, a2 [16]byte
}

func (e Element) key() elemKey {
	k := elemKey{set: e.Set, proto: e.Proto, port: e.Port, v6: e.Addr.Is6()}
	if e.Addr.IsValid() {
		k.a = e.Addr.As16()
	}
	if e.Addr2.IsValid() {
		k.a2 = e.Addr2.As16()
	}
	k.bits = e.Bits
	return k
}

func (k elemKey) elem() Element {
	e := Element{Set: k.set, Proto: k.proto, Port: k.port}
	addr := func(b [16]byte) netip.Addr {
		a := netip.AddrFrom16(b)
		if !k.v6 {
			a = a.Unmap()
		}
		return a
	}
	if k.set != SetNodePorts {
		e.Addr = addr(k.a)
	}
	if k.set == SetHairpin || k.set == SetLBSourceRanges {
		e.Addr2 = addr(k.a2)
	}
	if k.set == SetLBSourceRanges {
		e.Bits = k.bits
	}
	return e
}

// Ruleset is the whole support table.
type Ruleset struct {
	IPv6          bool
	ClusterCIDRs  []netip.Prefix
	MasqueradeAll bool
	Elements      []Element
}

// Firewall programs the IPVS mode's own nftables table (never another
// component's). Replace rebuilds it atomically; Update changes set elements
// in one transaction.
type Firewall interface {
	Replace(r *Ruleset) error
	Update(add, del []Element) error
	Cleanup() error
}

// FakeFirewall keeps the ruleset in memory and can walk a packet through it.
type FakeFirewall struct {
	mu                sync.Mutex
	exists            bool
	rs                Ruleset
	elems             map[elemKey]bool
	ranges            map[elemKey]bool // the SetLBSourceRanges subset of elems
	Replaces, Updates int
}

var _ Firewall = (*FakeFirewall)(nil)

func NewFakeFirewall() *FakeFirewall {
	return &FakeFirewall{elems: map[elemKey]bool{}, ranges: map[elemKey]bool{}}
}

func (f *FakeFirewall) Replace(r *Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Replaces++
	// Like the kernel, a refused element leaves the old table as it was.
	ranges := map[elemKey]bool{}
	for _, e := range r.Elements {
		if e.Set == SetLBSourceRanges {
			if err := checkOverlap(ranges, nil, e); err != nil {
				return err
			}
			ranges[e.key()] = true
		}
	}
	f.exists = true
	f.rs = Ruleset{IPv6: r.IPv6, ClusterCIDRs: slices.Clone(r.ClusterCIDRs), MasqueradeAll: r.MasqueradeAll}
	f.elems = make(map[elemKey]bool, len(r.Elements))
	for _, e := range r.Elements {
		f.elems[e.key()] = true
	}
	f.ranges = ranges
	return nil
}

// checkOverlap refuses a source-range element overlapping another one of
// the same destination in ranges (less those in gone), as the kernel's
// range set does (ENOTEMPTY), which fails the whole transaction.
func checkOverlap(ranges map[elemKey]bool, gone []Element, e Element) error {
	for k := range ranges {
		o := k.elem()
		if o.Addr == e.Addr && o.Proto == e.Proto && o.Port == e.Port && o.Src() != e.Src() && o.Src().Overlaps(e.Src()) &&
			!slices.Contains(gone, o) {
			return fmt.Errorf("add element %s: overlaps %s", e, o)
		}
	}
	return nil
}

func (f *FakeFirewall) Update(add, del []Element) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.exists {
		return fmt.Errorf("update table: %w", ErrNotFound)
	}
	f.Updates++
	// Like the kernel, a failing element fails the whole transaction.
	for _, e := range del {
		if !f.elems[e.key()] {
			return fmt.Errorf("delete element %s: %w", e, ErrNotFound)
		}
	}
	for _, e := range add {
		if f.elems[e.key()] && !slices.Contains(del, e) {
			return fmt.Errorf("add element %s: %w", e, ErrExist)
		}
	}
	var added []Element
	for _, e := range add {
		if e.Set != SetLBSourceRanges {
			continue
		}
		if err := checkOverlap(f.ranges, del, e); err != nil {
			return err
		}
		for _, a := range added {
			if a.Addr == e.Addr && a.Proto == e.Proto && a.Port == e.Port && a.Src() != e.Src() && a.Src().Overlaps(e.Src()) {
				return fmt.Errorf("add element %s: overlaps %s", e, a)
			}
		}
		added = append(added, e)
	}
	for _, e := range del {
		delete(f.elems, e.key())
		delete(f.ranges, e.key())
	}
	for _, e := range add {
		f.elems[e.key()] = true
		if e.Set == SetLBSourceRanges {
			f.ranges[e.key()] = true
		}
	}
	return nil
}

func (f *FakeFirewall) Cleanup() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exists = false
	f.elems, f.ranges = map[elemKey]bool{}, map[elemKey]bool{}
	return nil
}

// Exists reports whether the table exists.
func (f *FakeFirewall) Exists() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exists
}

// Has reports whether an element is programmed.
func (f *FakeFirewall) Has(e Element) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.elems[e.key()]
}

// Len returns the number of programmed elements.
func (f *FakeFirewall) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.elems)
}

// Verdict is what the support rules do with a new connection.
type Verdict struct {
	Reject, Drop, Masquerade bool
}

// Packet walks the first packet of a new TCP connection through the
// support rules, as nftables would: local says it comes from the node
// itself; endpoint is where IPVS sent it (invalid when IPVS did not).
func (f *FakeFirewall) Packet(src, dst netip.Addr, port uint16, local bool, endpoint netip.AddrPort) Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	var v Verdict
	if !f.exists {
		return v
	}
	proto := uint8(unix.IPPROTO_TCP)
	key := func(set SetName) elemKey { return Element{Set: set, Addr: dst, Proto: proto, Port: port}.key() }
	if !local {
		v.Reject = f.elems[key(SetReject)]
		v.Drop = f.elems[key(SetDrop)]
	}
	if f.elems[key(SetLBFirewall)] && !f.sourceAllowed(src, dst, proto, port) {
		// Checked before IPVS, on every path: from outside and from the node.
		v.Drop = true
	}
	mark := false
	switch {
	case f.rs.MasqueradeAll || local:
		mark = f.elems[key(SetServiceVIPs)]
	case len(f.rs.ClusterCIDRs) > 0 && f.elems[key(SetClusterVIPs)]:
		mark = !slices.ContainsFunc(f.rs.ClusterCIDRs, func(p netip.Prefix) bool { return p.Contains(src) })
	}
	if f.elems[key(SetExternalMasq)] {
		mark = true
	}
	hair := endpoint.IsValid() && f.elems[Element{Set: SetHairpin, Addr: endpoint.Addr(), Proto: proto, Port: endpoint.Port(), Addr2: src}.key()]
	v.Masquerade = mark || hair
	return v
}

// sourceAllowed reports whether src is in a SetLBSourceRanges prefix for
// the destination. Callers hold f.mu.
func (f *FakeFirewall) sourceAllowed(src, dst netip.Addr, proto uint8, port uint16) bool {
	for k := range f.ranges {
		e := k.elem()
		if e.Addr == dst && e.Proto == proto && e.Port == port && e.Src().Contains(src) {
			return true
		}
	}
	return false
}
