package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// DefaultTable is the name of our inet table.
const DefaultTable = "kubenode"

// DefaultMasqueradeBit is the packet mark bit that asks for masquerade
// (the same bit upstream kube-proxy uses).
const DefaultMasqueradeBit = 14

// Config configures a Backend.
type Config struct {
	// Family is the IP family this backend programs; each family of a
	// dual-stack node gets its own Backend sharing the one table.
	Family plan.Family
	// Table is the inet table's name; DefaultTable when empty.
	Table string
	// MasqueradeBit is the mark bit (0-31) asking for masquerade;
	// DefaultMasqueradeBit when nil.
	MasqueradeBit *int
	// NetNSFd, when not 0, is an open file descriptor of the network
	// namespace to program (tests and benchmarks use throwaway ones). The
	// caller keeps it open while the Backend is in use.
	NetNSFd int
}

func (c *Config) validate() error {
	switch c.Family {
	case plan.IPv4, plan.IPv6:
	default:
		return fmt.Errorf("nft config: family %q: must be %q or %q", c.Family, plan.IPv4, plan.IPv6)
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if len(c.Table) > 255 {
		return fmt.Errorf("nft config: table %q: longer than 255 bytes", c.Table)
	}
	if c.MasqueradeBit == nil {
		b := DefaultMasqueradeBit
		c.MasqueradeBit = &b
	}
	if *c.MasqueradeBit < 0 || *c.MasqueradeBit > 31 {
		return fmt.Errorf("nft config: masqueradeBit %d: must be within 0-31", *c.MasqueradeBit)
	}
	if c.NetNSFd < 0 {
		return fmt.Errorf("nft config: netNSFd %d: must not be negative", c.NetNSFd)
	}
	return nil
}

// kernel is the I/O seam: a transaction in, read-back state out. The
// netlink implementation talks to nf_tables; tests use an in-memory one.
type kernel interface {
	apply(t *tx) error
	// read fills ks (empty) with our chains and elements.
	read(ks *kernelState) error
	// readElems lists one set's elements, for the deletions of a full sync.
	readElems(set string) ([]elem, error)
	deleteTable() error
}

// Backend programs one IP family's plan into our nftables table.
type Backend struct {
	log *zap.Logger
	f   fam
	k   kernel

	// hs fingerprints elements for refs and read-back state.
	hs hasher

	mu    sync.Mutex
	alloc idAlloc
	// trusted is false until a full sync succeeded, and after any failed
	// sync: the next sync then reads the kernel back and rewrites what it
	// cannot vouch for.
	trusted bool
	facts   planFacts
	// last is the plan the kernel was last brought to (nil before the
	// first sync). Its services are immutable, and with ids they rebuild
	// every object exactly, so the model stores no objects and no copy of
	// the services: the plan is the one the caller keeps anyway.
	last *plan.Plan
	// ids are the endpoint ids of the services that have any (session
	// affinity).
	ids  map[plan.ServicePortName]*svcIDs
	refs *elemRefs
}

// planFacts are the plan-wide inputs of the ruleset; a change to them
// rebuilds everything.
type planFacts struct {
	nodeIPs       []netip.Addr
	allLocal      bool
	clusterCIDRs  []netip.Prefix
	masqueradeAll bool
}

func factsOf(p *plan.Plan) planFacts {
	return planFacts{nodeIPs: p.NodeIPs, allLocal: p.NodePortsOnAllLocalAddresses, clusterCIDRs: p.ClusterCIDRs, masqueradeAll: p.MasqueradeAll}
}

func (a planFacts) equal(b planFacts) bool {
	return slices.Equal(a.nodeIPs, b.nodeIPs) && a.allLocal == b.allLocal &&
		slices.Equal(a.clusterCIDRs, b.clusterCIDRs) && a.masqueradeAll == b.masqueradeAll
}

// New returns a backend for cfg. It opens nothing: the netlink socket is
// dialled on the first Sync or Cleanup.
func New(cfg Config, log *zap.Logger) (*Backend, error) {
	if log == nil {
		return nil, errors.New("nft: a logger is required")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	k := newNetlinkKernel(cfg.Table, famOf(cfg.Family), uint32(1)<<*cfg.MasqueradeBit, cfg.NetNSFd)
	return newBackend(cfg, log, k), nil
}

func newBackend(cfg Config, log *zap.Logger, k kernel) *Backend {
	hs := newHasher()
	return &Backend{
		log:  log.Named("nftables").With(zap.String("family", string(cfg.Family))),
		f:    famOf(cfg.Family),
		k:    k,
		hs:   hs,
		ids:  map[plan.ServicePortName]*svcIDs{},
		refs: newElemRefs(hs, 0),
	}
}

// Sync makes the kernel match p (see proxier.Dataplane). A partial sync is
// one transaction holding only the changed services; a full sync reads our
// chains and elements back and repairs any difference, also one
// transaction.
func (b *Backend) Sync(ctx context.Context, p *plan.Plan, changed map[plan.ServicePortName]struct{}, full bool) error {
	if p == nil {
		return errors.New("nft sync: nil plan")
	}
	if p.Family != b.f.f {
		return fmt.Errorf("nft sync: plan family %q, backend family %q", p.Family, b.f.f)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	var err error
	var size int
	if full || !b.trusted || !b.facts.equal(factsOf(p)) {
		size, err = b.fullSync(p)
	} else {
		size, err = b.partialSync(p, changed)
	}
	if err != nil {
		b.trusted = false
		return err
	}
	b.log.Debug("synced", zap.Bool("full", full), zap.Int("services", len(p.Services)),
		zap.Int("changed", len(changed)), zap.Int("objects", size), zap.Duration("took", time.Since(start)))
	return nil
}

// fullChunk is how many kernel objects a full sync puts in one
// transaction. Each transaction holds whole services, so none is ever seen
// half-programmed; bounding them bounds the sync's memory at any scale.
const fullChunk = 10000

func (b *Backend) fullSync(p *plan.Plan) (int, error) {
	// The kernel should hold about what the model counts.
	ks := newKernelState(b.f, b.hs, b.refs.m.len())
	if err := b.k.read(ks); err != nil {
		return 0, fmt.Errorf("nft full sync: read back: %w", err)
	}
	if !ks.tableExists {
		b.log.Info("creating table")
	}
	refs := newElemRefs(b.hs, max(b.refs.m.len(), len(ks.elems), elemEstimate(p)))
	r := newReconciler(ks, refs, len(p.Services))
	static := staticObjects(b.f, p)
	t := &tx{ensure: true}
	r.add(desiredPair{new: static, rewrite: true}, t)

	// The model vouches for chain contents only if the plan-wide facts
	// they were built from are the same (cluster CIDRs appear in chains).
	trusted := b.trusted && b.facts.equal(factsOf(p))
	ids := map[plan.ServicePortName]*svcIDs{}
	size := 0
	flush := func() error {
		size += t.size()
		if err := b.k.apply(t); err != nil {
			return fmt.Errorf("nft full sync of %d services: %w", len(p.Services), err)
		}
		// The next chunk reuses the slices: the kernel has the bytes.
		t = &tx{addChains: t.addChains[:0], setRules: t.setRules[:0], delElems: t.delElems[:0], addElems: t.addElems[:0], delChains: t.delChains[:0]}
		return nil
	}
	for _, name := range p.Names() {
		s := p.Services[name]
		o, sids := serviceObjects(b.f, p, s, b.ids[name], &b.alloc)
		var old *objects
		if trusted && b.last != nil {
			switch prev := b.last.Services[name]; {
			case prev == s:
				old = &o
			case prev != nil:
				// Rebuilding with a throwaway allocator is exact: every
				// id the old objects need is in b.ids.
				po, _ := serviceObjects(b.f, p, prev, b.ids[name], &idAlloc{})
				old = &po
			}
		}
		r.add(desiredPair{old: old, new: o}, t)
		if sids != nil {
			ids[name] = sids
		}
		if t.size() >= fullChunk {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := r.finish(t, b.k.readElems); err != nil {
		return 0, fmt.Errorf("nft full sync: read back: %w", err)
	}
	if err := flush(); err != nil {
		return 0, err
	}
	b.last, b.ids, b.refs, b.facts, b.trusted = p, ids, refs, factsOf(p), true
	return size, nil
}

// elemEstimate is about how many elements p references (an address, its
// picker element and two per endpoint), to size the counts at once.
func elemEstimate(p *plan.Plan) int {
	n := 0
	for _, s := range p.Services {
		n += 2 + 2*len(s.ClusterEndpoints)
		if s.HasExternal() {
			n += 2 + 2*len(s.ExternalEndpoints)
		}
	}
	return n
}

func (b *Backend) partialSync(p *plan.Plan, changed map[plan.ServicePortName]struct{}) (int, error) {
	t := &tx{}
	names := make([]plan.ServicePortName, 0, len(changed))
	for n := range changed {
		names = append(names, n)
	}
	slices.SortFunc(names, plan.ServicePortName.Compare)
	// newIDs holds the ids of the changed services (nil: none any more).
	newIDs := make(map[plan.ServicePortName]*svcIDs, len(names))
	for _, name := range names {
		old := b.last.Services[name]
		s := p.Services[name]
		if old.Equal(s) {
			continue
		}
		var oldObjs objects
		if old != nil {
			// Rebuilding the old objects with a throwaway allocator is exact:
			// every id they need is in b.ids.
			oldObjs, _ = serviceObjects(b.f, p, old, b.ids[name], &idAlloc{})
		}
		if s == nil {
			diffObjects(oldObjs, objects{}, b.refs, t)
			newIDs[name] = nil
			continue
		}
		o, ids := serviceObjects(b.f, p, s, b.ids[name], &b.alloc)
		diffObjects(oldObjs, o, b.refs, t)
		newIDs[name] = ids
	}
	b.refs.finish(t)
	if !t.empty() {
		if err := b.k.apply(t); err != nil {
			return 0, fmt.Errorf("nft sync of %d changed services: %w", len(names), err)
		}
	}
	for name, ids := range newIDs {
		if ids == nil {
			delete(b.ids, name)
		} else {
			b.ids[name] = ids
		}
	}
	b.last = p
	return t.size(), nil
}

// Cleanup deletes our table (both families). It succeeds when there is
// none.
func (b *Backend) Cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.k.deleteTable(); err != nil {
		return fmt.Errorf("nft cleanup: %w", err)
	}
	b.trusted = false
	b.last = nil
	b.ids = map[plan.ServicePortName]*svcIDs{}
	b.refs = newElemRefs(b.hs, 0)
	return nil
}
