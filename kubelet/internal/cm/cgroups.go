package cm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Cgroups manages the kubepods hierarchy with the cgroupfs driver: kubepods for guaranteed pods,
// kubepods/burstable and kubepods/besteffort for the others, and one pod<uid> cgroup per pod
// holding the pod's limits. Containers go below it (the runtime makes those from CgroupParent).
type Cgroups struct {
	fsRoot string // /sys/fs/cgroup
	prefix string // cgroupRoot from the config, "/" by default
	v2     bool
	// v1 controllers the kubelet creates pod cgroups in (the runtime adds the rest).
	controllers []string
	// podPidsLimit is podPidsLimit from the config: pids.max of every pod cgroup; <= 0 unlimited.
	podPidsLimit int64
}

// NewCgroups detects the cgroup version under fsRoot (v2 when cgroup.controllers is at its top).
// podPidsLimit caps the processes of each pod (-1: unlimited).
func NewCgroups(fsRoot, cgroupRoot string, podPidsLimit int64) (*Cgroups, error) {
	if cgroupRoot == "" {
		cgroupRoot = "/"
	}
	c := &Cgroups{fsRoot: fsRoot, prefix: cgroupRoot, podPidsLimit: podPidsLimit}
	if _, err := os.Stat(filepath.Join(fsRoot, "cgroup.controllers")); err == nil {
		c.v2 = true
		return c, nil
	}
	for _, ctl := range []string{"cpu", "cpuacct", "memory", "pids"} {
		if _, err := os.Stat(filepath.Join(fsRoot, ctl)); err == nil {
			c.controllers = append(c.controllers, ctl)
		}
	}
	if len(c.controllers) == 0 {
		return nil, fmt.Errorf("no cgroup v2 hierarchy and no v1 cpu/memory controllers under %s", fsRoot)
	}
	return c, nil
}

// V2 reports whether the unified hierarchy is in use.
func (c *Cgroups) V2() bool { return c.v2 }

// PodCgroup returns the pod's cgroup path (relative to each hierarchy), the CgroupParent for CRI.
func (c *Cgroups) PodCgroup(pod *v1.Pod) string {
	return filepath.Join(c.qosDir(QOSClass(pod)), "pod"+string(pod.UID))
}

func (c *Cgroups) qosDir(q v1.PodQOSClass) string {
	base := filepath.Join(c.prefix, "kubepods")
	switch q {
	case v1.PodQOSBurstable:
		return filepath.Join(base, "burstable")
	case v1.PodQOSBestEffort:
		return filepath.Join(base, "besteffort")
	}
	return base
}

// PodLimits are the values written to a pod cgroup.
type PodLimits struct {
	CPUShares   int64
	CPUQuota    int64 // -1: unlimited
	MemoryLimit int64 // -1: unlimited
}

// Limits computes a pod cgroup's limits: shares from the summed cpu requests; quota and memory
// limit only when every container sets that limit (one unlimited container makes the pod
// unlimited), as upstream does.
func Limits(pod *v1.Pod) PodLimits {
	var cpuReq, cpuLim, memLim int64
	cpuAll, memAll := true, true
	for _, c := range pod.Spec.Containers {
		cpuReq += c.Resources.Requests.Cpu().MilliValue()
		if q, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
			cpuLim += q.MilliValue()
		} else {
			cpuAll = false
		}
		if q, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
			memLim += q.Value()
		} else {
			memAll = false
		}
	}
	l := PodLimits{CPUShares: MilliCPUToShares(cpuReq), CPUQuota: -1, MemoryLimit: -1}
	if QOSClass(pod) == v1.PodQOSBestEffort {
		return l
	}
	if cpuAll && cpuLim > 0 {
		l.CPUQuota = MilliCPUToQuota(cpuLim)
	}
	if memAll && memLim > 0 {
		l.MemoryLimit = memLim
	}
	return l
}

// EnsurePod creates the pod's cgroup (and the QoS parents) and writes its limits. It returns the
// CgroupParent to give the runtime.
func (c *Cgroups) EnsurePod(pod *v1.Pod) (string, error) {
	return c.write(pod, Limits(pod), true)
}

// SetPodLimits writes limits to the pod's existing cgroup: an in-place resize sets the pod
// level before its containers when growing and after them when shrinking.
func (c *Cgroups) SetPodLimits(pod *v1.Pod, l PodLimits) error {
	_, err := c.write(pod, l, false)
	return err
}

// GrowLimits is the larger of two pod limits in every resource (-1, unlimited, is the largest):
// the pod cgroup during a resize, so it holds its containers' old and new limits alike.
func GrowLimits(a, b PodLimits) PodLimits {
	larger := func(x, y int64) int64 {
		if x < 0 || y < 0 {
			return -1
		}
		return max(x, y)
	}
	return PodLimits{CPUShares: max(a.CPUShares, b.CPUShares), CPUQuota: larger(a.CPUQuota, b.CPUQuota), MemoryLimit: larger(a.MemoryLimit, b.MemoryLimit)}
}

func (c *Cgroups) write(pod *v1.Pod, l PodLimits, create bool) (string, error) {
	rel := c.PodCgroup(pod)
	if c.v2 {
		if create {
			if err := c.ensureV2(rel); err != nil {
				return "", err
			}
		}
		dir := filepath.Join(c.fsRoot, rel)
		quota := "max"
		if l.CPUQuota > 0 {
			quota = strconv.FormatInt(l.CPUQuota, 10)
		}
		mem := "max"
		if l.MemoryLimit > 0 {
			mem = strconv.FormatInt(l.MemoryLimit, 10)
		}
		files := map[string]string{
			"cpu.weight": strconv.FormatInt(SharesToWeight(l.CPUShares), 10),
			"cpu.max":    quota + " " + strconv.Itoa(CPUPeriod),
			"memory.max": mem,
		}
		if create {
			if err := c.addPidsMax(dir, files); err != nil {
				return "", err
			}
		}
		return rel, writeAll(dir, files)
	}
	for _, ctl := range c.controllers {
		dir := filepath.Join(c.fsRoot, ctl, rel)
		if create {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", fmt.Errorf("create cgroup %s: %w", dir, err)
			}
		}
		files := map[string]string{}
		switch ctl {
		case "cpu":
			files["cpu.shares"] = strconv.FormatInt(l.CPUShares, 10)
			files["cpu.cfs_period_us"] = strconv.Itoa(CPUPeriod)
			files["cpu.cfs_quota_us"] = strconv.FormatInt(l.CPUQuota, 10)
		case "memory":
			files["memory.limit_in_bytes"] = strconv.FormatInt(l.MemoryLimit, 10)
		case "pids":
			if !create {
				continue
			}
			if err := c.addPidsMax(dir, files); err != nil {
				return "", err
			}
		}
		if err := writeAll(dir, files); err != nil {
			return "", err
		}
	}
	return rel, nil
}

// addPidsMax adds pids.max (podPidsLimit) to the files of a pod cgroup. Without the pids
// controller an unlimited pod needs nothing, but a limit that cannot be applied is an error.
func (c *Cgroups) addPidsMax(dir string, files map[string]string) error {
	if _, err := os.Stat(filepath.Join(dir, "pids.max")); err != nil && c.podPidsLimit <= 0 {
		return nil
	}
	files["pids.max"] = PidsMax(c.podPidsLimit)
	return nil
}

// PidsMax is the pids.max value of a pod cgroup for podPidsLimit ("max" when unlimited).
func PidsMax(podPidsLimit int64) string {
	if podPidsLimit <= 0 {
		return "max"
	}
	return strconv.FormatInt(podPidsLimit, 10)
}

// ensureV2 creates each level of rel and enables the controllers the level below needs.
func (c *Cgroups) ensureV2(rel string) error {
	parts := strings.Split(strings.Trim(rel, "/"), "/")
	cur := c.fsRoot
	for _, p := range parts {
		// Delegate cpu, memory and pids from cur to its children, then make the child.
		if err := enableControllers(cur); err != nil {
			return err
		}
		cur = filepath.Join(cur, p)
		if err := os.MkdirAll(cur, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", cur, err)
		}
	}
	return nil
}

func enableControllers(dir string) error {
	path := filepath.Join(dir, "cgroup.subtree_control")
	cur, _ := os.ReadFile(path)
	want := []string{}
	for _, ctl := range []string{"cpu", "memory", "pids"} {
		if !strings.Contains(" "+string(cur)+" ", " "+ctl+" ") && !strings.Contains(string(cur), ctl) {
			want = append(want, "+"+ctl)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if err := os.WriteFile(path, []byte(strings.Join(want, " ")), 0o644); err != nil {
		return fmt.Errorf("enable controllers in %s: %w", dir, err)
	}
	return nil
}

// SharesToWeight converts cgroup v1 cpu.shares to v2 cpu.weight (the mapping runc uses).
func SharesToWeight(shares int64) int64 {
	if shares <= 0 {
		return 100
	}
	return 1 + ((shares-2)*9999)/262142
}

func writeAll(dir string, files map[string]string) error {
	for name, val := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
			if name == "pids.max" {
				return fmt.Errorf("write %s=%s (podPidsLimit; is the pids controller enabled?): %w", p, val, err)
			}
			return fmt.Errorf("write %s=%s: %w", p, val, err)
		}
	}
	return nil
}

// RemovePod removes the pod's cgroup in every QoS class and every hierarchy (with whatever the
// runtime left below it). A cgroup that still holds processes is an error; retry later.
func (c *Cgroups) RemovePod(uid types.UID) error {
	var roots []string
	if c.v2 {
		roots = []string{c.fsRoot}
	} else {
		entries, err := os.ReadDir(c.fsRoot)
		if err != nil {
			return fmt.Errorf("read %s: %w", c.fsRoot, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				roots = append(roots, filepath.Join(c.fsRoot, e.Name()))
			}
		}
	}
	var errs []error
	for _, root := range roots {
		for _, q := range []v1.PodQOSClass{v1.PodQOSGuaranteed, v1.PodQOSBurstable, v1.PodQOSBestEffort} {
			dir := filepath.Join(root, c.qosDir(q), "pod"+string(uid))
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			if err := rmdirTree(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// PodCgroupExists reports whether any hierarchy still has the pod's cgroup.
func (c *Cgroups) PodCgroupExists(uid types.UID) bool {
	found := false
	_ = filepath.WalkDir(c.fsRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if d.Name() == "pod"+string(uid) {
			found = true
			return filepath.SkipAll
		}
		if strings.Count(strings.TrimPrefix(path, c.fsRoot), "/") > 5 {
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

// rmdirTree removes a cgroup directory depth-first. On cgroupfs, rmdir of an empty cgroup works
// although its control files are listed; elsewhere (tests) the files are removed first.
func rmdirTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	err = unix.Rmdir(dir)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		for _, e := range entries {
			if !e.IsDir() {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		err = unix.Rmdir(dir)
	}
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}
