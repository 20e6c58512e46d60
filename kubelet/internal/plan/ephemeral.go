package plan

import (
	"time"

	v1 "k8s.io/api/core/v1"
)

// ReasonTargetNotFound is the waiting reason of an ephemeral container whose target container
// has no instance in the sandbox yet (upstream reports the same failure as a config error).
const ReasonTargetNotFound = "CreateContainerConfigError"

// ephemeralContainers starts each ephemeral container that has never run in the pod. They are
// started at most once: an exited one stays exited, a failed start is retried only because no
// instance exists yet. They have no probes, so nothing here kills them; KillPod stops them with
// the pod.
func (p *planner) ephemeralContainers(sb Sandbox) {
	for i := range p.in.Pod.Spec.EphemeralContainers {
		ec := &p.in.Pod.Spec.EphemeralContainers[i]
		if p.everRan(ec.Name) {
			continue
		}
		a := Action{Kind: StartContainer, Container: ec.Name, Ephemeral: true, Attempt: 0}
		if ec.TargetContainerName != "" {
			target, ok := p.target(sb, ec.TargetContainerName)
			if !ok {
				p.res.Waiting[ec.Name] = Waiting{Reason: ReasonTargetNotFound, Message: "target container " + ec.TargetContainerName + " is not running"}
				p.requeue(2 * time.Second)
				continue
			}
			a.TargetID = target
		}
		p.add(a)
		p.res.Waiting[ec.Name] = Waiting{Reason: "ContainerCreating"}
	}
}

// everRan reports whether the named container was ever created: an instance exists in one of
// the pod's sandboxes, or the pod's status reports one (its sandbox was replaced and removed
// since, which must not start it again).
func (p *planner) everRan(name string) bool {
	for _, c := range p.in.Observed.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, s := range p.in.Pod.Status.EphemeralContainerStatuses {
		if s.Name == name && s.ContainerID != "" {
			return true
		}
	}
	return false
}

// target returns the ID of the running instance of a container in the sandbox. Sharing the
// PID namespace of an exited container is impossible, so only a running one counts.
func (p *planner) target(sb Sandbox, name string) (string, bool) {
	for _, c := range p.instances(sb.ID, name) {
		if c.State == StateRunning {
			return c.ID, true
		}
	}
	return "", false
}

// EphemeralAsContainer returns an ephemeral container as a plain container (the common fields
// are the same type), which is how the runtime adapter and the status handle it.
func EphemeralAsContainer(ec *v1.EphemeralContainer) *v1.Container {
	c := v1.Container(ec.EphemeralContainerCommon)
	return &c
}
