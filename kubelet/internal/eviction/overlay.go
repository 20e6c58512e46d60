package eviction

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Pods is the desired-pod lookup the pod syncs use (podsource.Manager).
type Pods interface {
	Get(uid types.UID) (pod *v1.Pod, apiPod *v1.Pod, ok bool)
}

// Evictions sits between the pod manager and the pod syncs: an evicted pod reads as a Failed
// pod (reason Evicted, the eviction message) whose grace period is the eviction's, so the
// ordinary sync path kills it at once and reports that status, as upstream's killPodFunc with
// a status override does. Nothing else about pods changes.
type Evictions struct {
	pods    Pods
	trigger func(types.UID)
	now     func() metav1.Time

	mu      sync.Mutex
	evicted map[types.UID]evicted
}

type evicted struct {
	grace      int64
	message    string
	disruption bool
	at         metav1.Time
}

// NewEvictions wraps pods; trigger asks for a pod's sync.
func NewEvictions(pods Pods, trigger func(types.UID), now func() metav1.Time) *Evictions {
	if now == nil {
		now = metav1.Now
	}
	return &Evictions{pods: pods, trigger: trigger, now: now, evicted: map[types.UID]evicted{}}
}

// Evict marks the pod evicted and asks for its sync; disruption adds the DisruptionTarget
// condition.
func (e *Evictions) Evict(pod *v1.Pod, grace int64, message string, disruption bool) {
	e.mu.Lock()
	e.evicted[pod.UID] = evicted{grace: grace, message: message, disruption: disruption, at: e.now()}
	e.mu.Unlock()
	e.trigger(pod.UID)
}

// Evicted reports whether the pod was evicted (and is still known).
func (e *Evictions) Evicted(uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.evicted[uid]
	return ok
}

// Forget drops evictions of pods that are gone.
func (e *Evictions) Forget() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for uid := range e.evicted {
		if _, _, ok := e.pods.Get(uid); !ok {
			delete(e.evicted, uid)
		}
	}
}

// Get returns the pod as the syncs should see it.
func (e *Evictions) Get(uid types.UID) (*v1.Pod, *v1.Pod, bool) {
	pod, apiPod, ok := e.pods.Get(uid)
	if !ok {
		return pod, apiPod, ok
	}
	e.mu.Lock()
	ev, isEvicted := e.evicted[uid]
	e.mu.Unlock()
	if !isEvicted {
		return pod, apiPod, ok
	}
	same := apiPod == pod
	pod = evictedCopy(pod, ev)
	switch {
	case same:
		apiPod = pod
	case apiPod != nil:
		apiPod = evictedCopy(apiPod, ev)
	}
	return pod, apiPod, true
}

func evictedCopy(p *v1.Pod, ev evicted) *v1.Pod {
	p = p.DeepCopy()
	grace := ev.grace
	p.Spec.TerminationGracePeriodSeconds = &grace
	if p.DeletionGracePeriodSeconds != nil && *p.DeletionGracePeriodSeconds > grace {
		p.DeletionGracePeriodSeconds = &grace
	}
	if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		// Finished before the eviction landed: the pod keeps its own ending.
		return p
	}
	p.Status.Phase = v1.PodFailed
	p.Status.Reason = Reason
	p.Status.Message = ev.message
	if !ev.disruption {
		return p
	}
	cond := v1.PodCondition{Type: v1.DisruptionTarget, Status: v1.ConditionTrue, Reason: v1.PodReasonTerminationByKubelet, Message: ev.message, LastTransitionTime: ev.at}
	replaced := false
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.DisruptionTarget {
			p.Status.Conditions[i], replaced = cond, true
		}
	}
	if !replaced {
		p.Status.Conditions = append(p.Status.Conditions, cond)
	}
	return p
}
