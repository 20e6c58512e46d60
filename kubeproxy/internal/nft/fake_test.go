package nft

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// fakeKernel is an in-memory nf_tables with the checks the real one makes
// that our transactions could trip: rules and elements may only point at
// existing chains, deleted elements must exist, a key holds one value, and
// a chain still pointed at cannot be deleted. A failing transaction
// changes nothing.
type fakeKernel struct {
	table  bool
	chains map[string]*chain
	elems  map[elemID]elem
	txs    int
	fail   error // returned by the next apply
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{chains: map[string]*chain{}, elems: map[elemID]elem{}}
}

func (k *fakeKernel) apply(t *tx) error {
	if k.fail != nil {
		err := k.fail
		k.fail = nil
		return err
	}
	if !k.table && !t.ensure {
		return errors.New("fake: no table")
	}
	chains := make(map[string]*chain, len(k.chains))
	for n, c := range k.chains {
		cc := *c
		chains[n] = &cc
	}
	elems := maps.Clone(k.elems)
	for _, c := range t.addChains {
		if _, ok := chains[c.name]; !ok {
			cc := c
			cc.rules = nil
			chains[c.name] = &cc
		}
	}
	for _, cr := range t.setRules {
		c, ok := chains[cr.chain.name]
		if !ok {
			return fmt.Errorf("fake: rules for missing chain %s", cr.chain.name)
		}
		if cr.flush {
			c.rules = nil
		}
		c.rules = append(append([]rule(nil), c.rules...), cr.chain.rules...)
	}
	for _, e := range t.delElems {
		if _, ok := elems[e.id()]; !ok {
			return fmt.Errorf("fake: delete missing element %q in %s", e.key, e.set)
		}
		delete(elems, e.id())
	}
	for _, e := range t.addElems {
		if cur, ok := elems[e.id()]; ok && cur != e {
			return fmt.Errorf("fake: element %q in %s exists with another value", e.key, e.set)
		}
		elems[e.id()] = e
	}
	for _, n := range t.delChains {
		if _, ok := chains[n]; !ok {
			return fmt.Errorf("fake: delete missing chain %s", n)
		}
		delete(chains, n)
	}
	// Every reference must resolve after the transaction.
	for _, c := range chains {
		for _, r := range c.rules {
			if (r.act == actGoto || r.act == actJump) && chains[r.chain] == nil {
				return fmt.Errorf("fake: chain %s points at missing chain %s", c.name, r.chain)
			}
		}
	}
	for _, e := range elems {
		if e.verdict == verdictGoto && chains[e.chain] == nil {
			return fmt.Errorf("fake: element in %s points at missing chain %s", e.set, e.chain)
		}
	}
	k.table, k.chains, k.elems = true, chains, elems
	k.txs++
	return nil
}

func (k *fakeKernel) read(ks *kernelState) error {
	ks.tableExists = k.table
	for _, e := range k.elems {
		ks.addElem(e)
	}
	for n := range k.chains {
		ks.chains[n] = true
	}
	return nil
}

func (k *fakeKernel) readElems(set string) ([]elem, error) {
	var out []elem
	for _, e := range k.elems {
		if e.set == set {
			out = append(out, e)
		}
	}
	return out, nil
}

func (k *fakeKernel) deleteTable() error {
	k.table = false
	k.chains = map[string]*chain{}
	k.elems = map[elemID]elem{}
	return nil
}

// packet is a virtual packet walked through the fake ruleset.
type packet struct {
	src, dst netip.Addr
	proto    plan.Protocol
	dport    uint16
	// fromNode: sent by a local process (nat output path).
	fromNode bool
}

// outcome is what the ruleset did to a new connection.
type outcome struct {
	dnat     netip.AddrPort // invalid: not translated
	marked   bool           // masquerade bit set
	masq     bool           // source NATed in postrouting
	rejected bool
	dropped  bool
}

// walker interprets the fake kernel's rules the way nf_tables would.
type walker struct {
	k        *fakeKernel
	f        fam
	localIPs []netip.Addr
	rnd      *rand.Rand
	affinity map[elemID]bool
}

func newWalker(k *fakeKernel, localIPs ...string) *walker {
	w := &walker{k: k, f: famOf(plan.IPv4), rnd: rand.New(rand.NewPCG(1, 2)), affinity: map[elemID]bool{}}
	for _, ip := range localIPs {
		w.localIPs = append(w.localIPs, netip.MustParseAddr(ip))
	}
	return w
}

func (w *walker) local(a netip.Addr) bool {
	for _, l := range w.localIPs {
		if l == a {
			return true
		}
	}
	return false
}

type state struct {
	pkt  packet
	out  outcome
	mark bool
}

// verdicts of running a chain.
type flow uint8

const (
	flowContinue flow = iota // fell off the end or returned
	flowStop                 // terminal (accept/nat/drop/reject)
)

// connect walks a new connection: the nat hook (prerouting, or output for
// the node's own traffic), then the filter hooks.
func (w *walker) connect(p packet) outcome {
	s := &state{pkt: p}
	natHook := w.f.natPrerouting()
	if p.fromNode {
		natHook = w.f.natOutput()
	}
	w.run(natHook, s)
	s.out.marked = s.mark
	if s.out.dropped || s.out.rejected {
		return s.out
	}
	if s.out.dnat.IsValid() {
		w.run(w.f.natPostrouting(), s)
		return s.out
	}
	// Not translated: the filter chains decide (prerouting for incoming
	// traffic, output for the node's own).
	filter := w.f.filterPrerouting()
	if p.fromNode {
		filter = w.f.filterOutput()
	}
	w.run(filter, s)
	return s.out
}

func (w *walker) lookup(set, key string) (elem, bool) {
	e, ok := w.k.elems[elemID{set, key}]
	return e, ok
}

func (w *walker) run(name string, s *state) flow {
	c := w.k.chains[name]
	if c == nil {
		panic("walker: no chain " + name)
	}
	for _, r := range c.rules {
		if !w.matches(r, s) {
			continue
		}
		if r.mark {
			s.mark = true
		}
		if f, done := w.act(r, s); done {
			return f
		}
	}
	return flowContinue
}

func (w *walker) matches(r rule, s *state) bool {
	p := s.pkt
	switch {
	case r.markSet && !s.mark,
		r.ctDNAT && !s.out.dnat.IsValid(),
		r.daddrLocal && (!w.local(p.dst) || p.dst.IsLoopback()),
		r.daddrSet != "" && !w.has(r.daddrSet, keyAddr(p.dst)),
		r.src.IsValid() && !r.src.Contains(p.src),
		r.fibSrcLocal && !w.local(p.src) && !p.fromNode,
		r.affinityEp != 0 && !w.affinity[elemID{fmt.Sprint(r.affinityEp), keyAddr(p.src)}],
		r.hairpin && !w.has(r.set, keyAddrAddr(p.src, s.out.dnat.Addr())):
		return false
	}
	if r.pick > 0 && w.rnd.IntN(int(r.pick)) != 0 {
		return false
	}
	return true
}

func (w *walker) has(set, key string) bool {
	_, ok := w.lookup(set, key)
	return ok
}

// act runs a rule's action; done says the chain stops here.
func (w *walker) act(r rule, s *state) (flow, bool) {
	p := s.pkt
	verdict := func(e elem) (flow, bool) {
		if e.verdict == verdictDrop {
			s.out.dropped = true
			return flowStop, true
		}
		return w.run(e.chain, s), true
	}
	switch r.act {
	case actContinue:
		return flowContinue, false
	case actGoto:
		return w.run(r.chain, s), true
	case actJump:
		if w.run(r.chain, s) == flowStop {
			return flowStop, true
		}
		return flowContinue, false
	case actReturn:
		return flowContinue, true
	case actDrop:
		s.out.dropped = true
		return flowStop, true
	case actReject:
		s.out.rejected = true
		return flowStop, true
	case actRejectTCP:
		if p.proto == plan.TCP {
			s.out.rejected = true
			return flowStop, true
		}
		return flowContinue, false
	case actMasquerade:
		s.out.masq = true
		return flowStop, true
	case actServiceVmap:
		if e, ok := w.lookup(r.set, keyAddrProtoPort(p.dst, p.proto, p.dport)); ok {
			return verdict(e)
		}
		return flowContinue, false
	case actNodePortVmap:
		if e, ok := w.lookup(r.set, keyProtoPort(p.proto, p.dport)); ok {
			return verdict(e)
		}
		return flowContinue, false
	case actDNAT:
		s.out.dnat = r.dnat
		return flowStop, true
	case actMapDNAT, actMapDNATNodePort:
		key := keyAddrProtoPort(p.dst, p.proto, p.dport)
		if r.act == actMapDNATNodePort {
			key = keyProtoPort(p.proto, p.dport)
		}
		e, ok := w.lookup(r.set, keyIndex(key, w.rnd.IntN(int(r.n))))
		if !ok {
			return flowContinue, false
		}
		b := []byte(e.data)
		addr, _ := netip.AddrFromSlice(b[:w.f.addrLen])
		s.out.dnat = netip.AddrPortFrom(addr, uint16(b[w.f.addrLen])<<8|uint16(b[w.f.addrLen+1]))
		return flowStop, true
	case actAffinityDNAT:
		w.affinity[elemID{fmt.Sprint(r.epID), keyAddr(p.src)}] = true
		s.out.dnat = r.dnat
		return flowStop, true
	}
	panic(fmt.Sprintf("walker: action %d", r.act))
}
