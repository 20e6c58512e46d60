// Package eviction is the kubelet's node-pressure eviction (evictionHard, evictionSoft), as
// upstream's eviction manager: every 10 s it observes memory.available, nodefs/imagefs
// available bytes and free inodes, and pid.available; a crossed threshold sets MemoryPressure,
// DiskPressure or PIDPressure at once. A hard threshold acts at once, a soft one only after it
// stayed crossed for its grace period; acting means disk pressure first reclaims unused images,
// and then one pod is evicted per interval (phase Failed, reason Evicted). Every pass also
// evicts, whatever the pressure, each pod over its own local ephemeral storage limits (emptyDir
// sizeLimit, ephemeral-storage limits; see LocalStorage). The decisions here are pure; Manager
// does the observing and the killing.
package eviction

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kubenode/kubenode/kubelet/internal/admission"
	"github.com/kubenode/kubenode/kubelet/internal/cm"
	"github.com/kubenode/kubenode/kubelet/internal/status"
)

// Signal is an eviction signal.
type Signal string

// The signals evictionHard accepts.
const (
	MemoryAvailable   Signal = "memory.available"
	NodeFsAvailable   Signal = "nodefs.available"
	NodeFsInodesFree  Signal = "nodefs.inodesFree"
	ImageFsAvailable  Signal = "imagefs.available"
	ImageFsInodesFree Signal = "imagefs.inodesFree"
	PIDAvailable      Signal = "pid.available"
)

// Reason is the pod status reason and event reason of an eviction, as upstream.
const Reason = "Evicted"

// Resource is what a signal measures, as named in eviction messages.
func (s Signal) Resource() v1.ResourceName {
	switch s {
	case MemoryAvailable:
		return v1.ResourceMemory
	case NodeFsAvailable, ImageFsAvailable:
		return v1.ResourceEphemeralStorage
	case NodeFsInodesFree, ImageFsInodesFree:
		return "inodes"
	case PIDAvailable:
		return "pids"
	}
	return ""
}

// Condition is the node condition a crossed threshold of the signal sets.
func (s Signal) Condition() v1.NodeConditionType {
	switch s {
	case MemoryAvailable:
		return v1.NodeMemoryPressure
	case PIDAvailable:
		return v1.NodePIDPressure
	}
	return v1.NodeDiskPressure
}

func (s Signal) disk() bool { return s.Condition() == v1.NodeDiskPressure }

// Threshold is one eviction threshold: the signal is crossed when what is available falls
// below Quantity, or below Percent of capacity. GracePeriod is how long a soft threshold must
// stay crossed before it evicts; it is 0 for hard thresholds.
type Threshold struct {
	Signal      Signal
	Quantity    *resource.Quantity
	Percent     float64
	GracePeriod time.Duration
}

// Hard reports whether the threshold evicts as soon as it is crossed, with HardGrace. As
// upstream, a soft threshold with a 0 s grace period is a hard one.
func (t Threshold) Hard() bool { return t.GracePeriod == 0 }

// Value is the threshold in the signal's unit for the given capacity.
func (t Threshold) Value(capacity int64) int64 {
	if t.Quantity != nil {
		return t.Quantity.Value()
	}
	return int64(float64(capacity) * t.Percent / 100)
}

// String names the threshold in logs; a soft one with its grace period.
func (t Threshold) String() string {
	s := string(t.Signal) + "<" + strconv.FormatFloat(t.Percent, 'f', -1, 64) + "%"
	if t.Quantity != nil {
		s = string(t.Signal) + "<" + t.Quantity.String()
	}
	if !t.Hard() {
		s += " for " + t.GracePeriod.String()
	}
	return s
}

// ParseThresholds turns the evictionHard map into thresholds; as upstream, a threshold of 0 or
// 0% is no threshold at all.
func ParseThresholds(m map[string]string) ([]Threshold, error) {
	return parseThresholds("evictionHard", m)
}

// ParseSoftThresholds turns evictionSoft and evictionSoftGracePeriod into thresholds: every soft
// signal needs a grace period (upstream refuses to start without one), and a grace period
// without a soft threshold is a mistake, not something to ignore.
func ParseSoftThresholds(soft, grace map[string]string) ([]Threshold, error) {
	out, err := parseThresholds("evictionSoft", soft)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(soft) {
		if _, ok := grace[k]; !ok {
			return nil, fmt.Errorf("evictionSoftGracePeriod[%s]: missing: every evictionSoft signal needs a grace period", k)
		}
	}
	periods := map[Signal]time.Duration{}
	for _, k := range sortedKeys(grace) {
		if _, ok := soft[k]; !ok {
			return nil, fmt.Errorf("evictionSoftGracePeriod[%s]: no evictionSoft[%s] threshold to go with it", k, k)
		}
		d, err := time.ParseDuration(strings.TrimSpace(grace[k]))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("evictionSoftGracePeriod[%s]: %q is not a non-negative duration such as 1m30s", k, grace[k])
		}
		periods[Signal(k)] = d
	}
	for i := range out {
		out[i].GracePeriod = periods[out[i].Signal]
	}
	return out, nil
}

func parseThresholds(fieldName string, m map[string]string) ([]Threshold, error) {
	var out []Threshold
	for _, k := range sortedKeys(m) {
		s := Signal(k)
		if s.Resource() == "" {
			return nil, fmt.Errorf("%s[%s]: unknown eviction signal", fieldName, k)
		}
		v := strings.TrimSpace(m[k])
		if p, ok := strings.CutSuffix(v, "%"); ok {
			f, err := strconv.ParseFloat(p, 64)
			if err != nil || f < 0 || f > 100 {
				return nil, fmt.Errorf("%s[%s]: %q is not a percentage between 0%% and 100%%", fieldName, k, v)
			}
			if f > 0 {
				out = append(out, Threshold{Signal: s, Percent: f})
			}
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			return nil, fmt.Errorf("%s[%s]: %q is not a quantity (100Mi) or a percentage (10%%)", fieldName, k, v)
		}
		if q.Sign() > 0 {
			out = append(out, Threshold{Signal: s, Quantity: &q})
		}
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Observation is one signal's reading.
type Observation struct {
	Available int64
	Capacity  int64
}

// Observations are the signals read in one pass; a signal that could not be read is absent.
type Observations map[Signal]Observation

// Met returns the thresholds crossed by the observations, grace periods aside, memory first
// (upstream's order: the memory signal is the one reclaimed first when several are met) and
// otherwise in the given order (hard before soft).
func Met(thresholds []Threshold, obs Observations) []Threshold {
	var out []Threshold
	for _, t := range thresholds {
		o, ok := obs[t.Signal]
		if !ok {
			continue
		}
		if o.Available < t.Value(o.Capacity) {
			out = append(out, t)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Signal == MemoryAvailable && out[j].Signal != MemoryAvailable
	})
	return out
}

// Pressure tracks when each condition's threshold was last crossed; a condition stays on for
// the transition period after that, so the node does not flap.
type Pressure map[v1.NodeConditionType]time.Time

// Update records the met thresholds at now and returns the conditions that are on, sorted.
func (p Pressure) Update(met []Threshold, now time.Time, transition time.Duration) []v1.NodeConditionType {
	for _, t := range met {
		p[t.Signal.Condition()] = now
	}
	var on []v1.NodeConditionType
	for c, last := range p {
		if now.Sub(last) <= transition {
			on = append(on, c)
		} else {
			delete(p, c)
		}
	}
	sort.Slice(on, func(i, j int) bool { return on[i] < on[j] })
	return on
}

// ConditionMessages are the node conditions' reasons and messages, upstream's words.
func ConditionMessages(c v1.NodeConditionType, on bool) (reason, message string) {
	switch {
	case c == v1.NodeMemoryPressure && on:
		return "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"
	case c == v1.NodeMemoryPressure:
		return "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
	case c == v1.NodeDiskPressure && on:
		return "KubeletHasDiskPressure", "kubelet has disk pressure"
	case c == v1.NodeDiskPressure:
		return "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
	case c == v1.NodePIDPressure && on:
		return "KubeletHasInsufficientPID", "kubelet has insufficient PID available"
	default:
		return "KubeletHasSufficientPID", "kubelet has sufficient PID available"
	}
}

// Critical pods are never evicted and are admitted under pressure: static and mirror pods, and
// pods at system-critical priority (system-node-critical, system-cluster-critical), as upstream.
func Critical(pod *v1.Pod) bool {
	if _, ok := pod.Annotations["kubernetes.io/config.mirror"]; ok {
		return true
	}
	if src := pod.Annotations["kubernetes.io/config.source"]; src != "" && src != "api" {
		return true
	}
	return pod.Spec.Priority != nil && *pod.Spec.Priority >= 2000000000
}

// Admit rejects pods the node cannot take under pressure, as upstream: under memory pressure
// alone, BestEffort pods that do not tolerate the memory-pressure taint; under any other
// pressure, every pod. Critical pods are always admitted.
func Admit(pod *v1.Pod, conditions []v1.NodeConditionType) *status.Rejection {
	if len(conditions) == 0 || Critical(pod) {
		return nil
	}
	if len(conditions) == 1 && conditions[0] == v1.NodeMemoryPressure {
		if cm.QOSClass(pod) != v1.PodQOSBestEffort {
			return nil
		}
		for _, tol := range pod.Spec.Tolerations {
			if toleratesMemoryPressure(tol) {
				return nil
			}
		}
	}
	names := make([]string, len(conditions))
	for i, c := range conditions {
		names[i] = string(c)
	}
	return &status.Rejection{Reason: Reason, Message: fmt.Sprintf("The node had condition: [%s]. ", strings.Join(names, " "))}
}

// toleratesMemoryPressure: the toleration matches node.kubernetes.io/memory-pressure:NoSchedule
// (an empty key with Exists matches every taint; an empty effect every effect).
func toleratesMemoryPressure(t v1.Toleration) bool {
	if t.Effect != "" && t.Effect != v1.TaintEffectNoSchedule {
		return false
	}
	if t.Key == "" {
		return t.Operator == v1.TolerationOpExists
	}
	if t.Key != v1.TaintNodeMemoryPressure {
		return false
	}
	return t.Operator == v1.TolerationOpExists || t.Value == ""
}

// PodUsage is a pod with what it uses now; HasStats is false when the runtime reported nothing
// for it (upstream evicts such pods first).
type PodUsage struct {
	Pod      *v1.Pod
	HasStats bool
	Memory   int64 // working set bytes, summed over containers
	Disk     int64 // writable layer bytes, summed over containers
	// Containers is per container name: memory working set and disk.
	Containers map[string]ContainerUsage
}

// ContainerUsage is one container's usage.
type ContainerUsage struct{ Memory, Disk int64 }

// Rank orders pods for eviction under the signal, first victim first, as upstream: memory by
// usage above requests, then priority, then usage minus requests; disk the same with
// ephemeral-storage; PIDs by priority. Critical pods are left out.
func Rank(signal Signal, pods []PodUsage) []PodUsage {
	var out []PodUsage
	for _, p := range pods {
		if !Critical(p.Pod) {
			out = append(out, p)
		}
	}
	res := signal.Resource()
	usage := func(p PodUsage) int64 {
		if res == v1.ResourceMemory {
			return p.Memory
		}
		return p.Disk
	}
	request := func(p PodUsage) int64 {
		q := admission.Requests(p.Pod)[res]
		return q.Value()
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.HasStats != b.HasStats && signal != PIDAvailable {
			return !a.HasStats
		}
		if signal != PIDAvailable && res != "inodes" {
			ae, be := usage(a) > request(a), usage(b) > request(b)
			if ae != be {
				return ae
			}
		}
		if pa, pb := priority(a.Pod), priority(b.Pod); pa != pb {
			return pa < pb
		}
		if signal == PIDAvailable || res == "inodes" {
			return false
		}
		return usage(a)-request(a) > usage(b)-request(b)
	})
	return out
}

func priority(p *v1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// Message is the eviction message, upstream's shape: "The node was low on resource: memory.
// Threshold quantity: 100Mi, available: 50Mi. Container app was using 200Mi, request is 100Mi,
// has larger consumption of memory. "
func Message(t Threshold, o Observation, p PodUsage) string {
	res := t.Signal.Resource()
	msg := fmt.Sprintf("The node was low on resource: %s. ", res)
	format := resource.BinarySI
	if res == "inodes" || res == "pids" {
		format = resource.DecimalSI
	}
	// A quantity threshold reads as configured; a percentage as its value at this capacity.
	q := resource.NewQuantity(t.Value(o.Capacity), format)
	if t.Quantity != nil {
		q = t.Quantity
	}
	msg += fmt.Sprintf("Threshold quantity: %s, available: %s. ", q.String(), resource.NewQuantity(o.Available, format).String())
	if res != v1.ResourceMemory && res != v1.ResourceEphemeralStorage {
		return msg
	}
	for _, c := range p.Pod.Spec.Containers {
		u, ok := p.Containers[c.Name]
		if !ok {
			continue
		}
		used := u.Memory
		if res == v1.ResourceEphemeralStorage {
			used = u.Disk
		}
		req := c.Resources.Requests[res]
		if used > req.Value() {
			msg += fmt.Sprintf("Container %s was using %s, request is %s, has larger consumption of %s. ",
				c.Name, resource.NewQuantity(used, resource.BinarySI).String(), req.String(), res)
		}
	}
	return msg
}

// Crossed holds since when each threshold has been crossed without a break, by its String.
type Crossed map[string]time.Time

// Update records the met thresholds at now: one already crossed keeps its time, a newly crossed
// one starts at now (returned), and one no longer met is forgotten, so its grace period starts
// over the next time it is crossed.
func (c Crossed) Update(met []Threshold, now time.Time) (newly []Threshold) {
	keep := map[string]bool{}
	for _, t := range met {
		k := t.String()
		keep[k] = true
		if _, ok := c[k]; !ok {
			c[k] = now
			newly = append(newly, t)
		}
	}
	for k := range c {
		if !keep[k] {
			delete(c, k)
		}
	}
	return newly
}

// Due returns the met thresholds that have stayed crossed for their grace period (hard ones at
// once), order kept.
func (c Crossed) Due(met []Threshold, now time.Time) []Threshold {
	var out []Threshold
	for _, t := range met {
		first, ok := c[t.String()]
		if !ok {
			first = now
		}
		if now.Sub(first) >= t.GracePeriod {
			out = append(out, t)
		}
	}
	return out
}

// State is what the decision carries from one pass to the next.
type State struct {
	Pressure Pressure
	Crossed  Crossed
}

// NewState returns the state of a kubelet that has seen nothing crossed yet.
func NewState() State { return State{Pressure: Pressure{}, Crossed: Crossed{}} }

// Decision is what one pass does.
type Decision struct {
	// Conditions are the pressure conditions that are on: every crossed threshold, hard or
	// soft, sets its condition at once.
	Conditions []v1.NodeConditionType
	// Threshold is the threshold acted on (nil: none is due); Reclaim says to reclaim disk
	// (unused images) before evicting.
	Threshold *Threshold
	Reclaim   bool
	// Waiting are the crossed soft thresholds whose grace period has not passed yet; Newly the
	// thresholds crossed in this pass that were not before.
	Waiting []Threshold
	Newly   []Threshold
}

// Decide is one pass over the observations at now: it updates st (conditions' last crossing,
// thresholds' first crossing) and picks the threshold to act on, the first due one (memory
// first, hard before soft).
func Decide(thresholds []Threshold, obs Observations, st State, now time.Time, transition time.Duration) Decision {
	met := Met(thresholds, obs)
	d := Decision{Conditions: st.Pressure.Update(met, now, transition), Newly: st.Crossed.Update(met, now)}
	due := st.Crossed.Due(met, now)
	for _, t := range met {
		if !containsThreshold(due, t) {
			d.Waiting = append(d.Waiting, t)
		}
	}
	if len(due) > 0 {
		t := due[0]
		d.Threshold = &t
		d.Reclaim = t.Signal.disk()
	}
	return d
}

func containsThreshold(ts []Threshold, t Threshold) bool {
	for _, x := range ts {
		if x.String() == t.String() {
			return true
		}
	}
	return false
}

// HardGrace is the termination grace, in seconds, of a pod evicted for a hard threshold
// (upstream's immediateEvictionGracePeriodSeconds).
const HardGrace = 1

// KillGrace is the termination grace in seconds for evicting pod for t. Hard: HardGrace. Soft:
// maxPodGrace (evictionMaxPodGracePeriod), lowered to the pod's terminationGracePeriodSeconds
// when that is shorter, as upstream since AllowOverwriteTerminationGracePeriodSeconds went
// away. Never below 1 s: upstream's pod workers raise any shorter grace to 1, so a
// maxPodGrace of 0 means 1 s, not the pod's own period.
func KillGrace(t Threshold, pod *v1.Pod, maxPodGrace int64) int64 {
	if t.Hard() {
		return HardGrace
	}
	g := maxPodGrace
	if tg := pod.Spec.TerminationGracePeriodSeconds; tg != nil && *tg < g {
		g = *tg
	}
	return max(g, 1)
}
