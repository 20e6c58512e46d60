// Package conntrack clears UDP conntrack entries that would keep traffic
// going to the wrong place after a service changes: UDP has no connection
// end, so without this a client keeps talking to a deleted endpoint, or
// keeps being rejected after the service gained its first endpoint.
package conntrack

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// Flow is the part of a UDP conntrack entry the decision needs.
type Flow struct {
	OrigSrc, OrigDst   netip.AddrPort
	ReplySrc, ReplyDst netip.AddrPort
}

// DNATed reports whether the flow was translated to another destination.
func (f Flow) DNATed() bool { return f.ReplySrc != f.OrigDst }

func (f Flow) String() string {
	return fmt.Sprintf("%s->%s (reply from %s)", f.OrigSrc, f.OrigDst, f.ReplySrc)
}

// Table is the kernel's conntrack table.
type Table interface {
	// UDPFlows lists the UDP entries of a family.
	UDPFlows(family plan.Family) ([]Flow, error)
	// Delete removes entries; ones already gone are not an error.
	Delete(flows []Flow) error
}

type frontend struct {
	valid        map[netip.AddrPort]bool
	hasEndpoints bool
}

type frontends struct {
	byAddr    map[netip.AddrPort]*frontend
	nodePorts map[uint16]*frontend
	nodeIPs   []netip.Addr
	allLocal  bool
}

func frontendsOf(p *plan.Plan) frontends {
	fs := frontends{byAddr: map[netip.AddrPort]*frontend{}, nodePorts: map[uint16]*frontend{}}
	if p == nil {
		return fs
	}
	fs.nodeIPs, fs.allLocal = p.NodeIPs, p.NodePortsOnAllLocalAddresses
	for _, s := range p.Services {
		if s.Name.Protocol != plan.UDP {
			continue
		}
		cluster := &frontend{valid: map[netip.AddrPort]bool{}, hasEndpoints: len(s.ClusterEndpoints) > 0}
		for _, e := range s.ClusterEndpoints {
			cluster.valid[e.AddrPort()] = true
		}
		fs.byAddr[netip.AddrPortFrom(s.ClusterIP, s.Port)] = cluster
		if !s.HasExternal() {
			continue
		}
		// Local pods reaching an external address short-circuit to the
		// cluster endpoints, so both sets are valid there.
		external := &frontend{valid: map[netip.AddrPort]bool{}, hasEndpoints: len(s.ExternalEndpoints) > 0}
		for _, e := range slices.Concat(s.ExternalEndpoints, s.ClusterEndpoints) {
			external.valid[e.AddrPort()] = true
		}
		for _, ip := range slices.Concat(s.ExternalIPs, s.LoadBalancerIPs) {
			fs.byAddr[netip.AddrPortFrom(ip, s.Port)] = external
		}
		if s.NodePort != 0 {
			fs.nodePorts[s.NodePort] = external
		}
	}
	return fs
}

func (fs frontends) lookup(f Flow) *frontend {
	if fe, ok := fs.byAddr[f.OrigDst]; ok {
		return fe
	}
	fe, ok := fs.nodePorts[f.OrigDst.Port()]
	if !ok {
		return nil
	}
	if slices.Contains(fs.nodeIPs, f.OrigDst.Addr()) || (fs.allLocal && f.DNATed()) {
		return fe
	}
	return nil
}

// StaleFlows returns the UDP flows to delete, given the previous plan (nil
// if none) and the current one:
//   - a flow DNATed to something that is no longer an endpoint of its service
//     frontend (cluster IP, external/load-balancer IP, node port), including
//     frontends that went away;
//   - a flow to a frontend that was not DNATed (it was rejected, or arrived
//     before the rules) now that the frontend has endpoints.
func StaleFlows(prev, cur *plan.Plan, flows []Flow) []Flow {
	now := frontendsOf(cur)
	before := frontendsOf(prev)
	gone := &frontend{valid: map[netip.AddrPort]bool{}}
	var stale []Flow
	for _, f := range flows {
		fe := now.lookup(f)
		if fe == nil {
			if before.lookup(f) == nil {
				continue // not ours
			}
			fe = gone
		}
		if f.DNATed() {
			if !fe.valid[f.ReplySrc] {
				stale = append(stale, f)
			}
		} else if fe.hasEndpoints {
			stale = append(stale, f)
		}
	}
	return stale
}

// Cleaner clears stale flows after each sync of a family's plan.
type Cleaner struct {
	log   *zap.Logger
	table Table

	mu   sync.Mutex
	prev map[plan.Family]*plan.Plan
}

// NewCleaner returns a cleaner working on table.
func NewCleaner(log *zap.Logger, table Table) *Cleaner {
	return &Cleaner{log: log, table: table, prev: map[plan.Family]*plan.Plan{}}
}

// CleanStaleFlows deletes the flows p made stale (see StaleFlows).
func (c *Cleaner) CleanStaleFlows(_ context.Context, p *plan.Plan) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	flows, err := c.table.UDPFlows(p.Family)
	if err != nil {
		return fmt.Errorf("listing %s UDP conntrack entries: %w", p.Family, err)
	}
	stale := StaleFlows(c.prev[p.Family], p, flows)
	if len(stale) > 0 {
		if err := c.table.Delete(stale); err != nil {
			return fmt.Errorf("deleting %d stale %s UDP conntrack entries: %w", len(stale), p.Family, err)
		}
		c.log.Debug("deleted stale UDP conntrack entries", zap.Int("count", len(stale)), zap.String("family", string(p.Family)))
	}
	c.prev[p.Family] = p
	return nil
}
