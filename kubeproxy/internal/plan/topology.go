package plan

// Hints say what an endpoint's EndpointSlice hints (hints.forZones,
// hints.forNodes) mean for this node. The change tracker, which knows the
// node's name and zone, computes them, so the planner needs no node facts
// and an Endpoint stays 32 bytes instead of carrying the hint strings.
type Hints uint8

const (
	// HasZoneHints: hints.forZones is not empty.
	HasZoneHints Hints = 1 << iota
	// ForThisZone: hints.forZones names this node's zone
	// (its topology.kubernetes.io/zone label).
	ForThisZone
	// HasNodeHints: hints.forNodes is not empty
	// (trafficDistribution: PreferSameNode).
	HasNodeHints
	// ForThisNode: hints.forNodes names this node.
	ForThisNode
)

// preferSameTopology narrows a service's usable cluster-wide endpoints to
// those hinted for this node or its zone, with upstream kube-proxy's rules:
//   - node hints win when every endpoint has one and one names this node;
//   - else zone hints, when every endpoint has one and one names this zone;
//   - else (a hint missing anywhere, or none for us) every endpoint is used.
//
// eps are the ready endpoints, or the serving-terminating ones when none is
// ready; those are a last resort and are used whatever their hints. Since a
// mode is only chosen when some endpoint matches it, the result is empty
// only when eps is. When nothing is filtered out, eps itself is returned
// (shared, like usable's result).
func preferSameTopology(eps []Endpoint) []Endpoint {
	if len(eps) == 0 || !eps[0].Ready {
		return eps
	}
	want := topologyMode(eps)
	if want == 0 {
		return eps
	}
	n := 0
	for _, e := range eps {
		if e.Hints&want != 0 {
			n++
		}
	}
	if n == len(eps) {
		return eps
	}
	out := make([]Endpoint, 0, n)
	for _, e := range eps {
		if e.Hints&want != 0 {
			out = append(out, e)
		}
	}
	return out
}

// topologyMode returns ForThisNode, ForThisZone or 0 (no topology) for a
// service's ready endpoints.
func topologyMode(eps []Endpoint) Hints {
	every, some := HasZoneHints|HasNodeHints, Hints(0)
	for _, e := range eps {
		every &= e.Hints
		some |= e.Hints
	}
	switch {
	case every&HasNodeHints != 0 && some&ForThisNode != 0:
		return ForThisNode
	case every&HasZoneHints != 0 && some&ForThisZone != 0:
		return ForThisZone
	}
	return 0
}
