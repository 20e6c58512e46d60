package podsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/cm"
	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
	"github.com/kubenode/kubenode/kubelet/internal/status"
)

// ResourceUpdater changes a running container's resources in place (CRI
// UpdateContainerResources). A runtime without it cannot resize in place: such resizes restart
// the container.
type ResourceUpdater interface {
	UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error
}

// PodLimitSetter writes a pod cgroup's limits during a resize.
type PodLimitSetter interface {
	SetPodLimits(pod *v1.Pod, l cm.PodLimits) error
}

// DeferredResizeRetry is how often a deferred resize is tried again (pods leaving the node free
// room for it; upstream retries on pod removal and periodically).
const DeferredResizeRetry = 5 * time.Second

// resizeState is one sync's view of a pod's resources.
type resizeState struct {
	alloc   *allocation
	pending plan.ResizeOutcome
	message string
	errMsg  string // last apply error
}

// allocate loads the pod's allocation (the spec on first sight) and admits a resize the spec
// asks for. It returns the allocation to run the pod with.
func (s *Syncer) allocate(pod *v1.Pod, ref *v1.Pod, log *zap.Logger) (*resizeState, error) {
	st, ok, err := s.allocs.get(pod.UID)
	if err != nil {
		// An unreadable checkpoint must not stop the pod: start over from the spec.
		log.Warn("allocation checkpoint unreadable; using the spec", zap.Error(err))
	}
	spec := plan.SpecResources(pod)
	if !ok {
		st = &allocation{Allocated: spec, Actual: map[string]v1.ResourceRequirements{}}
		if err := s.allocs.set(pod.UID, st); err != nil {
			return nil, err
		}
	}
	for name, r := range spec {
		if _, known := st.Allocated[name]; !known {
			st.Allocated[name] = r
		}
	}
	rs := &resizeState{alloc: st}
	s.mu.Lock()
	prev := s.resizeSeen[pod.UID]
	rs.errMsg = s.resizeErr[pod.UID]
	s.mu.Unlock()
	var outcome plan.ResizeOutcome
	var msg string
	if plan.ResizeWanted(pod, st.Allocated) {
		// Summing the other pods costs a pass over all of them: only for a resize.
		outcome, msg = plan.AdmitResize(plan.AdmitResizeInput{Pod: pod, Allocated: st.Allocated, Allocatable: s.d.Node.Allocatable, Others: s.othersRequests(pod.UID)})
	}
	switch outcome {
	case plan.ResizeAccepted:
		st.Allocated = spec
		if err := s.allocs.set(pod.UID, st); err != nil {
			return nil, err
		}
		log.Info("resize accepted", zap.Any("resources", spec))
	case plan.ResizeInfeasible, plan.ResizeDeferred:
		rs.pending, rs.message = outcome, msg
		if prev != string(outcome)+msg {
			typ := v1.EventTypeNormal
			if outcome == plan.ResizeInfeasible {
				typ = v1.EventTypeWarning
			}
			s.d.Recorder.Event(ref, typ, "Resize"+string(outcome), "Pod resize "+string(outcome)+": "+msg)
			log.Info("resize pending", zap.String("reason", string(outcome)), zap.String("message", msg))
		}
	}
	s.mu.Lock()
	s.resizeSeen[pod.UID] = string(outcome) + msg
	s.mu.Unlock()
	return rs, nil
}

// othersRequests sums the allocated requests of the other admitted pods still running.
func (s *Syncer) othersRequests(uid types.UID) v1.ResourceList {
	s.mu.Lock()
	var uids []types.UID
	for u, ok := range s.admitted {
		if ok && u != uid {
			uids = append(uids, u)
		}
	}
	s.mu.Unlock()
	sum := v1.ResourceList{}
	for _, u := range uids {
		p, apiPod, ok := s.d.Pods.Get(u)
		if !ok || terminal(apiPod) {
			continue
		}
		if alloc, ok := s.allocs.cached(u); ok {
			p = plan.WithResources(p, alloc)
		}
		for n, q := range plan.PodRequests(p) {
			v := sum[n].DeepCopy()
			v.Add(q)
			sum[n] = v
		}
	}
	return sum
}

// AllocatedPod returns pod with the resources the kubelet accepted for it (the spec when it has
// no record), what admission of other pods must count: a resize that is still pending does
// not hold node resources yet.
func (s *Syncer) AllocatedPod(pod *v1.Pod) *v1.Pod {
	alloc, ok := s.allocs.cached(pod.UID)
	if !ok {
		return pod
	}
	return plan.WithResources(pod, alloc)
}

// actualPod returns the allocated pod with each running container's applied resources, the
// limits the pod cgroup holds right now.
func actualPod(allocPod *v1.Pod, rs *runtime.PodState, st *allocation) *v1.Pod {
	if rs == nil {
		return allocPod
	}
	byName := plan.Resources{}
	for _, c := range rs.Observed.Containers {
		if c.State != plan.StateRunning {
			continue
		}
		if a, ok := st.Actual[c.ID]; ok {
			byName[c.Name] = a
		}
	}
	if len(byName) == 0 {
		return allocPod
	}
	return plan.WithResources(allocPod, byName)
}

// inProgress reports whether a running container still lacks its allocated resources.
func inProgress(allocPod *v1.Pod, rs *runtime.PodState, st *allocation) bool {
	if rs == nil {
		return false
	}
	return len(plan.Resize(plan.ResizeInput{Pod: allocPod, Observed: rs.Observed, Allocated: st.Allocated, Actual: st.Actual})) > 0
}

// recordActual notes the resources a container instance was started or updated with.
func (s *Syncer) recordActual(uid types.UID, id string, res v1.ResourceRequirements) error {
	st, ok, err := s.allocs.get(uid)
	if err != nil || !ok {
		st = &allocation{Allocated: plan.Resources{}, Actual: map[string]v1.ResourceRequirements{}}
	}
	st.Actual[id] = *res.DeepCopy()
	return s.allocs.set(uid, st)
}

// pruneActual forgets the instances the runtime no longer has.
func (s *Syncer) pruneActual(uid types.UID, rs *runtime.PodState) {
	st, ok, err := s.allocs.get(uid)
	if err != nil || !ok || rs == nil {
		return
	}
	live := map[string]bool{}
	for _, c := range rs.Observed.Containers {
		live[c.ID] = true
	}
	n := len(st.Actual)
	for id := range st.Actual {
		if !live[id] {
			delete(st.Actual, id)
		}
	}
	if len(st.Actual) != n {
		_ = s.allocs.set(uid, st)
	}
}

// resize applies the allocation to the running containers: the pod cgroup grows first (to
// the larger of old and new limits, so it always holds its containers), then each container is
// updated in place or restarted as its resizePolicy says, then the pod cgroup takes its final
// (possibly smaller) limits. A failure leaves the resize in progress with the error, retried on
// the next sync; a memory limit below a container's usage is refused by the kernel this way.
func (e *executor) resize(ctx context.Context, steps []plan.ContainerResize, cur *v1.Pod) error {
	uid := e.pod.UID
	setter, _ := e.s.d.Cgroups.(PodLimitSetter)
	next := cm.Limits(e.pod)
	if setter != nil {
		if err := setter.SetPodLimits(e.pod, cm.GrowLimits(cm.Limits(cur), next)); err != nil {
			return fmt.Errorf("grow pod cgroup: %w", err)
		}
	}
	updater, _ := e.s.d.Runtime.(ResourceUpdater)
	var errs []error
	for _, r := range steps {
		c, ok := runtime.FindContainer(e.pod, r.Name)
		if !ok {
			continue
		}
		if r.Restart || updater == nil {
			e.event(v1.EventTypeNormal, "Killing", fmt.Sprintf("Stopping container %s: container resources changed and its resizePolicy is RestartContainer", r.Name))
			if err := e.stopContainer(ctx, r.ContainerID, c, plan.Grace(e.pod)); err != nil {
				errs = append(errs, fmt.Errorf("restart %s for resize: %w", r.Name, err))
				continue
			}
			var attempt uint32
			for _, oc := range e.rs.Observed.Containers {
				if oc.ID == r.ContainerID {
					attempt = oc.Attempt + 1
				}
			}
			if err := e.startContainer(ctx, plan.Action{Kind: plan.StartContainer, Container: r.Name, Init: plan.IsSidecar(c), Attempt: attempt}); err != nil {
				errs = append(errs, fmt.Errorf("restart %s for resize: %w", r.Name, err))
			}
			continue
		}
		res := runtime.Resources(e.pod, c, e.s.d.Node.Facts.MemoryCapacity)
		if err := updater.UpdateContainerResources(ctx, r.ContainerID, res); err != nil {
			errs = append(errs, fmt.Errorf("resize container %s: %w", r.Name, err))
			continue
		}
		if err := e.s.recordActual(uid, r.ContainerID, r.Resources); err != nil {
			errs = append(errs, err)
		}
		e.log.Info("container resized", zap.String("container", r.Name), zap.Int64("cpuShares", res.CpuShares), zap.Int64("cpuQuota", res.CpuQuota), zap.Int64("memoryLimit", res.MemoryLimitInBytes))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if setter != nil {
		if err := setter.SetPodLimits(e.pod, next); err != nil {
			return fmt.Errorf("set pod cgroup: %w", err)
		}
	}
	return nil
}

// resizeStatus is the status's view of the pod's resize after this sync.
func (s *Syncer) resizeStatus(uid types.UID, allocPod *v1.Pod, rs *runtime.PodState, st *resizeState) *status.Resize {
	cur, ok, _ := s.allocs.get(uid)
	if !ok {
		cur = st.alloc
	}
	s.mu.Lock()
	errMsg := s.resizeErr[uid]
	s.mu.Unlock()
	out := &status.Resize{Allocated: cur.Allocated, Actual: cur.Actual, Pending: st.pending, PendingMessage: st.message}
	out.InProgress = inProgress(allocPod, rs, cur)
	if out.InProgress {
		out.Error = errMsg
	}
	return out
}
