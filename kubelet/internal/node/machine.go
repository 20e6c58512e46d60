package node

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Machine is what the node reports about its hardware and OS.
type Machine struct {
	CPUs             int
	MemoryBytes      int64
	EphemeralBytes   int64
	MachineID        string
	SystemUUID       string
	BootID           string
	KernelVersion    string
	OSImage          string
	OperatingSystem  string
	Architecture     string
	PIDs             int64
	HugePages2MBytes int64
}

// ReadMachine reads the machine facts. root is "/" in production (a temp dir in tests);
// stateDir is the filesystem whose size is the node's ephemeral storage.
func ReadMachine(root, stateDir string) (Machine, error) {
	m := Machine{CPUs: goruntime.NumCPU(), OperatingSystem: goruntime.GOOS, Architecture: goruntime.GOARCH}
	mem, err := memTotal(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return m, err
	}
	m.MemoryBytes = mem
	m.MachineID = readTrim(filepath.Join(root, "etc/machine-id"))
	m.SystemUUID = readTrim(filepath.Join(root, "sys/class/dmi/id/product_uuid"))
	m.BootID = readTrim(filepath.Join(root, "proc/sys/kernel/random/boot_id"))
	m.OSImage = osImage(filepath.Join(root, "etc/os-release"))
	if n, err := strconv.ParseInt(readTrim(filepath.Join(root, "proc/sys/kernel/pid_max")), 10, 64); err == nil {
		m.PIDs = n
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		m.KernelVersion = unix.ByteSliceToString(uts.Release[:])
	}
	var st unix.Statfs_t
	if stateDir != "" && unix.Statfs(stateDir, &st) == nil {
		m.EphemeralBytes = int64(st.Blocks) * st.Bsize
	}
	return m, nil
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func memTotal(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read memory size: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s: %w", path, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal in %s", path)
}

func osImage(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return "Linux"
}

// Capacity is the node's capacity.
func (m Machine) Capacity(maxPods int) v1.ResourceList {
	c := v1.ResourceList{
		v1.ResourceCPU:              *resource.NewQuantity(int64(m.CPUs), resource.DecimalSI),
		v1.ResourceMemory:           *resource.NewQuantity(m.MemoryBytes, resource.BinarySI),
		v1.ResourcePods:             *resource.NewQuantity(int64(maxPods), resource.DecimalSI),
		v1.ResourceEphemeralStorage: *resource.NewQuantity(m.EphemeralBytes, resource.BinarySI),
		"hugepages-2Mi":             *resource.NewQuantity(0, resource.BinarySI),
		"hugepages-1Gi":             *resource.NewQuantity(0, resource.BinarySI),
	}
	return c
}

// Allocatable is capacity minus what is reserved for the system, the kubelet and the eviction
// thresholds (each a resource list, possibly empty).
func Allocatable(capacity v1.ResourceList, reserved ...v1.ResourceList) v1.ResourceList {
	out := v1.ResourceList{}
	for name, q := range capacity {
		v := q.DeepCopy()
		for _, r := range reserved {
			if rq, ok := r[name]; ok {
				v.Sub(rq)
			}
		}
		if v.Sign() < 0 {
			v = *resource.NewQuantity(0, q.Format)
		}
		out[name] = v
	}
	return out
}

// ParseResourceList parses a config map like {"cpu": "100m", "memory": "256Mi"}; field names the
// config field in errors.
func ParseResourceList(field string, m map[string]string) (v1.ResourceList, error) {
	out := v1.ResourceList{}
	for k, v := range m {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%s[%s]: %q is not a quantity: %w", field, k, v, err)
		}
		out[v1.ResourceName(k)] = q
	}
	return out, nil
}

// EvictionReserve turns evictionHard thresholds into reserved amounts: memory.available and
// nodefs.available with absolute values or percentages of capacity.
func EvictionReserve(evictionHard map[string]string, capacity v1.ResourceList) (v1.ResourceList, error) {
	out := v1.ResourceList{}
	for signal, res := range map[string]v1.ResourceName{"memory.available": v1.ResourceMemory, "nodefs.available": v1.ResourceEphemeralStorage} {
		v, ok := evictionHard[signal]
		if !ok {
			continue
		}
		if p, ok := strings.CutSuffix(v, "%"); ok {
			pct, err := strconv.ParseFloat(p, 64)
			if err != nil {
				return nil, fmt.Errorf("evictionHard[%s]: %q is not a percentage", signal, v)
			}
			c := capacity[res]
			out[res] = *resource.NewQuantity(int64(float64(c.Value())*pct/100), resource.BinarySI)
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("evictionHard[%s]: %q is not a quantity: %w", signal, v, err)
		}
		out[res] = q
	}
	return out, nil
}
