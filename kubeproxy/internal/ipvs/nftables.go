package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// masqMark is the packet mark bit that asks the postrouting chain to
// masquerade, as in upstream kube-proxy.
const masqMark = 0x4000

// elemsPerMessage keeps each set-element message's nested attribute under
// netlink's 64 KiB attribute limit.
const elemsPerMessage = 500

// Nftables is the real Firewall, through github.com/google/nftables.
type Nftables struct {
	conn  *nftables.Conn
	table *nftables.Table
	ipv6  bool
	sets  map[SetName]*nftables.Set
}

var _ Firewall = (*Nftables)(nil)

// NewNftables opens a netlink connection in ns (netns.None() for the current
// namespace) for the named table; it changes nothing.
func NewNftables(table string, ipv6 bool, ns netns.NsHandle) (*Nftables, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if ns.IsOpen() {
		opts = append(opts, nftables.WithNetNSFd(int(ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	fam := nftables.TableFamilyIPv4
	if ipv6 {
		fam = nftables.TableFamilyIPv6
	}
	n := &Nftables{conn: c, table: &nftables.Table{Name: table, Family: fam}, ipv6: ipv6}
	n.sets = n.setDefs()
	return n, nil
}

// bigBuffers lets one transaction carry tens of thousands of elements;
// the default socket buffer (~200 KiB) refuses larger batches with EMSGSIZE.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20); e != nil {
			serr = e
		}
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); e != nil && serr == nil {
			serr = e
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("enlarge nftables netlink buffers: %w", serr)
	}
	return nil
}

// Close closes the netlink connection.
func (n *Nftables) Close() { _ = n.conn.CloseLasting() }

func (n *Nftables) addrType() nftables.SetDatatype {
	if n.ipv6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

func (n *Nftables) setDefs() map[SetName]*nftables.Set {
	a := n.addrType()
	vip := nftables.MustConcatSetType(a, nftables.TypeInetProto, nftables.TypeInetService)
	m := map[SetName]*nftables.Set{}
	for _, s := range []SetName{SetServiceVIPs, SetClusterVIPs, SetExternalMasq, SetReject, SetDrop, SetLBFirewall} {
		m[s] = &nftables.Set{Table: n.table, Name: s.String(), KeyType: vip, Concatenation: true}
	}
	m[SetHairpin] = &nftables.Set{Table: n.table, Name: SetHairpin.String(), Concatenation: true,
		KeyType: nftables.MustConcatSetType(a, nftables.TypeInetProto, nftables.TypeInetService, a)}
	// A concatenation with a range in it: the kernel's pipapo set, which
	// matches each field against a range (the address fields here are
	// single addresses, the source a prefix).
	m[SetLBSourceRanges] = &nftables.Set{Table: n.table, Name: SetLBSourceRanges.String(), Concatenation: true, Interval: true,
		KeyType: nftables.MustConcatSetType(a, nftables.TypeInetProto, nftables.TypeInetService, a)}
	m[SetNodePorts] = &nftables.Set{Table: n.table, Name: SetNodePorts.String(), Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)}
	return m
}

// key encodes an element as nftables lays out concatenations: each field
// padded to a multiple of 4 bytes.
func key(e Element) []byte {
	var b []byte
	if e.Set != SetNodePorts {
		b = append(b, e.Addr.AsSlice()...)
	}
	b = append(b, e.Proto, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, e.Port)
	b = append(b, 0, 0)
	if e.Set == SetHairpin || e.Set == SetLBSourceRanges {
		b = append(b, e.Addr2.AsSlice()...)
	}
	return b
}

// keyEnd is the inclusive upper end of a range element (nil for others):
// the same fields with the source prefix's last address.
func keyEnd(e Element) []byte {
	if e.Set != SetLBSourceRanges {
		return nil
	}
	b := key(e)
	last := lastAddr(e.Src()).AsSlice()
	copy(b[len(b)-len(last):], last)
	return b
}

func (n *Nftables) addElements(s *nftables.Set, elems []Element, del bool) error {
	for len(elems) > 0 {
		chunk := elems[:min(len(elems), elemsPerMessage)]
		elems = elems[len(chunk):]
		vals := make([]nftables.SetElement, len(chunk))
		for i, e := range chunk {
			vals[i] = nftables.SetElement{Key: key(e), KeyEnd: keyEnd(e)}
		}
		var err error
		if del {
			err = n.conn.SetDeleteElements(s, vals)
		} else {
			err = n.conn.SetAddElements(s, vals)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func bySet(elems []Element) map[SetName][]Element {
	m := map[SetName][]Element{}
	for _, e := range elems {
		m[e.Set] = append(m[e.Set], e)
	}
	return m
}

// Register numbers of nftables' 32-bit register file (NFT_REG32_00...).
const reg32 = 8

// Field loaders put header fields into consecutive 32-bit registers.
func (n *Nftables) addrLen() uint32 {
	if n.ipv6 {
		return 16
	}
	return 4
}

func (n *Nftables) daddr(reg uint32) expr.Any {
	off := uint32(16)
	if n.ipv6 {
		off = 24
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n.addrLen()}
}

func (n *Nftables) saddr(reg uint32) expr.Any {
	off := uint32(12)
	if n.ipv6 {
		off = 8
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n.addrLen()}
}

func l4proto(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }

func dport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// matchVIP matches daddr . l4proto . th dport in set s.
func (n *Nftables) matchVIP(s *nftables.Set) []expr.Any {
	r := uint32(reg32)
	w := n.addrLen() / 4
	return []expr.Any{n.daddr(r), l4proto(r + w), dport(r + w + 1),
		&expr.Lookup{SourceRegister: r, SetName: s.Name, SetID: s.ID}}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func setMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(masqMark)), Xor: binaryutil.NativeEndian.PutUint32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

func hasMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(masqMark), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Replace deletes and re-creates the table with r in one transaction.
func (n *Nftables) Replace(r *Ruleset) error {
	if r.IPv6 != n.ipv6 {
		return fmt.Errorf("nftables table %s: ruleset family does not match", n.table.Name)
	}
	c := n.conn
	// Adding first makes the delete succeed whether or not the table exists.
	c.AddTable(n.table)
	c.DelTable(n.table)
	c.AddTable(n.table)
	elems := bySet(r.Elements)
	for _, name := range allSets {
		s := n.sets[name]
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nftables set %s: %w", name, err)
		}
		if err := n.addElements(s, elems[name], false); err != nil {
			return fmt.Errorf("nftables set %s: %w", name, err)
		}
	}
	var cidrs *nftables.Set
	if len(r.ClusterCIDRs) > 0 && !r.MasqueradeAll {
		cidrs = &nftables.Set{Table: n.table, Name: "cluster-cidrs", KeyType: n.addrType(), Interval: true}
		if err := c.AddSet(cidrs, cidrElements(r.ClusterCIDRs)); err != nil {
			return fmt.Errorf("nftables set cluster-cidrs: %w", err)
		}
	}

	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, p *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: n.table, Type: typ, Hooknum: hook, Priority: p})
	}
	rule := func(ch *nftables.Chain, e []expr.Any) { c.AddRule(&nftables.Rule{Table: n.table, Chain: ch, Exprs: e}) }
	masq := []expr.Any{&expr.Masq{}}

	pre := chain("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := chain("nat-output", nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := chain("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	in := chain("filter-input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	// Before IPVS takes the packet (it does on local-out at NAT_DST+2) and
	// before any DNAT, on both ways in: from outside and from the node.
	fwPrio := nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 10)
	fwPre := chain("filter-prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, fwPrio)
	fwOut := chain("filter-output", nftables.ChainTypeFilter, nftables.ChainHookOutput, fwPrio)
	fwd := chain("filter-forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)

	// Which new connections get the masquerade mark.
	switch {
	case r.MasqueradeAll:
		rule(pre, cat(n.matchVIP(n.sets[SetServiceVIPs]), setMark()))
	case cidrs != nil:
		rule(pre, cat([]expr.Any{n.saddr(1), &expr.Lookup{SourceRegister: 1, SetName: cidrs.Name, SetID: cidrs.ID, Invert: true}},
			n.matchVIP(n.sets[SetClusterVIPs]), setMark()))
	}
	rule(pre, cat(n.matchVIP(n.sets[SetExternalMasq]), setMark()))
	// The node reaching a service uses a source address pods cannot answer.
	rule(out, cat(n.matchVIP(n.sets[SetServiceVIPs]), setMark()))

	rule(post, cat(hasMark(), masq))
	w := n.addrLen() / 4
	rule(post, cat([]expr.Any{n.daddr(reg32), l4proto(reg32 + w), dport(reg32 + w + 1), n.saddr(reg32 + w + 2),
		&expr.Lookup{SourceRegister: reg32, SetName: SetHairpin.String(), SetID: n.sets[SetHairpin].ID}}, masq))

	rejectCode := uint8(3) // ICMP port unreachable
	if n.ipv6 {
		rejectCode = 4 // ICMPv6 port unreachable
	}
	rule(in, cat(ctState(expr.CtStateBitNEW), n.matchVIP(n.sets[SetReject]),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: rejectCode}}))
	rule(in, cat(ctState(expr.CtStateBitNEW), n.matchVIP(n.sets[SetDrop]), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}))
	rule(in, cat([]expr.Any{l4proto(reg32), dport(reg32 + 1),
		&expr.Lookup{SourceRegister: reg32, SetName: SetNodePorts.String(), SetID: n.sets[SetNodePorts].ID},
		&expr.Verdict{Kind: expr.VerdictAccept}}))
	rule(fwd, cat(ctState(expr.CtStateBitINVALID), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}))

	// loadBalancerSourceRanges: traffic to a firewalled LB IP from a source
	// outside its ranges is dropped.
	lbDrop := func() []expr.Any {
		return cat(n.matchVIP(n.sets[SetLBFirewall]),
			[]expr.Any{n.daddr(reg32), l4proto(reg32 + w), dport(reg32 + w + 1), n.saddr(reg32 + w + 2),
				&expr.Lookup{SourceRegister: reg32, SetName: SetLBSourceRanges.String(), SetID: n.sets[SetLBSourceRanges].ID, Invert: true},
				&expr.Verdict{Kind: expr.VerdictDrop}})
	}
	// A packet arriving on lo was sent by this node, judged on output
	// already and maybe masqueraded since (a source no range lists).
	notLoopback := []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_LOOPBACK)}}
	rule(fwPre, cat(notLoopback, lbDrop()))
	rule(fwOut, lbDrop())

	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables table %s: %w", n.table.Name, err)
	}
	return nil
}

// cidrElements turns prefixes into interval-set start/end elements.
func cidrElements(ps []netip.Prefix) []nftables.SetElement {
	var out []nftables.SetElement
	for _, p := range ps {
		p = p.Masked()
		out = append(out, nftables.SetElement{Key: p.Addr().AsSlice()})
		end := lastAddr(p).Next()
		if end.IsValid() { // a prefix reaching the top of the space has no end
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Update adds and deletes set elements in one transaction.
func (n *Nftables) Update(add, del []Element) error {
	for name, es := range bySet(del) {
		if err := n.addElements(n.sets[name], es, true); err != nil {
			return err
		}
	}
	for name, es := range bySet(add) {
		if err := n.addElements(n.sets[name], es, false); err != nil {
			return err
		}
	}
	if err := n.conn.Flush(); err != nil {
		return fmt.Errorf("update nftables table %s: %w", n.table.Name, err)
	}
	return nil
}

// Cleanup deletes the table; a missing table is not an error.
func (n *Nftables) Cleanup() error {
	n.conn.AddTable(n.table)
	n.conn.DelTable(n.table)
	if err := n.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete nftables table %s: %w", n.table.Name, err)
	}
	return nil
}

// TableExists reports whether the table is present.
func (n *Nftables) TableExists() (bool, error) {
	_, err := n.conn.ListTableOfFamily(n.table.Name, n.table.Family)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, err
}
