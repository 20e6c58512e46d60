package eviction

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// NodeObserver reads the eviction signals from the machine.
type NodeObserver struct {
	// RootDir is the kubelet's root directory: its filesystem is nodefs.
	RootDir string
	// ProcRoot is /proc; CgroupRoot is /sys/fs/cgroup (tests point them at temp dirs).
	ProcRoot, CgroupRoot string
	// MemoryCapacity is the node's memory capacity in bytes.
	MemoryCapacity int64
	// ImageFs returns the image filesystem's mount point (CRI ImageFsInfo); nil or an error
	// leaves the imagefs signals out.
	ImageFs func(ctx context.Context) (string, error)
}

// Observe reads every signal it can; the error names the signals it could not read.
func (o NodeObserver) Observe(ctx context.Context) (Observations, error) {
	obs := Observations{}
	var problems []string
	if avail, err := o.memoryAvailable(); err == nil {
		obs[MemoryAvailable] = Observation{Available: avail, Capacity: o.MemoryCapacity}
	} else {
		problems = append(problems, fmt.Sprintf("%s: %v", MemoryAvailable, err))
	}
	if err := statfsSignals(o.RootDir, NodeFsAvailable, NodeFsInodesFree, obs); err != nil {
		problems = append(problems, err.Error())
	}
	if o.ImageFs != nil {
		mp, err := o.ImageFs(ctx)
		if err == nil {
			err = statfsSignals(mp, ImageFsAvailable, ImageFsInodesFree, obs)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("imagefs: %v", err))
		}
	}
	if avail, limit, err := o.pidAvailable(); err == nil {
		obs[PIDAvailable] = Observation{Available: avail, Capacity: limit}
	} else {
		problems = append(problems, fmt.Sprintf("%s: %v", PIDAvailable, err))
	}
	if len(problems) > 0 {
		return obs, fmt.Errorf("eviction signals not read: %s", strings.Join(problems, "; "))
	}
	return obs, nil
}

func statfsSignals(path string, bytesSig, inodesSig Signal, obs Observations) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	obs[bytesSig] = Observation{Available: int64(st.Bavail) * int64(st.Bsize), Capacity: int64(st.Blocks) * int64(st.Bsize)}
	if st.Files > 0 {
		obs[inodesSig] = Observation{Available: int64(st.Ffree), Capacity: int64(st.Files)}
	}
	return nil
}

// memoryAvailable is upstream's memory.available: capacity minus the root cgroup's working set
// (usage minus inactive file pages). Without a v1 memory controller (cgroup v2 has no root
// usage file) the same figures come from /proc/meminfo.
func (o NodeObserver) memoryAvailable() (int64, error) {
	var usage, inactive int64
	v1 := filepath.Join(o.CgroupRoot, "memory")
	if b, err := os.ReadFile(filepath.Join(v1, "memory.usage_in_bytes")); err == nil {
		usage, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", filepath.Join(v1, "memory.usage_in_bytes"), err)
		}
		stat, err := readKV(filepath.Join(v1, "memory.stat"), 1)
		if err != nil {
			return 0, err
		}
		inactive = stat["total_inactive_file"]
	} else {
		mi, err := readKV(filepath.Join(o.ProcRoot, "meminfo"), 1024)
		if err != nil {
			return 0, err
		}
		total, ok := mi["MemTotal:"]
		if !ok {
			return 0, fmt.Errorf("%s: no MemTotal", filepath.Join(o.ProcRoot, "meminfo"))
		}
		usage = total - mi["MemFree:"]
		inactive = mi["Inactive(file):"]
	}
	return MemoryAvailableFrom(o.MemoryCapacity, usage, inactive), nil
}

// MemoryAvailableFrom computes memory.available from capacity, usage and inactive file bytes.
func MemoryAvailableFrom(capacity, usage, inactiveFile int64) int64 {
	ws := usage - inactiveFile
	if ws < 0 {
		ws = 0
	}
	return capacity - ws
}

// readKV reads "key value [kB]" lines, multiplying values by unit.
func readKV(path string, unit int64) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if v, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
			out[fields[0]] = v * unit
		}
	}
	return out, sc.Err()
}

// pidAvailable is the smaller of kernel.pid_max and kernel.threads-max minus the tasks that
// exist (the fourth field of /proc/loadavg counts them all, unlike sysinfo's 16-bit count).
func (o NodeObserver) pidAvailable() (avail, limit int64, err error) {
	limit = -1
	for _, f := range []string{"sys/kernel/pid_max", "sys/kernel/threads-max"} {
		b, err := os.ReadFile(filepath.Join(o.ProcRoot, f))
		if err != nil {
			continue
		}
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && (limit < 0 || v < limit) {
			limit = v
		}
	}
	if limit < 0 {
		return 0, 0, fmt.Errorf("no pid_max or threads-max under %s", o.ProcRoot)
	}
	b, err := os.ReadFile(filepath.Join(o.ProcRoot, "loadavg"))
	if err != nil {
		return 0, 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) < 4 {
		return 0, 0, fmt.Errorf("/proc/loadavg: %q has too few fields", strings.TrimSpace(string(b)))
	}
	_, total, ok := strings.Cut(fields[3], "/")
	n, err := strconv.ParseInt(total, 10, 64)
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("/proc/loadavg: %q is not running/total", fields[3])
	}
	return limit - n, limit, nil
}

// ContainerStats lists container usage (the CRI runtime service).
type ContainerStats interface {
	ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)
}

// PodUsages pairs the pods with their containers' summed stats (pure).
func PodUsages(pods []*v1.Pod, stats []*runtimeapi.ContainerStats) []PodUsage {
	out := make([]PodUsage, len(pods))
	byUID := map[string]*PodUsage{}
	for i, p := range pods {
		out[i] = PodUsage{Pod: p}
		byUID[string(p.UID)] = &out[i]
	}
	for _, s := range stats {
		labels := s.GetAttributes().GetLabels()
		u := byUID[labels[runtime.LabelPodUID]]
		if u == nil {
			continue
		}
		name := labels[runtime.LabelContainerName]
		mem := int64(s.GetMemory().GetWorkingSetBytes().GetValue())
		disk := int64(s.GetWritableLayer().GetUsedBytes().GetValue())
		u.HasStats = true
		u.Memory += mem
		u.Disk += disk
		if u.Containers == nil {
			u.Containers = map[string]ContainerUsage{}
		}
		c := u.Containers[name]
		c.Memory += mem
		c.Disk += disk
		u.Containers[name] = c
	}
	return out
}
