package changes

import (
	"net/netip"
	"slices"
	"sort"
	"time"

	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

type portKey struct {
	name     string
	protocol plan.Protocol
}

// sliceInfo is the slim form of one EndpointSlice.
type sliceInfo struct {
	ports map[portKey][]plan.Endpoint
	// src is the slice it came from (the informer's cached copy, never
	// modified), kept to re-derive zone hints when the node's zone changes.
	src *discovery.EndpointSlice
	// zoneHints: some endpoint has hints.forZones.
	zoneHints bool
}

// EndpointsTracker accumulates EndpointSlice changes between Applies. It
// keeps a slim cache of every slice, merged per service.
type EndpointsTracker struct {
	nodeName string
	// zone is this node's topology.kubernetes.io/zone label ("" = none).
	zone     string
	families map[discovery.AddressType]bool
	// slices: service -> slice name -> slim slice.
	slices map[types.NamespacedName]map[string]*sliceInfo
	// pending: the merged endpoints of each changed service as of the last Apply.
	pending map[types.NamespacedName]plan.EndpointsMap
	// triggers: last-change-trigger-time of pending changes, per service.
	triggers map[types.NamespacedName][]time.Time
}

// NewEndpointsTracker tracks slices of the given families (others, and FQDN
// slices, are ignored); endpoints whose nodeName is nodeName are Local.
func NewEndpointsTracker(nodeName string, families []plan.Family) *EndpointsTracker {
	t := &EndpointsTracker{
		nodeName: nodeName,
		families: map[discovery.AddressType]bool{},
		slices:   map[types.NamespacedName]map[string]*sliceInfo{},
		pending:  map[types.NamespacedName]plan.EndpointsMap{},
		triggers: map[types.NamespacedName][]time.Time{},
	}
	for _, f := range families {
		t.families[discovery.AddressType(f)] = true // AddressTypeIPv4 == "IPv4"
	}
	return t
}

// Update records an added or updated slice, or a deleted one (removed). It
// returns true when a change for the slice's service is pending.
func (t *EndpointsTracker) Update(slice *discovery.EndpointSlice, removed bool) bool {
	if slice == nil || !t.families[slice.AddressType] {
		return false
	}
	svcName := slice.Labels[discovery.LabelServiceName]
	if svcName == "" {
		return false
	}
	key := types.NamespacedName{Namespace: slice.Namespace, Name: svcName}
	if _, ok := t.pending[key]; !ok {
		t.pending[key] = t.merged(key)
	}
	if removed {
		delete(t.slices[key], slice.Name)
		if len(t.slices[key]) == 0 {
			delete(t.slices, key)
		}
	} else {
		if t.slices[key] == nil {
			t.slices[key] = map[string]*sliceInfo{}
		}
		t.slices[key][slice.Name] = t.slim(slice)
	}
	if endpointsMapsEqual(t.pending[key], t.merged(key)) {
		delete(t.pending, key)
		delete(t.triggers, key)
		return false
	}
	if !removed {
		if s, ok := slice.Annotations["endpoints.kubernetes.io/last-change-trigger-time"]; ok {
			if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
				t.triggers[key] = append(t.triggers[key], ts)
			}
		}
	}
	return true
}

// SetZone records this node's zone (its topology.kubernetes.io/zone label;
// "" when unlabelled), which decides which endpoints' zone hints are for
// this node. Services whose endpoints change with it become pending. It
// returns true when it made a change pending.
func (t *EndpointsTracker) SetZone(zone string) bool {
	if zone == t.zone {
		return false
	}
	t.zone = zone
	queued := false
	for key, byName := range t.slices {
		hinted := false
		for _, info := range byName {
			hinted = hinted || info.zoneHints
		}
		if !hinted {
			continue
		}
		_, wasPending := t.pending[key]
		if !wasPending {
			t.pending[key] = t.merged(key)
		}
		for name, info := range byName {
			if info.zoneHints {
				byName[name] = t.slim(info.src)
			}
		}
		if endpointsMapsEqual(t.pending[key], t.merged(key)) {
			delete(t.pending, key)
			delete(t.triggers, key)
			continue
		}
		queued = queued || !wasPending
	}
	return queued
}

// Pending is the number of services with unapplied endpoint changes.
func (t *EndpointsTracker) Pending() int { return len(t.pending) }

// Applied is what an Apply changed.
type Applied struct {
	Changed map[plan.ServicePortName]struct{}
	// TriggerTimes are the last-change-trigger-time annotations of the
	// applied changes, for the network-programming latency metric.
	TriggerTimes []time.Time
}

// Apply folds pending changes into m.
func (t *EndpointsTracker) Apply(m plan.EndpointsMap) Applied {
	res := Applied{Changed: map[plan.ServicePortName]struct{}{}}
	for key, prev := range t.pending {
		cur := t.merged(key)
		for name, eps := range prev {
			if !slices.Equal(eps, cur[name]) {
				res.Changed[name] = struct{}{}
			}
			delete(m, name)
		}
		for name, eps := range cur {
			if !slices.Equal(eps, prev[name]) {
				res.Changed[name] = struct{}{}
			}
			m[name] = eps
		}
		res.TriggerTimes = append(res.TriggerTimes, t.triggers[key]...)
	}
	t.pending = map[types.NamespacedName]plan.EndpointsMap{}
	t.triggers = map[types.NamespacedName][]time.Time{}
	return res
}

func (t *EndpointsTracker) slim(slice *discovery.EndpointSlice) *sliceInfo {
	info := &sliceInfo{ports: map[portKey][]plan.Endpoint{}, src: slice}
	for _, e := range slice.Endpoints {
		if e.Hints != nil && len(e.Hints.ForZones) > 0 {
			info.zoneHints = true
			break
		}
	}
	for _, p := range slice.Ports {
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		k := portKey{protocol: plan.TCP}
		if p.Name != nil {
			k.name = *p.Name
		}
		if p.Protocol != nil {
			k.protocol = plan.Protocol(*p.Protocol)
		}
		var eps []plan.Endpoint
		for _, e := range slice.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			// Like upstream, only the first address is used.
			ip, err := netip.ParseAddr(e.Addresses[0])
			if err != nil {
				continue
			}
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := ready
			if e.Conditions.Serving != nil {
				serving = *e.Conditions.Serving
			}
			eps = append(eps, plan.Endpoint{
				IP:          ip.Unmap(),
				Port:        uint16(*p.Port),
				Local:       e.NodeName != nil && *e.NodeName == t.nodeName,
				Ready:       ready,
				Serving:     serving,
				Terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
				Hints:       t.hints(e.Hints),
			})
		}
		info.ports[k] = append(info.ports[k], eps...)
	}
	return info
}

// merged returns the service's endpoints from all its slices. An endpoint in
// two slices (during a move between slices) is kept once, preferring the
// ready, then the serving copy.
func (t *EndpointsTracker) merged(key types.NamespacedName) plan.EndpointsMap {
	byName := t.slices[key]
	if len(byName) == 0 {
		return nil
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[portKey]map[netip.AddrPort]plan.Endpoint{}
	for _, n := range names {
		for k, eps := range byName[n].ports {
			if seen[k] == nil {
				seen[k] = map[netip.AddrPort]plan.Endpoint{}
			}
			for _, e := range eps {
				if old, ok := seen[k][e.AddrPort()]; ok && rank(old) >= rank(e) {
					continue
				}
				seen[k][e.AddrPort()] = e
			}
		}
	}
	out := plan.EndpointsMap{}
	for k, set := range seen {
		eps := make([]plan.Endpoint, 0, len(set))
		for _, e := range set {
			eps = append(eps, e)
		}
		SortEndpoints(eps)
		name := plan.ServicePortName{Namespace: key.Namespace, Name: key.Name, Port: k.name, Protocol: k.protocol}
		out[name] = eps
	}
	return out
}

// hints says what an endpoint's hints mean for this node.
func (t *EndpointsTracker) hints(h *discovery.EndpointHints) plan.Hints {
	if h == nil {
		return 0
	}
	var out plan.Hints
	if len(h.ForZones) > 0 {
		out |= plan.HasZoneHints
		for _, z := range h.ForZones {
			if t.zone != "" && z.Name == t.zone {
				out |= plan.ForThisZone
			}
		}
	}
	if len(h.ForNodes) > 0 {
		out |= plan.HasNodeHints
		for _, n := range h.ForNodes {
			if n.Name == t.nodeName {
				out |= plan.ForThisNode
			}
		}
	}
	return out
}

func rank(e plan.Endpoint) int {
	switch {
	case e.Ready:
		return 2
	case e.Serving:
		return 1
	}
	return 0
}

// SortEndpoints orders endpoints by IP, then port.
func SortEndpoints(eps []plan.Endpoint) {
	slices.SortFunc(eps, func(a, b plan.Endpoint) int { return a.AddrPort().Compare(b.AddrPort()) })
}

func endpointsMapsEqual(a, b plan.EndpointsMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}
