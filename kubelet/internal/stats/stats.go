// Package stats builds the kubelet's /stats/summary: node CPU and memory from /proc, and pod and
// container CPU and memory from CRI ListContainerStats (containerd 1.6 has it; its
// ListPodSandboxStats is not relied on, pod figures are the sums of their containers).
package stats

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// Runtime is the part of the CRI runtime service stats need.
type Runtime interface {
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)
}

// Provider computes summaries. It starts nothing.
type Provider struct {
	rt       Runtime
	nodeName string
	procRoot string
	now      func() time.Time
}

// New returns a Provider reading /proc under procRoot ("/proc" on a node).
func New(rt Runtime, nodeName, procRoot string, now func() time.Time) *Provider {
	return &Provider{rt: rt, nodeName: nodeName, procRoot: procRoot, now: now}
}

// Container is one running container's usage with the identity that cAdvisor-style metrics
// label it by, which the summary API has no field for.
type Container struct {
	Pod statsapi.PodReference
	// Stats is the container's entry in its pod's summary.
	Stats statsapi.ContainerStats
	// ID is the CRI container ID; Image the image as the pod spec names it.
	ID, Image string
}

// Snapshot is one reading of the node and its running pods: everything /stats/summary,
// /metrics/resource and /metrics/cadvisor serve.
type Snapshot struct {
	Node       statsapi.NodeStats
	Pods       []statsapi.PodStats
	Containers []Container
}

// Summary returns the node's and its pods' current CPU and memory.
func (p *Provider) Summary(ctx context.Context) (*statsapi.Summary, error) {
	s, err := p.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return &statsapi.Summary{Node: s.Node, Pods: s.Pods}, nil
}

// Snapshot reads the node from /proc and the pods from CRI. A node figure that cannot be read
// is left out (nil); a failed CRI call fails the whole snapshot.
func (p *Provider) Snapshot(ctx context.Context) (*Snapshot, error) {
	now := metav1.NewTime(p.now())
	node := statsapi.NodeStats{NodeName: p.nodeName, StartTime: now}
	if cpu, err := p.nodeCPU(); err == nil {
		cpu.Time = now
		node.CPU = cpu
	}
	if mem, swap, err := p.nodeMemory(); err == nil {
		mem.Time = now
		node.Memory = mem
		if swap != nil {
			swap.Time = now
			node.Swap = swap
		}
	}
	if up, err := p.bootTime(); err == nil {
		node.StartTime = metav1.NewTime(up)
	}
	sbs, err := p.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
	if err != nil {
		return nil, fmt.Errorf("CRI ListPodSandbox: %w", err)
	}
	running, err := p.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		return nil, fmt.Errorf("CRI ListContainers: %w", err)
	}
	cs, err := p.rt.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
	if err != nil {
		return nil, fmt.Errorf("CRI ListContainerStats: %w", err)
	}
	pods, containers := podStats(sbs, running, cs)
	return &Snapshot{Node: node, Pods: pods, Containers: containers}, nil
}

// podStats groups the running containers' stats under their ready sandboxes (pure). Exited
// containers are left out, as upstream does: their usage is not current, and a restarted
// container would otherwise appear twice under one name.
func podStats(sbs []*runtimeapi.PodSandbox, running []*runtimeapi.Container, cs []*runtimeapi.ContainerStats) ([]statsapi.PodStats, []Container) {
	bySandbox := map[string]*statsapi.PodStats{}
	var order []string
	for _, sb := range sbs {
		uid := sb.Labels[runtime.LabelPodUID]
		if uid == "" {
			continue
		}
		bySandbox[sb.Id] = &statsapi.PodStats{
			PodRef:    statsapi.PodReference{Name: sb.Metadata.GetName(), Namespace: sb.Metadata.GetNamespace(), UID: uid},
			StartTime: metav1.NewTime(time.Unix(0, sb.CreatedAt)),
		}
		order = append(order, sb.Id)
	}
	runningByID := map[string]*runtimeapi.Container{}
	for _, c := range running {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			runningByID[c.Id] = c
		}
	}
	var containers []Container
	for _, c := range cs {
		attrs := c.GetAttributes()
		rc := runningByID[attrs.GetId()]
		if attrs == nil || rc == nil {
			continue
		}
		ps := bySandbox[rc.PodSandboxId]
		if ps == nil {
			ps = podOf(bySandbox, attrs.Labels)
		}
		if ps == nil {
			continue
		}
		// The container's creation is its start, as upstream's CRI stats provider reports it.
		st := statsapi.ContainerStats{Name: attrs.Metadata.GetName(), StartTime: metav1.NewTime(time.Unix(0, rc.CreatedAt))}
		if cpu := c.GetCpu(); cpu != nil {
			t := metav1.NewTime(time.Unix(0, cpu.Timestamp))
			st.CPU = &statsapi.CPUStats{Time: t, UsageNanoCores: value(cpu.UsageNanoCores), UsageCoreNanoSeconds: value(cpu.UsageCoreNanoSeconds)}
			ps.CPU = addCPU(ps.CPU, st.CPU)
		}
		if mem := c.GetMemory(); mem != nil {
			st.Memory = &statsapi.MemoryStats{
				Time: metav1.NewTime(time.Unix(0, mem.Timestamp)), WorkingSetBytes: value(mem.WorkingSetBytes),
				UsageBytes: value(mem.UsageBytes), RSSBytes: value(mem.RssBytes),
				PageFaults: value(mem.PageFaults), MajorPageFaults: value(mem.MajorPageFaults),
			}
			ps.Memory = addMemory(ps.Memory, st.Memory)
		}
		if sw := c.GetSwap(); sw != nil {
			st.Swap = &statsapi.SwapStats{Time: metav1.NewTime(time.Unix(0, sw.Timestamp)), SwapUsageBytes: value(sw.SwapUsageBytes), SwapAvailableBytes: value(sw.SwapAvailableBytes)}
			ps.Swap = addSwap(ps.Swap, st.Swap)
		}
		ps.Containers = append(ps.Containers, st)
		image := rc.GetImage().GetUserSpecifiedImage()
		if image == "" {
			image = rc.GetImage().GetImage()
		}
		containers = append(containers, Container{Pod: ps.PodRef, Stats: st, ID: rc.Id, Image: image})
	}
	out := make([]statsapi.PodStats, 0, len(order))
	for _, id := range order {
		ps := bySandbox[id]
		sort.Slice(ps.Containers, func(i, j int) bool { return ps.Containers[i].Name < ps.Containers[j].Name })
		out = append(out, *ps)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].PodRef, out[j].PodRef
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	sort.Slice(containers, func(i, j int) bool {
		a, b := containers[i], containers[j]
		return a.Pod.Namespace+"/"+a.Pod.Name+"/"+a.Stats.Name < b.Pod.Namespace+"/"+b.Pod.Name+"/"+b.Stats.Name
	})
	return out, containers
}

// podOf finds a container's pod by its pod UID label among the ready sandboxes.
func podOf(bySandbox map[string]*statsapi.PodStats, labels map[string]string) *statsapi.PodStats {
	uid := labels[runtime.LabelPodUID]
	if uid == "" {
		return nil
	}
	for _, ps := range bySandbox {
		if ps.PodRef.UID == uid {
			return ps
		}
	}
	return nil
}

func value(v *runtimeapi.UInt64Value) *uint64 {
	if v == nil {
		return nil
	}
	x := v.Value
	return &x
}

func add(a, b *uint64) *uint64 {
	switch {
	case b == nil:
		return a
	case a == nil:
		x := *b
		return &x
	}
	x := *a + *b
	return &x
}

func addCPU(sum, c *statsapi.CPUStats) *statsapi.CPUStats {
	if sum == nil {
		sum = &statsapi.CPUStats{Time: c.Time}
	}
	sum.UsageNanoCores = add(sum.UsageNanoCores, c.UsageNanoCores)
	sum.UsageCoreNanoSeconds = add(sum.UsageCoreNanoSeconds, c.UsageCoreNanoSeconds)
	return sum
}

func addSwap(sum, s *statsapi.SwapStats) *statsapi.SwapStats {
	if sum == nil {
		sum = &statsapi.SwapStats{Time: s.Time}
	}
	sum.SwapUsageBytes = add(sum.SwapUsageBytes, s.SwapUsageBytes)
	sum.SwapAvailableBytes = add(sum.SwapAvailableBytes, s.SwapAvailableBytes)
	return sum
}

func addMemory(sum, m *statsapi.MemoryStats) *statsapi.MemoryStats {
	if sum == nil {
		sum = &statsapi.MemoryStats{Time: m.Time}
	}
	sum.WorkingSetBytes = add(sum.WorkingSetBytes, m.WorkingSetBytes)
	sum.UsageBytes = add(sum.UsageBytes, m.UsageBytes)
	sum.RSSBytes = add(sum.RSSBytes, m.RSSBytes)
	sum.PageFaults = add(sum.PageFaults, m.PageFaults)
	sum.MajorPageFaults = add(sum.MajorPageFaults, m.MajorPageFaults)
	return sum
}

// userHZ is the kernel's USER_HZ, which /proc/stat counts in on every Linux architecture we run on.
const userHZ = 100

func (p *Provider) nodeCPU() (*statsapi.CPUStats, error) {
	f, err := os.Open(filepath.Join(p.procRoot, "stat"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 || fields[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
		var busy uint64
		for i, f := range fields[1:9] {
			if i == 3 || i == 4 {
				continue
			}
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/stat: %w", err)
			}
			busy += v
		}
		ns := busy * (uint64(time.Second) / userHZ)
		return &statsapi.CPUStats{UsageCoreNanoSeconds: &ns}, nil
	}
	return nil, fmt.Errorf("/proc/stat: no cpu line")
}

// nodeMemory reads /proc/meminfo; swap is nil when the kernel reports no swap fields.
func (p *Provider) nodeMemory() (*statsapi.MemoryStats, *statsapi.SwapStats, error) {
	f, err := os.Open(filepath.Join(p.procRoot, "meminfo"))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	kv := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err == nil {
			kv[k] = n * 1024
		}
	}
	total, ok1 := kv["MemTotal"]
	avail, ok2 := kv["MemAvailable"]
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("/proc/meminfo: no MemTotal/MemAvailable")
	}
	ws := total - avail
	used := total - kv["MemFree"]
	mem := &statsapi.MemoryStats{AvailableBytes: &avail, WorkingSetBytes: &ws, UsageBytes: &used}
	swapTotal, ok1 := kv["SwapTotal"]
	swapFree, ok2 := kv["SwapFree"]
	if !ok1 || !ok2 || swapFree > swapTotal {
		return mem, nil, nil
	}
	swapUsed := swapTotal - swapFree
	return mem, &statsapi.SwapStats{SwapUsageBytes: &swapUsed, SwapAvailableBytes: &swapFree}, nil
}

func (p *Provider) bootTime() (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(p.procRoot, "uptime"))
	if err != nil {
		return time.Time{}, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}, fmt.Errorf("/proc/uptime empty")
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/uptime: %w", err)
	}
	return p.now().Add(-time.Duration(s * float64(time.Second))), nil
}
