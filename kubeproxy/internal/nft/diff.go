package nft

import (
	"slices"
)

// tx is one atomic nftables transaction in the order the kernel needs it:
// chains exist before anything jumps to them, and references go away before
// the chains they point at.
type tx struct {
	// ensure creates the table, the family's sets and base chains if they
	// are missing (idempotent adds).
	ensure bool
	// addChains are created (empty).
	addChains []chain
	// setRules are given exactly these rules; flush says the chain existed
	// and its old rules must go first.
	setRules []chainRules
	delElems []elem
	addElems []elem
	// delChains are flushed, then deleted.
	delChains []string
}

type chainRules struct {
	chain chain
	flush bool
}

func (t *tx) empty() bool {
	return !t.ensure && len(t.addChains) == 0 && len(t.setRules) == 0 &&
		len(t.delElems) == 0 && len(t.addElems) == 0 && len(t.delChains) == 0
}

// size is a rough count of kernel objects the transaction touches.
func (t *tx) size() int {
	n := len(t.addChains) + len(t.delElems) + len(t.addElems) + len(t.delChains)
	for _, c := range t.setRules {
		n += len(c.chain.rules)
	}
	return n
}

// elemRefs counts how many users want each element of the shared sets: a
// cluster IP (several ports) or a hairpin pair (several services) goes only
// when its last user does. Elements of other sets belong to exactly one
// service and need no count, which keeps the model small at 30k services.
//
// Shared chains (the endpoint pickers) are counted the same way, per
// service using them; their changes are netted per transaction (see
// finish) because one service may drop a picker that another starts using.
type elemRefs struct {
	shared map[string]bool
	m      map[elemID]int
	chains map[string]int
	// pending holds this transaction's net change per shared chain.
	pending map[string]*pendingChain
}

type pendingChain struct {
	c     chain
	delta int
}

func newElemRefs(f fam) *elemRefs {
	return &elemRefs{
		shared:  map[string]bool{f.clusterIPs(): true, f.hairpinSet(): true, f.nodeIPs(): true},
		m:       map[elemID]int{},
		chains:  map[string]int{},
		pending: map[string]*pendingChain{},
	}
}

func (r *elemRefs) chainDelta(c chain, d int) {
	p := r.pending[c.name]
	if p == nil {
		p = &pendingChain{c: c}
		r.pending[c.name] = p
	}
	p.delta += d
}

// finish turns the netted shared-chain changes into operations: a picker
// is created when its first user appears and deleted with its last.
func (r *elemRefs) finish(t *tx) {
	names := make([]string, 0, len(r.pending))
	for name := range r.pending {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := r.pending[name]
		cur := r.chains[name]
		next := cur + p.delta
		switch {
		case cur == 0 && next > 0:
			t.addChains = append(t.addChains, p.c)
			t.setRules = append(t.setRules, chainRules{chain: p.c})
		case cur > 0 && next <= 0:
			t.delChains = append(t.delChains, name)
		}
		if next > 0 {
			r.chains[name] = next
		} else {
			delete(r.chains, name)
		}
	}
	clear(r.pending)
}

func (r *elemRefs) ref(e elem, t *tx) {
	if !r.shared[e.set] {
		t.addElems = append(t.addElems, e)
		return
	}
	r.m[e.id()]++
	if r.m[e.id()] == 1 {
		t.addElems = append(t.addElems, e)
	}
}

func (r *elemRefs) unref(e elem, t *tx) {
	if !r.shared[e.set] {
		t.delElems = append(t.delElems, e)
		return
	}
	n, ok := r.m[e.id()]
	if !ok {
		return
	}
	if n <= 1 {
		delete(r.m, e.id())
		t.delElems = append(t.delElems, e)
		return
	}
	r.m[e.id()] = n - 1
}

// diffObjects adds to t what turns old into new (chains and element
// references), given that old is what the kernel holds.
func diffObjects(old, new objects, refs *elemRefs, t *tx) {
	oldChains := make(map[string]*chain, len(old.chains))
	for i := range old.chains {
		if old.chains[i].shared {
			refs.chainDelta(old.chains[i], -1)
			continue
		}
		oldChains[old.chains[i].name] = &old.chains[i]
	}
	newNames := make(map[string]bool, len(new.chains))
	for _, c := range new.chains {
		if c.shared {
			refs.chainDelta(c, +1)
			continue
		}
		newNames[c.name] = true
		oc, ok := oldChains[c.name]
		switch {
		case !ok:
			t.addChains = append(t.addChains, c)
			t.setRules = append(t.setRules, chainRules{chain: c})
		case !slices.Equal(oc.rules, c.rules):
			t.setRules = append(t.setRules, chainRules{chain: c, flush: true})
		}
	}
	for _, c := range old.chains {
		if !c.shared && !newNames[c.name] {
			t.delChains = append(t.delChains, c.name)
		}
	}

	delta := make(map[elem]int, len(old.elems)+len(new.elems))
	for _, e := range old.elems {
		delta[e]--
	}
	for _, e := range new.elems {
		delta[e]++
	}
	// Unreference first so a key whose value changes is deleted before it
	// is added again, in the same transaction.
	for _, e := range old.elems {
		for ; delta[e] < 0; delta[e]++ {
			refs.unref(e, t)
		}
	}
	for _, e := range new.elems {
		for ; delta[e] > 0; delta[e]-- {
			refs.ref(e, t)
		}
	}
}

// kernelState is what a full sync reads back: our chains (by name) and the
// elements of our sets and maps (the dynamic affinity set excluded).
type kernelState struct {
	tableExists bool
	chains      map[string]bool
	elems       map[elemID]elem
}

// desiredPair is one group of objects (the fixed part, or one service) as
// the model believes the kernel has it (old, nil when unknown) and as it
// should be (new).
type desiredPair struct {
	old *objects
	new objects
	// rewrite forces the chains to be rewritten even when old matches:
	// used for the fixed chains, which are few, so a foreign edit to them
	// cannot survive a resync.
	rewrite bool
}

// reconcile builds the transaction that turns the kernel state k into the
// desired objects, and recounts refs from scratch. Chains the model says
// hold the right rules are left alone; chains we know nothing about (after
// a restart or a failed sync) are rewritten, atomically.
func reconcile(k *kernelState, pairs []desiredPair, refs *elemRefs) *tx {
	t := &tx{ensure: true}
	nChains, nElems := 0, 0
	for _, p := range pairs {
		nChains += len(p.new.chains)
		nElems += len(p.new.elems)
	}
	want := make(map[string]bool, nChains)
	desired := make(map[elemID]elem, nElems)
	for _, p := range pairs {
		var oldRules map[string][]rule
		if p.old != nil && !p.rewrite {
			oldRules = make(map[string][]rule, len(p.old.chains))
			for _, c := range p.old.chains {
				oldRules[c.name] = c.rules
			}
		}
		for _, c := range p.new.chains {
			if c.shared {
				refs.chains[c.name]++
			}
			if want[c.name] {
				continue
			}
			want[c.name] = true
			if !k.chains[c.name] {
				t.addChains = append(t.addChains, c)
				t.setRules = append(t.setRules, chainRules{chain: c})
				continue
			}
			if old, known := oldRules[c.name]; !known || !slices.Equal(old, c.rules) {
				t.setRules = append(t.setRules, chainRules{chain: c, flush: true})
			}
		}
		for _, e := range p.new.elems {
			desired[e.id()] = e
			if refs.shared[e.set] {
				refs.m[e.id()]++
			}
		}
	}
	for name := range k.chains {
		if !want[name] {
			t.delChains = append(t.delChains, name)
		}
	}
	slices.Sort(t.delChains)
	for id, e := range k.elems {
		if d, ok := desired[id]; !ok || d != e {
			t.delElems = append(t.delElems, e)
		}
	}
	for id, e := range desired {
		if ke, ok := k.elems[id]; !ok || ke != e {
			t.addElems = append(t.addElems, e)
		}
	}
	return t
}
