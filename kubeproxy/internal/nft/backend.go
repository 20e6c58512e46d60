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
	read() (*kernelState, error)
	// readElems lists one set's elements, for the deletions of a full sync.
	readElems(set string) ([]elem, error)
	deleteTable() error
}

// Backend programs one IP family's plan into our nftables table.
type Backend struct {
	log *zap.Logger
	f   fam
	k   kernel

	mu    sync.Mutex
	alloc idAlloc
	// trusted is false until a full sync succeeded, and after any failed
	// sync: the next sync then reads the kernel back and rewrites what it
	// cannot vouch for.
	trusted  bool
	facts    planFacts
	services map[plan.ServicePortName]*svcEntry
	refs     *elemRefs
}

// svcEntry is what the model keeps per service: the plan's (immutable)
// service and the ids used for it, from which its objects can be rebuilt
// exactly, rather than storing them.
type svcEntry struct {
	svc *plan.Service
	ids *svcIDs
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
	f := famOf(cfg.Family)
	return &Backend{
		log:      log.Named("nftables").With(zap.String("family", string(cfg.Family))),
		f:        f,
		k:        k,
		services: map[plan.ServicePortName]*svcEntry{},
		refs:     newElemRefs(f),
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
const fullChunk = 40000

func (b *Backend) fullSync(p *plan.Plan) (int, error) {
	ks, err := b.k.read()
	if err != nil {
		return 0, fmt.Errorf("nft full sync: read back: %w", err)
	}
	if !ks.tableExists {
		b.log.Info("creating table")
	}
	refs := newElemRefs(b.f)
	r := newReconciler(ks, refs, len(p.Services))
	static := staticObjects(b.f, p)
	t := &tx{ensure: true}
	r.add(desiredPair{new: static, rewrite: true}, t)

	// The model vouches for chain contents only if the plan-wide facts
	// they were built from are the same (cluster CIDRs appear in chains).
	trusted := b.trusted && b.facts.equal(factsOf(p))
	entries := make(map[plan.ServicePortName]*svcEntry, len(p.Services))
	size := 0
	flush := func() error {
		size += t.size()
		if err := b.k.apply(t); err != nil {
			return fmt.Errorf("nft full sync of %d services: %w", len(p.Services), err)
		}
		t = &tx{}
		return nil
	}
	for _, name := range p.Names() {
		s := p.Services[name]
		var old *objects
		var prevIDs *svcIDs
		if e := b.services[name]; e != nil {
			prevIDs = e.ids
			if trusted {
				o, _ := serviceObjects(b.f, p, e.svc, e.ids, &idAlloc{})
				old = &o
			}
		}
		o, ids := serviceObjects(b.f, p, s, prevIDs, &b.alloc)
		r.add(desiredPair{old: old, new: o}, t)
		entries[name] = &svcEntry{svc: s, ids: ids}
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
	b.services, b.refs, b.facts, b.trusted = entries, refs, factsOf(p), true
	return size, nil
}

func (b *Backend) partialSync(p *plan.Plan, changed map[plan.ServicePortName]struct{}) (int, error) {
	t := &tx{}
	names := make([]plan.ServicePortName, 0, len(changed))
	for n := range changed {
		names = append(names, n)
	}
	slices.SortFunc(names, plan.ServicePortName.Compare)
	type update struct {
		name  plan.ServicePortName
		entry *svcEntry // nil: removed
	}
	updates := make([]update, 0, len(names))
	for _, name := range names {
		old := b.services[name]
		s := p.Services[name]
		var oldObjs objects
		if old != nil {
			if s != nil && old.svc.Equal(s) {
				updates = append(updates, update{name, &svcEntry{svc: s, ids: old.ids}})
				continue
			}
			// Rebuilding the old objects with a throwaway allocator is exact:
			// every id they need is in old.ids.
			oldObjs, _ = serviceObjects(b.f, p, old.svc, old.ids, &idAlloc{})
		}
		if s == nil {
			if old != nil {
				diffObjects(oldObjs, objects{}, b.refs, t)
				updates = append(updates, update{name, nil})
			}
			continue
		}
		var prev *svcIDs
		if old != nil {
			prev = old.ids
		}
		o, ids := serviceObjects(b.f, p, s, prev, &b.alloc)
		diffObjects(oldObjs, o, b.refs, t)
		updates = append(updates, update{name, &svcEntry{svc: s, ids: ids}})
	}
	b.refs.finish(t)
	if !t.empty() {
		if err := b.k.apply(t); err != nil {
			return 0, fmt.Errorf("nft sync of %d changed services: %w", len(names), err)
		}
	}
	for _, u := range updates {
		if u.entry == nil {
			delete(b.services, u.name)
		} else {
			b.services[u.name] = u.entry
		}
	}
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
	b.services = map[plan.ServicePortName]*svcEntry{}
	b.refs = newElemRefs(b.f)
	return nil
}
