// Package status computes a pod's status from what the runtime reports and what the kubelet
// decided, and patches it to the API server through the status subresource when it changed.
package status

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubenode/kubenode/kubelet/internal/cm"
	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// Input is what a pod's status is built from.
type Input struct {
	Pod     *v1.Pod // desired pod, with the status last seen from the API
	Runtime *runtime.PodState
	// Waiting holds why containers are not running (plan and start errors), by container name.
	Waiting map[string]plan.Waiting
	// Done: nothing will run in the pod any more.
	Done       bool
	InitFailed bool
	// Rejected is set when admission refused the pod (reason, message).
	Rejected    *Rejection
	HostIPs     []string
	RuntimeName string // container ID prefix, e.g. containerd
	Now         time.Time
	// Probes gives probe results; nil means no probes (running means started and ready).
	Probes ProbeResults
	// Resize is the in-place resize state (nil: none known, no resource fields reported).
	Resize *Resize
}

// Resize is what the status shows of in-place resizes.
type Resize struct {
	// Allocated is what the kubelet accepted, by container name (allocatedResources).
	Allocated plan.Resources
	// Actual is what was applied, by container ID (resources of running containers).
	Actual map[string]v1.ResourceRequirements
	// Pending is why the spec's resources are not accepted yet: plan.ResizeInfeasible or
	// plan.ResizeDeferred ("" none), with PendingMessage.
	Pending        plan.ResizeOutcome
	PendingMessage string
	// InProgress: accepted resources are not applied to every running container yet.
	InProgress bool
	// Error is why the last attempt to apply them failed ("" none).
	Error string
}

// ProbeResults are the probe outcomes by container ID.
type ProbeResults interface {
	Ready(containerID string) (ready, probed bool)
	Started(containerID string) bool
}

// Rejection is why the kubelet refused a pod.
type Rejection struct {
	Reason  string
	Message string
}

// Build computes the pod status.
func Build(in Input) v1.PodStatus {
	pod := in.Pod
	old := pod.Status
	now := metav1.NewTime(in.Now)
	st := v1.PodStatus{
		QOSClass:          cm.QOSClass(pod),
		StartTime:         old.StartTime,
		NominatedNodeName: old.NominatedNodeName,
	}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	for _, ip := range in.HostIPs {
		st.HostIPs = append(st.HostIPs, v1.HostIP{IP: ip})
	}
	if len(in.HostIPs) > 0 {
		st.HostIP = in.HostIPs[0]
	}
	if in.Rejected != nil {
		st.Phase = v1.PodFailed
		st.Reason = in.Rejected.Reason
		st.Message = in.Rejected.Message
		st.Conditions = keepScheduled(old.Conditions)
		return st
	}
	rs := in.Runtime
	if rs == nil {
		rs = &runtime.PodState{Details: map[string]runtime.ContainerDetail{}}
	}
	if pod.Spec.HostNetwork {
		for _, ip := range in.HostIPs {
			st.PodIPs = append(st.PodIPs, v1.PodIP{IP: ip})
		}
	} else {
		for _, ip := range rs.IPs {
			if ip != "" {
				st.PodIPs = append(st.PodIPs, v1.PodIP{IP: ip})
			}
		}
		if len(st.PodIPs) == 0 {
			// Keep the IPs of a sandbox that stopped: clients may still need them in terminal pods.
			st.PodIPs = old.PodIPs
		}
	}
	if len(st.PodIPs) > 0 {
		st.PodIP = st.PodIPs[0].IP
	}

	b := builder{in: in, rs: rs}
	st.InitContainerStatuses = b.statuses(pod.Spec.InitContainers, true, old.InitContainerStatuses)
	st.ContainerStatuses = b.statuses(pod.Spec.Containers, false, old.ContainerStatuses)
	st.EphemeralContainerStatuses = b.ephemeralStatuses(pod, old.EphemeralContainerStatuses)
	initDone := initialized(pod, st.InitContainerStatuses)
	st.Phase = phase(pod, st, initDone, in)
	if old.Phase == v1.PodSucceeded || old.Phase == v1.PodFailed {
		st.Phase = old.Phase // terminal phases never change
		st.Reason, st.Message = old.Reason, old.Message
	}
	if in.Pod.DeletionTimestamp != nil && in.Done && st.Phase != v1.PodSucceeded {
		// A deleted pod whose containers are gone ends Failed unless it had succeeded, as upstream.
		if st.Phase == v1.PodRunning || st.Phase == v1.PodPending {
			st.Phase = v1.PodFailed
		}
	}
	st.Conditions = conditions(pod, st, initDone, rs, in)
	return st
}

// keepScheduled keeps the conditions others own, and PodScheduled True: a pod the kubelet sees
// is scheduled, also when it was bound without a scheduler (upstream adds it the same way).
func keepScheduled(conds []v1.PodCondition) []v1.PodCondition {
	var out []v1.PodCondition
	scheduled := false
	for _, c := range conds {
		switch c.Type {
		case v1.PodScheduled:
			scheduled = true
			c.Status = v1.ConditionTrue
			c.Reason, c.Message = "", ""
			out = append(out, c)
		case v1.DisruptionTarget:
			out = append(out, c)
		}
	}
	if !scheduled {
		out = append(out, v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue})
	}
	return out
}

type builder struct {
	in Input
	rs *runtime.PodState
}

// instances of a container across sandboxes, newest first.
func (b builder) instances(name string) []plan.Container {
	var out []plan.Container
	for _, c := range b.rs.Observed.Containers {
		if c.Name == name {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Attempt != out[j].Attempt {
			return out[i].Attempt > out[j].Attempt
		}
		return out[i].CreatedAt.After(out[j].CreatedAt)
	})
	return out
}

func (b builder) containerID(id string) string {
	name := b.in.RuntimeName
	if name == "" {
		name = "containerd"
	}
	return name + "://" + id
}

func (b builder) terminated(c plan.Container) *v1.ContainerStateTerminated {
	reason := c.Reason
	if reason == "" || reason == "Completed" || reason == "Error" {
		reason = "Error"
		if c.ExitCode == 0 {
			reason = "Completed"
		}
	}
	return &v1.ContainerStateTerminated{
		ExitCode:    c.ExitCode,
		Reason:      reason,
		Message:     b.rs.Details[c.ID].Message,
		StartedAt:   metav1.NewTime(c.StartedAt),
		FinishedAt:  metav1.NewTime(c.FinishedAt),
		ContainerID: b.containerID(c.ID),
	}
}

func (b builder) statuses(specs []v1.Container, init bool, old []v1.ContainerStatus) []v1.ContainerStatus {
	var out []v1.ContainerStatus
	oldByName := map[string]v1.ContainerStatus{}
	for _, o := range old {
		oldByName[o.Name] = o
	}
	for i := range specs {
		spec := &specs[i]
		cs := v1.ContainerStatus{Name: spec.Name, Image: spec.Image}
		inst := b.instances(spec.Name)
		w, hasWaiting := b.in.Waiting[spec.Name]
		f := false
		cs.Started = &f
		if len(inst) == 0 {
			reason := "ContainerCreating"
			if init || !b.initDoneHint() {
				reason = "PodInitializing"
			}
			if hasWaiting {
				reason = w.Reason
			}
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: reason, Message: w.Message}
			if o, ok := oldByName[spec.Name]; ok {
				// Keep what we knew (restart count, last state) across a sandbox change.
				cs.RestartCount = o.RestartCount
				cs.LastTerminationState = o.LastTerminationState
				cs.ImageID = o.ImageID
			}
			out = append(out, cs)
			continue
		}
		last := inst[0]
		cs.RestartCount = int32(last.Attempt)
		cs.ContainerID = b.containerID(last.ID)
		cs.ImageID = b.rs.Details[last.ID].ImageRef
		if len(inst) > 1 && inst[1].State == plan.StateExited {
			cs.LastTerminationState.Terminated = b.terminated(inst[1])
		}
		switch last.State {
		case plan.StateRunning:
			cs.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(last.StartedAt)}
			b.resources(&cs, last.ID)
			started := true
			if b.in.Probes != nil {
				started = b.in.Probes.Started(last.ID)
			}
			cs.Started = &started
			// Without a readiness probe a started container is ready; a regular init container
			// never is.
			cs.Ready = started && (!init || plan.IsSidecar(spec))
			if b.in.Probes != nil && cs.Ready {
				if ready, probed := b.in.Probes.Ready(last.ID); probed {
					cs.Ready = ready
				}
			}
			if hasWaiting && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
				// A start error of a newer attempt; the running one still counts.
				cs.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(last.StartedAt)}
			}
		case plan.StateExited:
			term := b.terminated(last)
			if hasWaiting && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" && !b.in.Done {
				cs.State.Waiting = &v1.ContainerStateWaiting{Reason: w.Reason, Message: w.Message}
				cs.LastTerminationState = v1.ContainerState{Terminated: term}
			} else {
				cs.State.Terminated = term
			}
		default:
			reason := "ContainerCreating"
			if hasWaiting {
				reason = w.Reason
			}
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: reason, Message: w.Message}
		}
		out = append(out, cs)
	}
	return out
}

// resources fills a running container's allocated and applied resources.
func (b builder) resources(cs *v1.ContainerStatus, id string) {
	r := b.in.Resize
	if r == nil {
		return
	}
	alloc, ok := r.Allocated[cs.Name]
	if !ok {
		return
	}
	if len(alloc.Requests) > 0 {
		cs.AllocatedResources = alloc.Requests.DeepCopy()
	}
	applied := alloc
	if a, ok := r.Actual[id]; ok {
		applied = a
	}
	cs.Resources = applied.DeepCopy()
}

// initDoneHint reports whether all init containers have completed, from the runtime view.
func (b builder) initDoneHint() bool {
	for i := range b.in.Pod.Spec.InitContainers {
		c := &b.in.Pod.Spec.InitContainers[i]
		inst := b.instances(c.Name)
		if len(inst) == 0 {
			return false
		}
		if plan.IsSidecar(c) {
			continue
		}
		if inst[0].State != plan.StateExited || inst[0].ExitCode != 0 {
			return false
		}
	}
	return true
}

func initialized(pod *v1.Pod, statuses []v1.ContainerStatus) bool {
	for i, c := range pod.Spec.InitContainers {
		s := statuses[i]
		if plan.IsSidecar(&c) {
			if s.Started == nil || !*s.Started {
				if s.LastTerminationState.Terminated == nil && s.State.Terminated == nil {
					return false
				}
			}
			continue
		}
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			return false
		}
	}
	return true
}

func phase(pod *v1.Pod, st v1.PodStatus, initDone bool, in Input) v1.PodPhase {
	if in.InitFailed {
		return v1.PodFailed
	}
	if !initDone {
		return v1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range st.ContainerStatuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	policy := pod.Spec.RestartPolicy
	switch {
	case waiting > 0:
		return v1.PodPending
	case running > 0:
		return v1.PodRunning
	case stopped > 0:
		if policy == v1.RestartPolicyAlways || policy == "" {
			if in.Done {
				if stopped == succeeded {
					return v1.PodSucceeded
				}
				return v1.PodFailed
			}
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		if policy == v1.RestartPolicyNever || in.Done {
			return v1.PodFailed
		}
		return v1.PodRunning
	}
	return v1.PodPending
}

func conditions(pod *v1.Pod, st v1.PodStatus, initDone bool, rs *runtime.PodState, in Input) []v1.PodCondition {
	now := metav1.NewTime(in.Now)
	out := keepScheduled(pod.Status.Conditions)
	add := func(t v1.PodConditionType, ok bool, reason, msg string) {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: now}
		if ok {
			c.Status, c.Reason, c.Message = v1.ConditionTrue, "", ""
		}
		for _, o := range pod.Status.Conditions {
			if o.Type == t && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime // no transition
			}
		}
		out = append(out, c)
	}
	sandboxReady := false
	for _, s := range rs.Observed.Sandboxes {
		if s.Ready {
			sandboxReady = true
		}
	}
	terminal := st.Phase == v1.PodSucceeded || st.Phase == v1.PodFailed
	add(v1.PodReadyToStartContainers, sandboxReady && !terminal, "", "")
	if initDone || terminal && len(pod.Spec.InitContainers) == 0 {
		add(v1.PodInitialized, true, "", "")
	} else {
		add(v1.PodInitialized, false, "ContainersNotInitialized", "containers with incomplete status: "+names(pod.Spec.InitContainers, st.InitContainerStatuses, func(s v1.ContainerStatus) bool {
			return s.State.Terminated != nil && s.State.Terminated.ExitCode == 0 || s.Ready
		}))
	}
	var unready []string
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	for _, cs := range st.InitContainerStatuses {
		for i := range pod.Spec.InitContainers {
			if pod.Spec.InitContainers[i].Name == cs.Name && plan.IsSidecar(&pod.Spec.InitContainers[i]) && !cs.Ready {
				unready = append(unready, cs.Name)
			}
		}
	}
	if r := in.Resize; r != nil && !terminal {
		set := func(t v1.PodConditionType, reason, msg string) {
			c := v1.PodCondition{Type: t, Status: v1.ConditionTrue, Reason: reason, Message: msg, LastTransitionTime: now, LastProbeTime: now}
			for _, o := range pod.Status.Conditions {
				if o.Type == t && o.Status == c.Status && o.Reason == reason {
					c.LastTransitionTime = o.LastTransitionTime
				}
				if o.Type == t && o.Status == c.Status && o.Reason == reason && o.Message == msg {
					c.LastProbeTime = o.LastProbeTime
				}
			}
			out = append(out, c)
		}
		// As upstream: PodResizePending while the spec's resources are not accepted,
		// PodResizeInProgress (reason Error when applying failed) until they are applied.
		if r.Pending != plan.ResizeNone {
			set(v1.PodResizePending, string(r.Pending), r.PendingMessage)
		}
		if r.InProgress {
			reason := ""
			if r.Error != "" {
				reason = v1.PodReasonError
			}
			set(v1.PodResizeInProgress, reason, r.Error)
		}
	}
	switch {
	case terminal:
		add(v1.ContainersReady, false, "PodCompleted", "")
		add(v1.PodReady, false, "PodCompleted", "")
	case len(unready) > 0:
		msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
		add(v1.ContainersReady, false, "ContainersNotReady", msg)
		add(v1.PodReady, false, "ContainersNotReady", msg)
	default:
		add(v1.ContainersReady, true, "", "")
		ready, gate := gatesReady(pod)
		if ready {
			add(v1.PodReady, true, "", "")
		} else {
			add(v1.PodReady, false, "ReadinessGatesNotReady", "corresponding condition of pod readiness gate \""+gate+"\" does not exist.")
		}
	}
	return out
}

func gatesReady(pod *v1.Pod) (bool, string) {
	for _, g := range pod.Spec.ReadinessGates {
		ok := false
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType && c.Status == v1.ConditionTrue {
				ok = true
			}
		}
		if !ok {
			return false, string(g.ConditionType)
		}
	}
	return true, ""
}

func names(specs []v1.Container, st []v1.ContainerStatus, done func(v1.ContainerStatus) bool) string {
	var out []string
	for i, c := range specs {
		if i < len(st) && done(st[i]) {
			continue
		}
		out = append(out, c.Name)
	}
	return "[" + strings.Join(out, " ") + "]"
}
