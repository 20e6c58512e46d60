// Package cm manages the node's compute resources for pods: QoS classes, the kubepods cgroup
// hierarchy (v1 and v2) and the OOM score each QoS class gets.
package cm

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// QOSClass computes a pod's QoS class the way the API server does: Guaranteed when every
// container sets cpu and memory limits equal to requests, BestEffort when none sets any, else
// Burstable.
func QOSClass(pod *v1.Pod) v1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests := v1.ResourceList{}
	limits := v1.ResourceList{}
	zero := resource.MustParse("0")
	guaranteed := true
	all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for name, q := range c.Resources.Requests {
			if name != v1.ResourceCPU && name != v1.ResourceMemory || q.Cmp(zero) <= 0 {
				continue
			}
			requests[name] = q
		}
		got := 0
		for name, q := range c.Resources.Limits {
			if name != v1.ResourceCPU && name != v1.ResourceMemory || q.Cmp(zero) <= 0 {
				continue
			}
			got++
			limits[name] = q
		}
		if got != 2 {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return v1.PodQOSBestEffort
	}
	if guaranteed {
		for _, c := range all {
			for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
				req, ok := c.Resources.Requests[name]
				lim := c.Resources.Limits[name]
				if ok && req.Cmp(lim) != 0 {
					return v1.PodQOSBurstable
				}
			}
		}
		return v1.PodQOSGuaranteed
	}
	return v1.PodQOSBurstable
}

// OOMScoreAdj is the oom_score_adj for a container, as upstream computes it: the kernel kills
// best-effort containers first and guaranteed ones last; burstable ones in proportion to how
// little memory they requested.
func OOMScoreAdj(pod *v1.Pod, c *v1.Container, memoryCapacity int64) int64 {
	switch QOSClass(pod) {
	case v1.PodQOSGuaranteed:
		return -997
	case v1.PodQOSBestEffort:
		return 1000
	}
	if memoryCapacity <= 0 {
		return 999
	}
	req := c.Resources.Requests.Memory().Value()
	adj := 1000 - (1000*req)/memoryCapacity
	if adj < 3 {
		adj = 3 // above guaranteed pods
	}
	if adj > 999 {
		adj = 999 // below best-effort pods
	}
	return adj
}

// CPUPeriod is the CFS period used with quotas (100 ms, upstream's default).
const CPUPeriod = 100000

// MilliCPUToShares converts a cpu request to cgroup v1 cpu.shares (1 cpu = 1024 shares; at least
// 2, the kernel's minimum).
func MilliCPUToShares(milli int64) int64 {
	if milli <= 0 {
		return 2
	}
	s := milli * 1024 / 1000
	if s < 2 {
		s = 2
	}
	return s
}

// MilliCPUToQuota converts a cpu limit to a CFS quota over CPUPeriod (at least 1 ms).
func MilliCPUToQuota(milli int64) int64 {
	if milli <= 0 {
		return 0
	}
	q := milli * CPUPeriod / 1000
	if q < 1000 {
		q = 1000
	}
	return q
}
