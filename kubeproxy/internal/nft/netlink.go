package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Socket buffer limits. A full sync of tens of thousands of services is
// one batch of tens of megabytes, and the kernel queues one ack per message
// before we read any; nft raises its buffers the same way. These are
// limits, not allocations.
const (
	sndBufBytes = 1 << 29
	rcvBufBytes = 1 << 28
	// elemsPerMessage keeps each element list attribute well below the
	// 64 KiB netlink attribute limit.
	elemsPerMessage = 400
	// keptBufBytes bounds the batch buffer kept between transactions:
	// enough for any partial sync, while a full sync's big buffers go back
	// to the heap.
	keptBufBytes = 1 << 20
)

// Kernel constants x/sys/unix does not carry.
const (
	nfDrop    = 0          // NF_DROP verdict code
	nfAccept  = 1          // NF_ACCEPT verdict code
	nftGoto   = 0xfffffffc // NFT_GOTO (-4) as sent on the wire
	ipsDstNAT = 0x20       // IPS_DST_NAT conntrack status bit
)

// Registers: the verdict register, two 128-bit scratch registers and the
// 32-bit registers 8..23 that concatenations use.
const (
	regVerdict = 0
	reg1       = 1
	reg2       = 2
	reg32      = 8
)

// netlinkKernel is the kernel seam over github.com/google/nftables.
type netlinkKernel struct {
	table *nftables.Table
	f     fam
	mark  uint32
	netns int
	conn  *nftables.Conn
	raw   *netlink.Conn
	exprs *exprCache
	seq   uint32
	// buf is the last batch's buffer, reused by the next unless it is
	// bigger than keptBufBytes (a full sync's).
	buf   []byte
	sets  map[string]*nftables.Set
	kinds []setKind
}

func newNetlinkKernel(table string, f fam, mark uint32, netns int) *netlinkKernel {
	k := &netlinkKernel{
		table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet},
		f:     f,
		mark:  mark,
		netns: netns,
		sets:  map[string]*nftables.Set{},
		kinds: f.sets(),
		exprs: &exprCache{m: map[any][]byte{}},
	}
	for _, sk := range k.kinds {
		k.sets[sk.name] = k.setFor(sk)
	}
	return k
}

func (k *netlinkKernel) connect() (*nftables.Conn, error) {
	if k.conn != nil {
		return k.conn, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(setBuffers)}
	if k.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(k.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	k.conn = c
	return c, nil
}

// close drops the lasting socket (after an error its state is unknown).
func (k *netlinkKernel) close() {
	if k.conn != nil {
		_ = k.conn.CloseLasting()
		k.conn = nil
	}
}

func datatype(f keyField) nftables.SetDatatype {
	switch f {
	case fieldAddr4:
		return nftables.TypeIPAddr
	case fieldAddr6:
		return nftables.TypeIP6Addr
	case fieldProto:
		return nftables.TypeInetProto
	case fieldPort:
		return nftables.TypeInetService
	}
	// mark: a 32-bit type nft can print inside concatenations.
	return nftables.TypeMark
}

func concatType(fields []keyField) (nftables.SetDatatype, bool) {
	if len(fields) == 1 {
		return datatype(fields[0]), false
	}
	types := make([]nftables.SetDatatype, len(fields))
	for i, f := range fields {
		types[i] = datatype(f)
	}
	return nftables.MustConcatSetType(types...), true
}

func (k *netlinkKernel) setFor(sk setKind) *nftables.Set {
	key, concat := concatType(sk.keyType)
	s := &nftables.Set{Table: k.table, Name: sk.name, KeyType: key, Concatenation: concat}
	switch {
	case sk.verdict:
		s.IsMap, s.DataType = true, nftables.TypeVerdict
	case sk.dataType != nil:
		s.IsMap = true
		s.DataType, _ = concatType(sk.dataType)
	}
	if sk.dynamic {
		s.HasTimeout, s.Dynamic = true, true
	}
	return s
}

func (k *netlinkKernel) apply(t *tx) (err error) {
	if t.ensure {
		// The table and our sets are created with the library, apart from
		// the main transaction: creating them changes no packet's fate.
		c, err := k.connect()
		if err != nil {
			return err
		}
		c.AddTable(k.table)
		for _, sk := range k.kinds {
			// A fresh Set value each time: the library stamps ids on it.
			if err := c.AddSet(k.setFor(sk), nil); err != nil {
				return fmt.Errorf("set %s: %w", sk.name, err)
			}
		}
		if err := c.Flush(); err != nil {
			k.close()
			return fmt.Errorf("create table %s and its sets: %w", k.table.Name, err)
		}
	}
	conn, err := k.rawConn()
	if err != nil {
		return err
	}
	b := newBatch(k.table.Name, k.exprs, k.seq, k.buf, batchSizeHint(t))
	for _, ch := range t.addChains {
		hookNum, prio, typ := hookOf(ch)
		b.addChain(ch.name, hookNum, prio, typ)
	}
	for _, cr := range t.setRules {
		if cr.flush {
			b.flushChain(cr.chain.name)
		}
		name := cstr(cr.chain.name)
		if cr.chain.hook != hookNone {
			b.addRule(name, k.familyGuard())
		}
		for _, r := range cr.chain.rules {
			b.addRule(name, k.render(r))
		}
	}
	for _, group := range groupBySet(t.delElems) {
		b.elems(group[0].set, group, true)
	}
	for _, group := range groupBySet(t.addElems) {
		b.elems(group[0].set, group, false)
	}
	for _, name := range t.delChains {
		b.flushChain(name)
	}
	for _, name := range t.delChains {
		b.delChain(name)
	}
	err = b.send(conn)
	k.seq, k.buf = b.seq, nil
	if cap(b.buf) <= keptBufBytes {
		k.buf = b.buf[:0]
	}
	if err != nil {
		k.closeRaw()
		return fmt.Errorf("nftables transaction (%d objects): %w", t.size(), err)
	}
	return nil
}

// batchSizeHint guesses a transaction's encoded size from its object
// counts, so the buffer is allocated once instead of growing by copies.
func batchSizeHint(t *tx) int {
	n := 64 + 96*(len(t.addChains)+2*len(t.delChains)) + 48*(len(t.addElems)+len(t.delElems))
	for _, c := range t.setRules {
		n += 64 + 256*(len(c.chain.rules)+1)
	}
	return n
}

// groupBySet sorts elements by set, in place and stably (so a delete and
// re-add of one key keep their order), and returns the runs.
func groupBySet(es []elem) [][]elem {
	slices.SortStableFunc(es, func(a, b elem) int { return strings.Compare(a.set, b.set) })
	var out [][]elem
	for start := 0; start < len(es); {
		end := start + 1
		for end < len(es) && es[end].set == es[start].set {
			end++
		}
		out = append(out, es[start:end])
		start = end
	}
	return out
}

func hookOf(c chain) (uint32, int32, string) {
	if c.hook == hookNone {
		return 0, 0, ""
	}
	hooks := map[hook]uint32{
		hookPrerouting: unix.NF_INET_PRE_ROUTING, hookInput: unix.NF_INET_LOCAL_IN,
		hookForward: unix.NF_INET_FORWARD, hookOutput: unix.NF_INET_LOCAL_OUT,
		hookPostrouting: unix.NF_INET_POST_ROUTING,
	}
	typ := "filter"
	if c.nat {
		typ = "nat"
	}
	return hooks[c.hook], c.priority, typ
}

// rawConn is the lasting socket our own batches go through.
func (k *netlinkKernel) rawConn() (*netlink.Conn, error) {
	if k.raw != nil {
		return k.raw, nil
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns})
	if err != nil {
		return nil, fmt.Errorf("open nf_tables netlink socket: %w", err)
	}
	if err := setBuffers(c); err != nil {
		c.Close()
		return nil, err
	}
	// Extended acks make kernel errors say what they refer to.
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	k.raw = c
	return c, nil
}

func (k *netlinkKernel) closeRaw() {
	if k.raw != nil {
		_ = k.raw.Close()
		k.raw = nil
	}
}

// setBuffers raises a netlink socket's buffers (see sndBufBytes).
func setBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBufBytes); e != nil {
			serr = fmt.Errorf("SO_SNDBUFFORCE: %w", e)
			return
		}
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufBytes); e != nil {
			serr = fmt.Errorf("SO_RCVBUFFORCE: %w", e)
		}
	}); err != nil {
		return err
	}
	return serr
}

func (k *netlinkKernel) deleteTable() error {
	c, err := k.connect()
	if err != nil {
		return err
	}
	if _, err := c.ListTableOfFamily(k.table.Name, k.table.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		k.close()
		return fmt.Errorf("look up table %s: %w", k.table.Name, err)
	}
	c.DelTable(k.table)
	if err := c.Flush(); err != nil {
		k.close()
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("delete table %s: %w", k.table.Name, err)
	}
	return nil
}

func (k *netlinkKernel) read(ks *kernelState) error {
	c, err := k.connect()
	if err != nil {
		return err
	}
	if _, err := c.ListTableOfFamily(k.table.Name, k.table.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		k.close()
		return fmt.Errorf("look up table %s: %w", k.table.Name, err)
	}
	ks.tableExists = true
	chains, err := c.ListChainsOfTableFamily(k.table.Family)
	if err != nil {
		k.close()
		return fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == k.table.Name && strings.HasPrefix(ch.Name, k.f.prefix) {
			ks.chains[ch.Name] = true
		}
	}
	existing, err := c.GetSets(k.table)
	if err != nil {
		k.close()
		return fmt.Errorf("list sets: %w", err)
	}
	have := map[string]bool{}
	for _, s := range existing {
		have[s.Name] = true
	}
	raw, err := k.rawConn()
	if err != nil {
		return err
	}
	for _, sk := range k.kinds {
		if sk.dynamic || !have[sk.name] {
			continue
		}
		if err := dumpElems(raw, k.table.Name, sk, func(r rawElem) { ks.addRaw(sk.name, r) }); err != nil {
			k.closeRaw()
			return err
		}
	}
	return nil
}

func (k *netlinkKernel) readElems(set string) ([]elem, error) {
	raw, err := k.rawConn()
	if err != nil {
		return nil, err
	}
	for _, sk := range k.kinds {
		if sk.name == set {
			var out []elem
			if err := dumpElems(raw, k.table.Name, sk, func(r rawElem) { out = append(out, r.elem(set)) }); err != nil {
				k.closeRaw()
				return nil, err
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("unknown set %q", set)
}

// Rendering: our rule vocabulary -> nftables expressions.

func (k *netlinkKernel) nfproto() byte {
	if k.f.addrLen == 16 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// familyGuard leaves a base chain early for the other family's packets, so
// the address matches below never read the wrong header.
func (k *netlinkKernel) familyGuard() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{k.nfproto()}},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

func (k *netlinkKernel) saddr(reg uint32) expr.Any {
	off := uint32(12)
	if k.f.addrLen == 16 {
		off = 8
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(k.f.addrLen)}
}

func (k *netlinkKernel) daddr(reg uint32) expr.Any {
	off := uint32(16)
	if k.f.addrLen == 16 {
		off = 24
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(k.f.addrLen)}
}

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// addrRegs is how many 32-bit registers an address takes.
func (k *netlinkKernel) addrRegs() uint32 { return uint32(k.f.addrLen / 4) }

func (k *netlinkKernel) lookup(set string, src uint32) *expr.Lookup {
	return &expr.Lookup{SourceRegister: src, SetName: set, SetID: k.sets[set].ID}
}

func (k *netlinkKernel) render(r rule) []expr.Any {
	var ex []expr.Any
	if r.ctNew {
		ex = append(ex,
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(expr.CtStateBitNEW), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)})
	}
	if r.markSet {
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(k.mark), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(k.mark)})
	}
	if r.ctDNAT {
		ex = append(ex,
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(ipsDstNAT), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)})
	}
	if r.daddrLocal {
		ex = append(ex,
			&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(unix.RTN_LOCAL)},
			k.daddr(reg1))
		// Node ports are not served on loopback addresses (like upstream's
		// nftables mode).
		if k.f.addrLen == 4 {
			ex = append(ex,
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{127, 0, 0, 0}})
		} else {
			ex = append(ex, &expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: netip.IPv6Loopback().AsSlice()})
		}
	}
	if r.daddrSet != "" {
		ex = append(ex, k.daddr(reg1), k.lookup(r.daddrSet, reg1))
	}
	if r.src.IsValid() {
		bits := r.src.Bits()
		mask := make([]byte, k.f.addrLen)
		for i := range mask {
			switch {
			case bits >= 8:
				mask[i] = 0xff
				bits -= 8
			case bits > 0:
				mask[i] = byte(0xff << (8 - bits))
				bits = 0
			}
		}
		ex = append(ex, k.saddr(reg1),
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(k.f.addrLen), Mask: mask, Xor: make([]byte, k.f.addrLen)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: r.src.Masked().Addr().AsSlice()})
	}
	if r.fibSrcLocal {
		ex = append(ex,
			&expr.Fib{Register: reg1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(unix.RTN_LOCAL)})
	}
	if r.affinityEp != 0 {
		ex = append(ex,
			&expr.Immediate{Register: reg32, Data: native32(r.affinityEp)},
			k.saddr(reg32+1),
			k.lookup(k.f.affinity(), reg32))
	}
	if r.pick > 0 {
		ex = append(ex,
			&expr.Numgen{Register: reg1, Modulus: r.pick, Type: unix.NFT_NG_RANDOM},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(0)})
	}
	if r.hairpin {
		ex = append(ex, k.saddr(reg32), k.daddr(reg32+k.addrRegs()), k.lookup(r.set, reg32))
	}

	if r.mark {
		ex = append(ex, k.setMark(true)...)
	}
	switch r.act {
	case actGoto:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictGoto, Chain: r.chain})
	case actJump:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictJump, Chain: r.chain})
	case actReturn:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictReturn})
	case actDrop:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictDrop})
	case actReject:
		ex = append(ex, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	case actRejectTCP:
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	case actMasquerade:
		ex = append(ex, k.setMark(false)...)
		ex = append(ex, &expr.Masq{FullyRandom: true})
	case actServiceVmap:
		a := k.addrRegs()
		l := k.lookup(r.set, reg32)
		l.DestRegister, l.IsDestRegSet = regVerdict, true
		ex = append(ex, k.daddr(reg32),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32 + a},
			&expr.Payload{DestRegister: reg32 + a + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			l)
	case actNodePortVmap:
		l := k.lookup(r.set, reg32)
		l.DestRegister, l.IsDestRegSet = regVerdict, true
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32},
			&expr.Payload{DestRegister: reg32 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			l)
	case actDNAT:
		ex = append(ex, k.dnat(r.dnat)...)
	case actMapDNAT, actMapDNATNodePort:
		// Key: [daddr .] l4proto . dport . numgen; data: addr . port.
		reg := uint32(reg32)
		if r.act == actMapDNAT {
			ex = append(ex, k.daddr(reg))
			reg += k.addrRegs()
		}
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
			&expr.Payload{DestRegister: reg + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Numgen{Register: reg + 2, Modulus: r.n, Type: unix.NFT_NG_RANDOM})
		l := k.lookup(r.set, reg32)
		out := reg + 3
		l.DestRegister, l.IsDestRegSet = out, true
		ex = append(ex, l,
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(k.nfproto()), RegAddrMin: out, RegProtoMin: out + k.addrRegs(), Specified: true})
	case actAffinityDNAT:
		ex = append(ex,
			&expr.Immediate{Register: reg32, Data: native32(r.epID)},
			k.saddr(reg32+1),
			&expr.Dynset{SrcRegKey: reg32, SetName: k.f.affinity(), SetID: k.sets[k.f.affinity()].ID, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: r.timeout})
		ex = append(ex, k.dnat(r.dnat)...)
	}
	return ex
}

func (k *netlinkKernel) dnat(ap netip.AddrPort) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: ap.Addr().AsSlice()},
		&expr.Immediate{Register: reg2, Data: []byte{byte(ap.Port() >> 8), byte(ap.Port())}},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(k.nfproto()), RegAddrMin: reg1, RegProtoMin: reg2, Specified: true},
	}
}

// setMark sets (or clears) the masquerade bit: mark = (mark & ~bit) ^ bit.
func (k *netlinkKernel) setMark(set bool) []expr.Any {
	xor := uint32(0)
	if set {
		xor = k.mark
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^k.mark), Xor: native32(xor)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}
