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

// elemRefs counts how many users want each element: a cluster IP (several
// ports) or a hairpin pair (several services) goes only when its last user
// does. Keys that only one service should have (an external IP and port
// two services both claim) are counted too: the first claim wins, and a
// full sync settles them by name order, instead of a transaction failing.
// Users are counted by the element's identity fingerprint (hasher.id) in a
// compact table, ~11 bytes an element, which keeps the model small at 30k
// services.
//
// Shared chains (the endpoint pickers) are counted the same way, per
// service using them; their changes are netted per transaction (see
// finish) because one service may drop a picker that another starts using.
type elemRefs struct {
	hs     hasher
	m      *counts
	chains map[string]int
	// pending holds this transaction's net change per shared chain.
	pending map[string]*pendingChain
}

type pendingChain struct {
	c     chain
	delta int
}

// newElemRefs returns empty counts sized for about hint elements.
func newElemRefs(hs hasher, hint int) *elemRefs {
	return &elemRefs{
		hs:      hs,
		m:       newCounts(hint),
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
	if r.m.inc(r.hs.id(e.set, e.key)) {
		t.addElems = append(t.addElems, e)
	}
}

func (r *elemRefs) unref(e elem, t *tx) {
	if last, _ := r.m.dec(r.hs.id(e.set, e.key)); last {
		t.delElems = append(t.delElems, e)
	}
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
// elements of our sets and maps (the dynamic affinity set excluded), as
// fingerprints: hasher.id -> hasher.val with the set's index in the low
// byte. 16 bytes an element, in one map.
type kernelState struct {
	tableExists bool
	chains      map[string]bool
	elems       map[uint64]uint64
	hs          hasher
	// sets are the family's set names; setIndex maps them back.
	sets     []string
	setIndex map[string]uint8
}

// newKernelState returns an empty state sized for about hint elements.
func newKernelState(f fam, hs hasher, hint int) *kernelState {
	ks := &kernelState{chains: map[string]bool{}, elems: make(map[uint64]uint64, hint), hs: hs, setIndex: map[string]uint8{}}
	for _, sk := range f.sets() {
		ks.setIndex[sk.name] = uint8(len(ks.sets))
		ks.sets = append(ks.sets, sk.name)
	}
	return ks
}

// addElem records one element read from the kernel; elements of sets not
// ours are ignored.
func (ks *kernelState) addElem(e elem) {
	idx, ok := ks.setIndex[e.set]
	if !ok {
		return
	}
	ks.elems[ks.hs.id(e.set, e.key)] = ks.hs.val(e)&^0xff | uint64(idx)
}

// addRaw records one dumped element of set.
func (ks *kernelState) addRaw(set string, r rawElem) {
	idx, ok := ks.setIndex[set]
	if !ok {
		return
	}
	ks.elems[ks.hs.idRaw(set, r)] = ks.hs.valRaw(r)&^0xff | uint64(idx)
}

// lookup returns the fingerprinted element's value and whether it exists.
func (ks *kernelState) lookup(id uint64) (val uint64, ok bool) {
	v, ok := ks.elems[id]
	return v &^ 0xff, ok
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

// reconciler turns the kernel state k into the desired objects, group by
// group, so a full sync can go out as several transactions (each complete
// for the services it holds) without ever holding every service's objects
// at once. It recounts refs from scratch; a kernel element whose
// fingerprint refs ends up without is not desired.
type reconciler struct {
	k    *kernelState
	refs *elemRefs
	want map[string]bool
}

func newReconciler(k *kernelState, refs *elemRefs, services int) *reconciler {
	return &reconciler{k: k, refs: refs, want: make(map[string]bool, services/4)}
}

// add appends to t what p needs. Chains the model says hold the right
// rules are left alone; chains we know nothing about (after a restart or a
// failed sync) are rewritten, atomically.
func (r *reconciler) add(p desiredPair, t *tx) {
	var oldRules map[string][]rule
	if p.old != nil && !p.rewrite {
		oldRules = make(map[string][]rule, len(p.old.chains))
		for _, c := range p.old.chains {
			oldRules[c.name] = c.rules
		}
	}
	for _, c := range p.new.chains {
		if c.shared {
			r.refs.chains[c.name]++
		}
		if r.want[c.name] {
			continue
		}
		r.want[c.name] = true
		if !r.k.chains[c.name] {
			t.addChains = append(t.addChains, c)
			t.setRules = append(t.setRules, chainRules{chain: c})
			continue
		}
		if old, known := oldRules[c.name]; !known || !slices.Equal(old, c.rules) {
			t.setRules = append(t.setRules, chainRules{chain: c, flush: true})
		}
	}
	for _, e := range p.new.elems {
		id := r.refs.hs.id(e.set, e.key)
		if !r.refs.m.inc(id) {
			continue // another service already asked for it
		}
		val, ok := r.k.lookup(id)
		switch {
		case !ok:
			t.addElems = append(t.addElems, e)
		case val != r.refs.hs.val(e)&^0xff:
			// Same key, other value: replace it in this transaction (a
			// delete needs only the key).
			t.delElems = append(t.delElems, elem{set: e.set, key: e.key})
			t.addElems = append(t.addElems, e)
		}
	}
}

// finish appends the deletions of everything in the kernel that is not
// desired; it goes last, after every reference to it is gone. Only sets
// holding such elements are read again (fetch), for their keys.
func (r *reconciler) finish(t *tx, fetch func(set string) ([]elem, error)) error {
	for name := range r.k.chains {
		if !r.want[name] {
			t.delChains = append(t.delChains, name)
		}
	}
	slices.Sort(t.delChains)
	stale := map[string]bool{}
	for id, v := range r.k.elems {
		if !r.refs.m.has(id) {
			stale[r.k.sets[v&0xff]] = true
		}
	}
	sets := make([]string, 0, len(stale))
	for set := range stale {
		sets = append(sets, set)
	}
	slices.Sort(sets)
	for _, set := range sets {
		es, err := fetch(set)
		if err != nil {
			return err
		}
		for _, e := range es {
			id := r.refs.hs.id(e.set, e.key)
			if r.refs.m.has(id) {
				continue
			}
			if _, known := r.k.elems[id]; known {
				t.delElems = append(t.delElems, elem{set: e.set, key: e.key})
			}
		}
	}
	return nil
}
