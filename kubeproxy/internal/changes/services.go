// Package changes turns Service, EndpointSlice and Node events into the
// service map and endpoints map the planner reads, tracking which service
// ports changed since the last Apply. It is pure data: no I/O, no clocks.
package changes

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// defaultAffinityTimeout is the API default for sessionAffinityConfig
// (three hours), used when a ClientIP service leaves it unset.
const defaultAffinityTimeout = 10800 * time.Second

// ServicePorts converts a Service into its proxied ports. Headless and
// ExternalName services have none. Unparsable addresses are left out (the
// API server validates them; a bad one must not stop the other services).
func ServicePorts(svc *v1.Service) plan.ServiceMap {
	if svc == nil || svc.Spec.Type == v1.ServiceTypeExternalName {
		return nil
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	clusterIPs := parseAddrs(ips)
	if len(clusterIPs) == 0 { // headless ("None") or not yet allocated
		return nil
	}
	externalIPs := parseAddrs(svc.Spec.ExternalIPs)
	var lbIPs []netip.Addr
	var sourceRanges []netip.Prefix
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		var raw []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			// ipMode Proxy: the load balancer proxies, and traffic arrives for
			// the node, so the VIP must not be captured here.
			if in.IPMode != nil && *in.IPMode == v1.LoadBalancerIPModeProxy {
				continue
			}
			raw = append(raw, in.IP)
		}
		lbIPs = parseAddrs(raw)
		for _, r := range svc.Spec.LoadBalancerSourceRanges {
			if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil {
				sourceRanges = append(sourceRanges, p.Masked())
			}
		}
		slices.SortFunc(sourceRanges, comparePrefix)
		sourceRanges = slices.Compact(sourceRanges)
	}
	var affinity time.Duration
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		affinity = defaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	hasExternal := svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer || len(externalIPs) > 0
	etpLocal := hasExternal && svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
	itpLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal
	var hcPort uint16
	if etpLocal && svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.HealthCheckNodePort > 0 && svc.Spec.HealthCheckNodePort < 65536 {
		hcPort = uint16(svc.Spec.HealthCheckNodePort)
	}
	out := make(plan.ServiceMap, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		if p.Port <= 0 || p.Port > 65535 {
			continue
		}
		proto := plan.Protocol(p.Protocol)
		if proto == "" {
			proto = plan.TCP
		}
		name := plan.ServicePortName{Namespace: svc.Namespace, Name: svc.Name, Port: p.Name, Protocol: proto}
		sp := &plan.ServicePort{
			Name:                     name,
			ClusterIPs:               clusterIPs,
			Port:                     uint16(p.Port),
			ExternalIPs:              externalIPs,
			LoadBalancerIPs:          lbIPs,
			LoadBalancerSourceRanges: sourceRanges,
			AffinityTimeout:          affinity,
			InternalPolicyLocal:      itpLocal,
			ExternalPolicyLocal:      etpLocal,
			HealthCheckNodePort:      hcPort,
		}
		if (svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer) && p.NodePort > 0 && p.NodePort < 65536 {
			sp.NodePort = uint16(p.NodePort)
		}
		out[name] = sp
	}
	return out
}

func parseAddrs(raw []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range raw {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			continue
		}
		out = append(out, a.Unmap())
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func mapsEqual(a, b plan.ServiceMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !v.Equal(b[k]) {
			return false
		}
	}
	return true
}

type serviceChange struct {
	previous, current plan.ServiceMap
}

// ServiceTracker accumulates Service changes between Applies. Changes that
// cancel out (add then delete, update back to the old value) are dropped.
type ServiceTracker struct {
	items map[types.NamespacedName]*serviceChange
}

// NewServiceTracker returns an empty tracker.
func NewServiceTracker() *ServiceTracker {
	return &ServiceTracker{items: map[types.NamespacedName]*serviceChange{}}
}

// Update records a change from previous to current; either may be nil (add,
// delete). It returns true when a change for this Service is pending.
func (t *ServiceTracker) Update(previous, current *v1.Service) bool {
	svc := current
	if svc == nil {
		svc = previous
	}
	if svc == nil {
		return false
	}
	key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	ch, ok := t.items[key]
	if !ok {
		ch = &serviceChange{previous: ServicePorts(previous)}
		t.items[key] = ch
	}
	ch.current = ServicePorts(current)
	if mapsEqual(ch.previous, ch.current) {
		delete(t.items, key)
		return false
	}
	return true
}

// Pending is the number of Services with unapplied changes.
func (t *ServiceTracker) Pending() int { return len(t.items) }

// Apply folds the pending changes into m and returns the names of the ports
// that changed (added, updated or removed).
func (t *ServiceTracker) Apply(m plan.ServiceMap) map[plan.ServicePortName]struct{} {
	changed := map[plan.ServicePortName]struct{}{}
	for _, ch := range t.items {
		for name, prev := range ch.previous {
			if cur, ok := ch.current[name]; !ok || !cur.Equal(prev) {
				changed[name] = struct{}{}
			}
			delete(m, name)
		}
		for name, cur := range ch.current {
			if prev, ok := ch.previous[name]; !ok || !cur.Equal(prev) {
				changed[name] = struct{}{}
			}
			m[name] = cur
		}
	}
	t.items = map[types.NamespacedName]*serviceChange{}
	return changed
}
