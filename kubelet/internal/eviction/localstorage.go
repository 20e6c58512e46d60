package eviction

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

// Local ephemeral storage eviction (upstream's LocalStorageCapacityIsolation, on by default):
// on every pass, whatever the node's pressure, a pod is evicted at once when one of its
// emptyDir volumes on disk outgrows its sizeLimit, when its total local storage outgrows the
// sum of its containers' ephemeral-storage limits, or when one container's writable layer and
// logs outgrow that container's limit. Upstream's messages, word for word.
const (
	emptyDirMessageFmt           = "Usage of EmptyDir volume %q exceeds the limit %q. "
	podEphemeralMessageFmt       = "Pod ephemeral local storage usage exceeds the total limit of containers %s. "
	containerEphemeralMessageFmt = "Container %s exceeded its local ephemeral storage limit %q. "
)

// LocalStorageGrace is the kill grace, in seconds, of a local storage eviction: upstream's
// immediateEvictionGracePeriodSeconds, as for hard thresholds (older upstreams passed 0, which
// their pod workers raised to 1 anyway).
const LocalStorageGrace = HardGrace

// DiskUsage is one pod's local ephemeral storage use in bytes. Figures that could not be read
// are absent; figures from a capped walk are lower bounds, so they can only miss an eviction,
// never cause a wrong one.
type DiskUsage struct {
	// Volumes is by volume name: the local ephemeral volumes on the node's disk (emptyDir not
	// in memory, configMap, downwardAPI; upstream's set).
	Volumes map[string]int64
	// Containers is by container name: the current instance's writable layer and the
	// container's log files (all attempts).
	Containers map[string]ContainerDisk
	// Other is the rest of the pod's files on the node's disk (its etc-hosts).
	Other int64
}

// ContainerDisk is one container's local storage use in bytes.
type ContainerDisk struct{ Rootfs, Logs int64 }

// Total is everything the pod uses on the node's disk.
func (u DiskUsage) Total() int64 {
	t := u.Other
	for _, v := range u.Volumes {
		t += v
	}
	for _, c := range u.Containers {
		t += c.Rootfs + c.Logs
	}
	return t
}

// LocalEviction is a pod to evict for its local storage, with upstream's message.
type LocalEviction struct {
	Pod     *v1.Pod
	Message string
}

// NeedsDiskUsage reports whether the pod has a local storage limit that LocalStorage checks,
// so pods without one are never walked. Critical pods are never evicted, so never measured.
func NeedsDiskUsage(pod *v1.Pod) bool {
	if Critical(pod) {
		return false
	}
	for _, v := range pod.Spec.Volumes {
		if diskEmptyDir(v) && v.EmptyDir.SizeLimit != nil && !v.EmptyDir.SizeLimit.IsZero() {
			return true
		}
	}
	_, ok := podEphemeralLimit(pod)
	return ok
}

func diskEmptyDir(v v1.Volume) bool {
	return v.EmptyDir != nil && v.EmptyDir.Medium != v1.StorageMediumMemory
}

// LocalStorage returns the pods to evict for their local storage use, in the given order, each
// for the first limit it exceeds (emptyDir, then the pod total, then a container), as
// upstream's localStorageEviction. Pods without usage and critical pods are left alone.
func LocalStorage(pods []*v1.Pod, usage map[types.UID]DiskUsage) []LocalEviction {
	var out []LocalEviction
	for _, pod := range pods {
		u, ok := usage[pod.UID]
		if !ok || Critical(pod) {
			continue
		}
		if msg := emptyDirExceeded(pod, u); msg != "" {
			out = append(out, LocalEviction{Pod: pod, Message: msg})
			continue
		}
		if msg := podLimitExceeded(pod, u); msg != "" {
			out = append(out, LocalEviction{Pod: pod, Message: msg})
			continue
		}
		if msg := containerLimitExceeded(pod, u); msg != "" {
			out = append(out, LocalEviction{Pod: pod, Message: msg})
		}
	}
	return out
}

func emptyDirExceeded(pod *v1.Pod, u DiskUsage) string {
	for _, v := range pod.Spec.Volumes {
		// In memory, sizeLimit is the tmpfs size and the usage is memory.
		if !diskEmptyDir(v) || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.IsZero() {
			continue
		}
		used, ok := u.Volumes[v.Name]
		if ok && used > v.EmptyDir.SizeLimit.Value() {
			return fmt.Sprintf(emptyDirMessageFmt, v.Name, v.EmptyDir.SizeLimit.String())
		}
	}
	return ""
}

func podLimitExceeded(pod *v1.Pod, u DiskUsage) string {
	limit, ok := podEphemeralLimit(pod)
	if !ok {
		return ""
	}
	if u.Total() > limit.Value() {
		return fmt.Sprintf(podEphemeralMessageFmt, limit.String())
	}
	return ""
}

func containerLimitExceeded(pod *v1.Pod, u DiskUsage) string {
	// Upstream checks the app containers only.
	for _, c := range pod.Spec.Containers {
		limit, ok := c.Resources.Limits[v1.ResourceEphemeralStorage]
		if !ok {
			continue
		}
		d, ok := u.Containers[c.Name]
		if ok && d.Rootfs+d.Logs > limit.Value() {
			return fmt.Sprintf(containerEphemeralMessageFmt, c.Name, limit.String())
		}
	}
	return ""
}

// podEphemeralLimit is the pod's ephemeral-storage limit as upstream's PodLimits computes it:
// the app containers' and sidecars' limits summed, raised to any init container's limit (plus
// the sidecars started before it), plus the pod overhead. ok is false when no container has
// one. As upstream, containers without a limit add nothing rather than making the pod
// unlimited.
func podEphemeralLimit(pod *v1.Pod) (resource.Quantity, bool) {
	var sum, sidecars, initMax resource.Quantity
	found := false
	for _, c := range pod.Spec.Containers {
		if l, ok := c.Resources.Limits[v1.ResourceEphemeralStorage]; ok {
			sum.Add(l)
			found = true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		l, ok := c.Resources.Limits[v1.ResourceEphemeralStorage]
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
		if !ok {
			continue
		}
		found = true
		if sidecar {
			sum.Add(l)
			sidecars.Add(l)
			continue
		}
		l.Add(sidecars)
		if l.Cmp(initMax) > 0 {
			initMax = l
		}
	}
	if !found {
		return resource.Quantity{}, false
	}
	if initMax.Cmp(sum) > 0 {
		sum = initMax
	}
	if o, ok := pod.Spec.Overhead[v1.ResourceEphemeralStorage]; ok {
		sum.Add(o)
	}
	return sum, true
}
