package plan

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// In-place resize (InPlacePodVerticalScaling), as upstream's kubelet does it. Three views of a
// container's resources meet here:
//   - desired: the pod spec, which the API's resize subresource changes;
//   - allocated: what the kubelet accepted for the pod (checkpointed, so a restart keeps it);
//   - actual: what the kubelet applied to the running container.
//
// A resize is first admitted (desired -> allocated, if it fits the node), then applied
// (allocated -> actual, through the runtime, restarting containers whose resizePolicy asks).

// Resources is one container's resources by container name.
type Resources map[string]v1.ResourceRequirements

// ResizeOutcome is what became of a desired resize.
type ResizeOutcome string

// Outcomes, named as upstream's PodResizePending reasons where they are one.
const (
	ResizeNone       ResizeOutcome = ""           // desired equals allocated
	ResizeAccepted   ResizeOutcome = "Accepted"   // allocated := desired
	ResizeInfeasible ResizeOutcome = "Infeasible" // can never fit this node
	ResizeDeferred   ResizeOutcome = "Deferred"   // does not fit next to the other pods now
)

// AdmitResizeInput is one resize admission request.
type AdmitResizeInput struct {
	Pod         *v1.Pod   // desired (the spec)
	Allocated   Resources // what the kubelet accepted so far
	Allocatable v1.ResourceList
	// Others is the sum of the other active pods' allocated requests.
	Others v1.ResourceList
}

// AdmitResize decides whether a pod's desired resources may replace its allocated ones. Like
// upstream's canResizePod: a resize whose cpu or memory request exceeds the node's allocatable
// is infeasible; one that fits the node but not next to the other pods is deferred (retried
// when pods leave); anything else is accepted.
func AdmitResize(in AdmitResizeInput) (ResizeOutcome, string) {
	if !ResizeWanted(in.Pod, in.Allocated) {
		return ResizeNone, ""
	}
	want := PodRequests(in.Pod)
	var short []string
	for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
		req := want[name]
		alloc, ok := in.Allocatable[name]
		if !ok || req.Cmp(alloc) <= 0 {
			continue
		}
		short = append(short, fmt.Sprintf("%s, requested: %s, capacity: %s", name, quantityString(name, req), quantityString(name, alloc)))
	}
	if len(short) > 0 {
		return ResizeInfeasible, "Node didn't have enough capacity: " + strings.Join(short, "; ")
	}
	for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
		req := want[name]
		alloc, ok := in.Allocatable[name]
		if !ok {
			continue
		}
		total := in.Others[name].DeepCopy()
		total.Add(req)
		if total.Cmp(alloc) > 0 {
			used := in.Others[name]
			short = append(short, fmt.Sprintf("%s, requested: %s, used: %s, capacity: %s", name, quantityString(name, req), quantityString(name, used), quantityString(name, alloc)))
		}
	}
	if len(short) > 0 {
		return ResizeDeferred, "Node didn't have enough resource: " + strings.Join(short, "; ")
	}
	return ResizeAccepted, ""
}

func quantityString(name v1.ResourceName, q resource.Quantity) string {
	if name == v1.ResourceCPU {
		return strconv.FormatInt(q.MilliValue(), 10) + "m"
	}
	return strconv.FormatInt(q.Value(), 10)
}

// Resizable lists the containers whose resources can change in place: regular containers and
// sidecars (an init container that runs to completion cannot be resized).
func Resizable(pod *v1.Pod) []*v1.Container {
	var out []*v1.Container
	for i := range pod.Spec.InitContainers {
		if IsSidecar(&pod.Spec.InitContainers[i]) {
			out = append(out, &pod.Spec.InitContainers[i])
		}
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// SpecResources returns the pod's resizable containers' resources from its spec.
func SpecResources(pod *v1.Pod) Resources {
	out := Resources{}
	for _, c := range Resizable(pod) {
		out[c.Name] = *c.Resources.DeepCopy()
	}
	return out
}

// ResizeWanted reports whether the spec asks for other resources than allocated.
func ResizeWanted(pod *v1.Pod, allocated Resources) bool {
	for _, c := range Resizable(pod) {
		a, ok := allocated[c.Name]
		if !ok {
			continue // a container the allocation does not know takes the spec
		}
		if !SameResources(c.Resources, a) {
			return true
		}
	}
	return false
}

// WithResources returns a copy of pod whose resizable containers carry res (containers res does
// not name keep their spec). The kubelet runs the allocated copy, never the spec itself.
func WithResources(pod *v1.Pod, res Resources) *v1.Pod {
	p := pod.DeepCopy()
	set := func(cs []v1.Container) {
		for i := range cs {
			if r, ok := res[cs[i].Name]; ok {
				cs[i].Resources = *r.DeepCopy()
			}
		}
	}
	set(p.Spec.InitContainers)
	set(p.Spec.Containers)
	return p
}

// SameResources compares the cpu and memory requests and limits, the values a resize changes.
func SameResources(a, b v1.ResourceRequirements) bool {
	for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
		if !sameQuantity(a.Requests, b.Requests, name) || !sameQuantity(a.Limits, b.Limits, name) {
			return false
		}
	}
	return true
}

func sameQuantity(a, b v1.ResourceList, name v1.ResourceName) bool {
	qa, oka := a[name]
	qb, okb := b[name]
	if oka != okb {
		return false
	}
	return !oka || qa.Cmp(qb) == 0
}

// changed reports whether a resource's request or limit differs.
func changed(a, b v1.ResourceRequirements, name v1.ResourceName) bool {
	return !sameQuantity(a.Requests, b.Requests, name) || !sameQuantity(a.Limits, b.Limits, name)
}

// PodRequests is the pod's effective request: the larger of the running containers' sum
// (sidecars included) and what any init container needs while it runs (plus the sidecars
// started before it), plus the pod overhead.
func PodRequests(pod *v1.Pod) v1.ResourceList {
	sum := v1.ResourceList{}
	add := func(dst v1.ResourceList, src v1.ResourceList) {
		for n, q := range src {
			v := dst[n].DeepCopy()
			v.Add(q)
			dst[n] = v
		}
	}
	for _, c := range pod.Spec.Containers {
		add(sum, c.Resources.Requests)
	}
	sidecars := v1.ResourceList{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if IsSidecar(c) {
			add(sum, c.Resources.Requests)
			add(sidecars, c.Resources.Requests)
			continue
		}
		during := v1.ResourceList{}
		add(during, sidecars)
		add(during, c.Resources.Requests)
		for n, q := range during {
			if cur, ok := sum[n]; !ok || q.Cmp(cur) > 0 {
				sum[n] = q
			}
		}
	}
	add(sum, pod.Spec.Overhead)
	return sum
}

// ContainerResize is one step of applying an allocation to a running container.
type ContainerResize struct {
	Name        string
	ContainerID string
	// Restart: a changed resource's resizePolicy is RestartContainer, so the container is
	// stopped and started again with the new resources instead of being updated.
	Restart   bool
	Resources v1.ResourceRequirements // the allocated resources to apply
}

// ResizeInput is one apply request.
type ResizeInput struct {
	Pod       *v1.Pod // desired pod carrying the allocated resources (WithResources)
	Observed  Observed
	Allocated Resources
	// Actual is what was applied, by container ID; a running container missing here was
	// started with the allocation of its start and is not touched.
	Actual map[string]v1.ResourceRequirements
}

// Resize returns, for every running resizable container whose applied resources differ from
// the allocation, how to bring it there: an update in place unless a changed resource's
// resizePolicy is RestartContainer. Upstream's computePodResizeAction does the same.
func Resize(in ResizeInput) []ContainerResize {
	var out []ContainerResize
	for _, c := range Resizable(in.Pod) {
		want, ok := in.Allocated[c.Name]
		if !ok {
			continue
		}
		for _, oc := range in.Observed.Containers {
			if oc.Name != c.Name || oc.State != StateRunning {
				continue
			}
			got, known := in.Actual[oc.ID]
			if !known || SameResources(got, want) {
				continue
			}
			r := ContainerResize{Name: c.Name, ContainerID: oc.ID, Resources: *want.DeepCopy()}
			for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
				if changed(got, want, name) && restartPolicy(c, name) == v1.RestartContainer {
					r.Restart = true
				}
			}
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// restartPolicy is a container's resizePolicy for one resource (NotRequired when unset).
func restartPolicy(c *v1.Container, name v1.ResourceName) v1.ResourceResizeRestartPolicy {
	for _, p := range c.ResizePolicy {
		if p.ResourceName == name {
			return p.RestartPolicy
		}
	}
	return v1.NotRequired
}
