package status

import (
	v1 "k8s.io/api/core/v1"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
)

// ephemeralStatuses reports the pod's ephemeral (debug) containers the way it reports the
// others (state, containerID, image, imageID). They never count for readiness: Ready stays
// false, as upstream, and the pod's conditions and phase ignore them.
func (b builder) ephemeralStatuses(pod *v1.Pod, old []v1.ContainerStatus) []v1.ContainerStatus {
	if len(pod.Spec.EphemeralContainers) == 0 {
		return nil
	}
	specs := make([]v1.Container, len(pod.Spec.EphemeralContainers))
	for i := range pod.Spec.EphemeralContainers {
		specs[i] = *plan.EphemeralAsContainer(&pod.Spec.EphemeralContainers[i])
	}
	out := b.statuses(specs, false, old)
	oldByName := map[string]v1.ContainerStatus{}
	for _, o := range old {
		oldByName[o.Name] = o
	}
	for i := range out {
		out[i].Ready = false
		if o, ok := oldByName[out[i].Name]; ok && o.ContainerID != "" && len(b.instances(out[i].Name)) == 0 {
			// It ran, and its container went with a replaced sandbox. It is never started
			// again, so its last state stays, ended if it was not yet.
			out[i] = o
			out[i].Ready = false
			if o.State.Terminated == nil {
				out[i].State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
					ExitCode: 137, Reason: "ContainerStatusUnknown", ContainerID: o.ContainerID,
					Message: "The container could not be located when the pod sandbox was replaced",
				}}
			}
			continue
		}
		if w := out[i].State.Waiting; w != nil && w.Reason == "PodInitializing" {
			// Debug containers do not wait for initialization.
			w.Reason = "ContainerCreating"
		}
	}
	return out
}
