// Package admission decides whether a pod bound to this node may run here: its requests fit the
// node's allocatable next to the pods already admitted, its node selector and required node
// affinity match the node, and its host ports are free. It is pure; the caller supplies the node
// and the admitted pods.
package admission

import (
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/status"
)

// Node is what admission checks against.
type Node struct {
	Name        string
	Labels      map[string]string
	Allocatable v1.ResourceList
}

// Admit returns nil when pod may run next to active (the admitted, not yet finished pods), or
// the rejection reason and message.
func Admit(pod *v1.Pod, node Node, active []*v1.Pod) *status.Rejection {
	if !matchesSelector(pod, node) {
		return &status.Rejection{Reason: "NodeAffinity", Message: "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"}
	}
	if r := portConflict(pod, active); r != nil {
		return r
	}
	if maxPods, ok := node.Allocatable[v1.ResourcePods]; ok && int64(len(active)+1) > maxPods.Value() {
		return &status.Rejection{Reason: "OutOfpods", Message: fmt.Sprintf("Node didn't have enough resource: pods, requested: 1, used: %d, capacity: %d", len(active), maxPods.Value())}
	}
	want := Requests(pod)
	used := v1.ResourceList{}
	for _, p := range active {
		for name, q := range Requests(p) {
			u := used[name]
			u.Add(q)
			used[name] = u
		}
	}
	for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage} {
		req, ok := want[name]
		if !ok || req.IsZero() {
			continue
		}
		alloc, ok := node.Allocatable[name]
		if !ok {
			continue
		}
		total := used[name]
		total.Add(req)
		if total.Cmp(alloc) > 0 {
			u := used[name]
			return &status.Rejection{
				Reason:  "OutOf" + string(name),
				Message: fmt.Sprintf("Pod was rejected: Node didn't have enough resource: %s, requested: %s, used: %s, capacity: %s", name, quantity(name, req), quantity(name, u), quantity(name, alloc)),
			}
		}
	}
	return nil
}

func quantity(name v1.ResourceName, q resource.Quantity) string {
	if name == v1.ResourceCPU {
		return strconv.FormatInt(q.MilliValue(), 10)
	}
	return strconv.FormatInt(q.Value(), 10)
}

// Requests is the pod's effective request (plan.PodRequests): the larger of the running
// containers' sum (sidecars included) and what any init container needs while it runs (plus the
// sidecars started before it), plus the pod overhead.
func Requests(pod *v1.Pod) v1.ResourceList { return plan.PodRequests(pod) }

func matchesSelector(pod *v1.Pod, node Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if node.Labels[k] != v {
			return false
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for _, t := range terms {
		if termMatches(t, node) {
			return true
		}
	}
	return len(terms) == 0
}

func termMatches(t v1.NodeSelectorTerm, node Node) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false // an empty term matches nothing, as upstream
	}
	for _, e := range t.MatchExpressions {
		if !exprMatches(e, node.Labels) {
			return false
		}
	}
	for _, e := range t.MatchFields {
		if e.Key != "metadata.name" || !exprMatches(e, map[string]string{"metadata.name": node.Name}) {
			return false
		}
	}
	return true
}

func exprMatches(e v1.NodeSelectorRequirement, labels map[string]string) bool {
	v, has := labels[e.Key]
	in := func() bool {
		for _, x := range e.Values {
			if x == v {
				return true
			}
		}
		return false
	}
	switch e.Operator {
	case v1.NodeSelectorOpIn:
		return has && in()
	case v1.NodeSelectorOpNotIn:
		return !has || !in()
	case v1.NodeSelectorOpExists:
		return has
	case v1.NodeSelectorOpDoesNotExist:
		return !has
	case v1.NodeSelectorOpGt, v1.NodeSelectorOpLt:
		if !has || len(e.Values) != 1 {
			return false
		}
		lv, err1 := strconv.ParseInt(v, 10, 64)
		rv, err2 := strconv.ParseInt(e.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if e.Operator == v1.NodeSelectorOpGt {
			return lv > rv
		}
		return lv < rv
	}
	return false
}

type hostPort struct {
	ip    string
	proto v1.Protocol
	port  int32
}

func hostPorts(pod *v1.Pod) []hostPort {
	var out []hostPort
	for _, list := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				port := p.HostPort
				if pod.Spec.HostNetwork {
					port = p.ContainerPort
				}
				if port == 0 {
					continue
				}
				proto := p.Protocol
				if proto == "" {
					proto = v1.ProtocolTCP
				}
				ip := p.HostIP
				if ip == "" {
					ip = "0.0.0.0"
				}
				out = append(out, hostPort{ip: ip, proto: proto, port: port})
			}
		}
	}
	return out
}

func portConflict(pod *v1.Pod, active []*v1.Pod) *status.Rejection {
	mine := hostPorts(pod)
	if len(mine) == 0 {
		return nil
	}
	for _, other := range active {
		for _, a := range hostPorts(other) {
			for _, b := range mine {
				if a.port == b.port && a.proto == b.proto && (a.ip == b.ip || a.ip == "0.0.0.0" || b.ip == "0.0.0.0") {
					return &status.Rejection{Reason: "NodePorts", Message: fmt.Sprintf("Pod was rejected: Predicate NodePorts failed: host port %s/%d is used by pod %s/%s", b.proto, b.port, other.Namespace, other.Name)}
				}
			}
		}
	}
	return nil
}
