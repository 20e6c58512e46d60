// Package proxier runs kube-proxy's sync loop: it feeds informer events into
// the change trackers, and on a bounded frequency turns the maps into a plan
// per IP family and hands it to that family's Dataplane.
package proxier

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubeproxy/internal/changes"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// HealthRecorder is told when changes are queued and when a sync succeeded;
// healthz fails when queued changes stay unsynced too long.
type HealthRecorder interface {
	QueuedUpdate()
	Updated()
}

// nodeHealthSetter is an optional part of HealthRecorder.
type nodeHealthSetter interface{ SetNodeHealthy(bool) }

// ServiceHealth serves the health-check node ports of
// externalTrafficPolicy=Local services.
type ServiceHealth interface {
	// SyncServices sets the addresses to listen on (those that serve node
	// ports; an unspecified address, 0.0.0.0 or ::, stands for every address
	// of its family), the services that need a health-check node port and
	// the number of local endpoints of each.
	SyncServices(addrs []netip.Addr, ports map[types.NamespacedName]uint16, localEndpoints map[types.NamespacedName]int) error
}

// StaleFlowCleaner removes conntrack entries that a plan made stale.
type StaleFlowCleaner interface {
	// CleanStaleFlows deletes flows of p's UDP services that no longer lead
	// to a usable endpoint (or that were rejected before endpoints existed).
	CleanStaleFlows(ctx context.Context, p *plan.Plan) error
}

// AddrLister lists the addresses on this host's interfaces.
type AddrLister interface {
	LocalAddrs() ([]netip.Addr, error)
}

// Config configures a Proxier.
type Config struct {
	NodeName string
	// MinSyncPeriod bounds how often changes are synced; SyncPeriod is the
	// interval of full resyncs that repair drift.
	MinSyncPeriod time.Duration
	SyncPeriod    time.Duration
	// RetryInitial is the first back-off after a failed sync (default 1s,
	// doubling up to SyncPeriod).
	RetryInitial time.Duration
	Plan         plan.Config
	// FallbackNodeIPs are the node's primary addresses while its Node
	// object has no InternalIP (e.g. a specific bindAddress).
	FallbackNodeIPs []netip.Addr
}

// Deps are the Proxier's collaborators. Dataplanes is required (one per
// served family); the others may be nil.
type Deps struct {
	Dataplanes    map[plan.Family]Dataplane
	Registerer    prometheus.Registerer
	Health        HealthRecorder
	ServiceHealth ServiceHealth
	Conntrack     StaleFlowCleaner
	Addrs         AddrLister
}

// Proxier is the sync runner. Its On* methods are the informer handlers.
type Proxier struct {
	log     *zap.Logger
	cfg     Config
	deps    Deps
	metrics *metrics
	trigger chan struct{}

	mu                           sync.Mutex
	svcTracker                   *changes.ServiceTracker
	epTracker                    *changes.EndpointsTracker
	node                         changes.NodeInfo
	nodeChanged                  bool
	servicesSynced, slicesSynced bool
	families                     []plan.Family

	// Owned by the sync goroutine.
	services  plan.ServiceMap
	endpoints plan.EndpointsMap
	plans     map[plan.Family]*plan.Plan
	localAddr []netip.Addr
}

// New validates cfg and deps and returns a Proxier. It starts nothing.
func New(log *zap.Logger, cfg Config, deps Deps) (*Proxier, error) {
	if log == nil {
		return nil, errors.New("proxier: nil logger")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("proxier: NodeName is empty")
	}
	if cfg.SyncPeriod <= 0 {
		return nil, fmt.Errorf("proxier: syncPeriod must be positive, got %s", cfg.SyncPeriod)
	}
	if cfg.MinSyncPeriod < 0 || cfg.MinSyncPeriod > cfg.SyncPeriod {
		return nil, fmt.Errorf("proxier: minSyncPeriod %s must be between 0 and syncPeriod %s", cfg.MinSyncPeriod, cfg.SyncPeriod)
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = time.Second
	}
	if len(deps.Dataplanes) == 0 {
		return nil, errors.New("proxier: no dataplane")
	}
	var families []plan.Family
	for _, f := range []plan.Family{plan.IPv4, plan.IPv6} {
		if dp, ok := deps.Dataplanes[f]; ok {
			if dp == nil {
				return nil, fmt.Errorf("proxier: nil dataplane for %s", f)
			}
			families = append(families, f)
		}
	}
	if len(families) != len(deps.Dataplanes) {
		return nil, errors.New("proxier: dataplanes keyed by an unknown family")
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("proxier: registering metrics: %w", err)
	}
	return &Proxier{
		log:        log,
		cfg:        cfg,
		deps:       deps,
		metrics:    m,
		trigger:    make(chan struct{}, 1),
		svcTracker: changes.NewServiceTracker(),
		epTracker:  changes.NewEndpointsTracker(cfg.NodeName, families),
		families:   families,
		services:   plan.ServiceMap{},
		endpoints:  plan.EndpointsMap{},
		plans:      map[plan.Family]*plan.Plan{},
	}, nil
}

// queue wakes the runner. Called with p.mu held.
func (p *Proxier) queue() {
	p.metrics.servicesPending.Set(float64(p.svcTracker.Pending()))
	p.metrics.endpointsPending.Set(float64(p.epTracker.Pending()))
	p.metrics.lastQueued.SetToCurrentTime()
	if p.deps.Health != nil {
		p.deps.Health.QueuedUpdate()
	}
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// OnServiceUpdate records a Service add (previous nil), update or delete
// (current nil).
func (p *Proxier) OnServiceUpdate(previous, current *v1.Service) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.metrics.servicesTotal.Inc()
	if p.svcTracker.Update(previous, current) && p.servicesSynced && p.slicesSynced {
		p.queue()
	}
}

// OnServicesSynced is called once the Service informer has synced.
func (p *Proxier) OnServicesSynced() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.servicesSynced = true
	p.queue()
}

// OnEndpointSliceUpdate records an added, updated or (removed) deleted slice.
func (p *Proxier) OnEndpointSliceUpdate(slice *discovery.EndpointSlice, removed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.metrics.endpointsTotal.Inc()
	if p.epTracker.Update(slice, removed) && p.servicesSynced && p.slicesSynced {
		p.queue()
	}
}

// OnEndpointSlicesSynced is called once the EndpointSlice informer has synced.
func (p *Proxier) OnEndpointSlicesSynced() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slicesSynced = true
	p.queue()
}

// OnNodeUpdate records this node's current object (nil when deleted). A
// deleted node keeps the last known addresses: rules stay in place.
func (p *Proxier) OnNodeUpdate(node *v1.Node) {
	if node == nil || node.Name != p.cfg.NodeName {
		return
	}
	if nh, ok := p.deps.Health.(nodeHealthSetter); ok {
		// A Node being deleted should stop receiving load-balancer traffic.
		nh.SetNodeHealthy(node.DeletionTimestamp == nil)
	}
	info := changes.NodeInfoOf(node)
	p.mu.Lock()
	defer p.mu.Unlock()
	if info.Equal(p.node) {
		return
	}
	// A new zone only changes the services with zone hints: those are
	// synced incrementally. New addresses need every service rebuilt.
	zoneQueued := p.epTracker.SetZone(info.Zone)
	addrs := info.Name != p.node.Name || !slices.Equal(info.InternalIPs, p.node.InternalIPs)
	p.node = info
	p.nodeChanged = p.nodeChanged || addrs
	if (zoneQueued || addrs) && p.servicesSynced && p.slicesSynced {
		p.queue()
	}
}

// Run syncs until ctx ends. It waits for the Service and EndpointSlice
// informers to sync, makes one full sync, then syncs on changes (at most once
// per MinSyncPeriod on average, with a burst of two like upstream's runner, so a
// change arriving just after a sync is not held back a whole period), fully every SyncPeriod, and retries failures with
// back-off, fully. It never flushes rules on errors or when the API server
// is unreachable: without events, nothing changes.
func (p *Proxier) Run(ctx context.Context) error {
	if p.deps.Health != nil {
		// The first sync is pending from the start: if the informers never
		// sync, healthz fails after the timeout rather than passing with no
		// rules programmed.
		p.deps.Health.QueuedUpdate()
	}
	for !p.ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-p.trigger:
		}
	}
	fullTimer := time.NewTimer(p.cfg.SyncPeriod)
	defer fullTimer.Stop()
	// The two most recent sync start times: a sync may start once the older
	// one is MinSyncPeriod ago (a burst of two).
	var recent [2]time.Time
	needSync, full := true, true
	backoff := time.Duration(0)
	for {
		if needSync {
			wait := time.Until(recent[0].Add(p.cfg.MinSyncPeriod))
			wait = max(wait, backoff)
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
			select { // changes queued so far are included in this sync
			case <-p.trigger:
			default:
			}
			if full {
				fullTimer.Reset(p.cfg.SyncPeriod)
			}
			recent[0], recent[1] = recent[1], time.Now()
			if err := p.sync(ctx, full); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.metrics.syncFailures.Inc()
				backoff = min(max(2*backoff, p.cfg.RetryInitial), p.cfg.SyncPeriod)
				p.log.Error("sync failed; retrying with a full sync", zap.Error(err), zap.Duration("backoff", backoff))
				needSync, full = true, true
				continue
			}
			needSync, full, backoff = false, false, 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.trigger:
			needSync = true
		case <-fullTimer.C:
			needSync, full = true, true
		}
	}
}

func (p *Proxier) ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.servicesSynced && p.slicesSynced
}

// sync applies pending changes and programs every family.
func (p *Proxier) sync(ctx context.Context, full bool) error {
	start := time.Now()
	p.mu.Lock()
	changed := p.svcTracker.Apply(p.services)
	applied := p.epTracker.Apply(p.endpoints)
	node := p.node
	nodeChanged := p.nodeChanged
	p.nodeChanged = false
	p.metrics.servicesPending.Set(0)
	p.metrics.endpointsPending.Set(0)
	p.mu.Unlock()
	for n := range applied.Changed {
		changed[n] = struct{}{}
	}

	if (full || nodeChanged || p.localAddr == nil) && p.deps.Addrs != nil && len(p.cfg.Plan.NodePortCIDRs) > 0 {
		addrs, err := p.deps.Addrs.LocalAddrs()
		if err != nil {
			return fmt.Errorf("listing local addresses: %w", err)
		}
		p.localAddr = addrs
	}
	facts := plan.NodeFacts{PrimaryIPs: node.InternalIPs, LocalAddrs: p.localAddr}
	if len(facts.PrimaryIPs) == 0 {
		facts.PrimaryIPs = p.cfg.FallbackNodeIPs
	}
	rebuild := full || nodeChanged

	var errs []error
	hcPorts := map[types.NamespacedName]uint16{}
	hcLocal := map[types.NamespacedName]int{}
	var hcAddrs []netip.Addr
	for _, f := range p.families {
		prev := p.plans[f]
		var next *plan.Plan
		if rebuild {
			next = plan.Build(f, p.services, p.endpoints, facts, p.cfg.Plan, prev, nil)
		} else {
			next = plan.Build(f, p.services, p.endpoints, facts, p.cfg.Plan, prev, changed)
		}
		p.plans[f] = next
		hcAddrs = append(hcAddrs, healthCheckAddrs(next)...)
		for _, s := range next.Services {
			if s.HealthCheckNodePort != 0 {
				key := types.NamespacedName{Namespace: s.Name.Namespace, Name: s.Name.Name}
				hcPorts[key] = s.HealthCheckNodePort
				hcLocal[key] = max(hcLocal[key], len(s.ExternalEndpoints))
			}
		}
		var famChanged map[plan.ServicePortName]struct{}
		udpChanged := rebuild
		if !rebuild {
			famChanged = map[plan.ServicePortName]struct{}{}
			for n := range changed {
				var was *plan.Service
				if prev != nil {
					was = prev.Services[n]
				}
				if now := next.Services[n]; now != was {
					famChanged[n] = struct{}{}
					udpChanged = udpChanged || n.Protocol == plan.UDP
				}
			}
			if len(famChanged) == 0 {
				continue
			}
		}
		if err := p.deps.Dataplanes[f].Sync(ctx, next, famChanged, rebuild); err != nil {
			errs = append(errs, fmt.Errorf("%s dataplane: %w", f, err))
			continue
		}
		if udpChanged && p.deps.Conntrack != nil {
			// Stale flows keep UDP clients talking to a dead endpoint (or
			// to nothing); failing to clear them must not fail the sync.
			if err := p.deps.Conntrack.CleanStaleFlows(ctx, next); err != nil {
				p.log.Warn("clearing stale UDP conntrack entries", zap.String("family", string(f)), zap.Error(err))
			}
		}
	}
	if p.deps.ServiceHealth != nil {
		if err := p.deps.ServiceHealth.SyncServices(hcAddrs, hcPorts, hcLocal); err != nil {
			p.log.Warn("serving health-check node ports", zap.Error(err))
		}
	}
	took := time.Since(start)
	p.metrics.syncDuration.Observe(took.Seconds())
	if rebuild {
		p.metrics.syncFullDuration.Observe(took.Seconds())
	} else {
		p.metrics.syncPartialDuration.Observe(took.Seconds())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	now := time.Now()
	for _, t := range applied.TriggerTimes {
		p.metrics.programmingLatency.Observe(now.Sub(t).Seconds())
	}
	p.metrics.lastSync.SetToCurrentTime()
	if p.deps.Health != nil {
		p.deps.Health.Updated()
	}
	p.log.Debug("synced", zap.Bool("full", rebuild), zap.Int("changed", len(changed)), zap.Duration("took", took))
	return nil
}

// healthCheckAddrs are the addresses that serve a plan's health-check node
// ports: like upstream, the node-port addresses, or every address of the
// family when node ports are served on all of them.
func healthCheckAddrs(p *plan.Plan) []netip.Addr {
	if p.NodePortsOnAllLocalAddresses {
		if p.Family == plan.IPv6 {
			return []netip.Addr{netip.IPv6Unspecified()}
		}
		return []netip.Addr{netip.IPv4Unspecified()}
	}
	return p.NodeIPs
}
