// Package machine reads the node's machine facts that /spec serves: the cheap, static subset of
// cAdvisor's MachineInfo, under cAdvisor's JSON field names so its readers keep working.
package machine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Info is the subset of cAdvisor's info/v1 MachineInfo this kubelet fills. Fields it cannot
// read are left at their zero value, as cAdvisor does.
type Info struct {
	Timestamp       time.Time `json:"timestamp"`
	CPUVendorID     string    `json:"vendor_id"`
	NumCores        int       `json:"num_cores"`
	CPUFrequencyKHz uint64    `json:"cpu_frequency_khz"`
	MemoryCapacity  uint64    `json:"memory_capacity"`
	SwapCapacity    uint64    `json:"swap_capacity"`
	MachineID       string    `json:"machine_id"`
	SystemUUID      string    `json:"system_uuid"`
	BootID          string    `json:"boot_id"`
}

// Reader reads Info from a filesystem root ("/" on a node; a directory tree in tests).
type Reader struct {
	root string
	now  func() time.Time
}

// New returns a Reader of the files under root.
func New(root string, now func() time.Time) *Reader {
	return &Reader{root: root, now: now}
}

func (r *Reader) path(p string) string { return filepath.Join(r.root, p) }

// readTrimmed returns the file's content without surrounding space; "" when it does not exist
// or is not readable (product_uuid is root-only; containers may lack machine-id).
func (r *Reader) readTrimmed(paths ...string) string {
	for _, p := range paths {
		b, err := os.ReadFile(r.path(p))
		if err == nil {
			if s := strings.TrimSpace(string(b)); s != "" {
				return s
			}
		}
	}
	return ""
}

// Info reads the machine's facts. Only a missing or unreadable /proc/cpuinfo or /proc/meminfo
// is an error: without them the answer would be wrong, not just incomplete.
func (r *Reader) Info() (Info, error) {
	info := Info{Timestamp: r.now()}
	cpu, err := os.ReadFile(r.path("/proc/cpuinfo"))
	if err != nil {
		return Info{}, fmt.Errorf("machine info: %w", err)
	}
	var mhz float64
	sc := bufio.NewScanner(bytes.NewReader(cpu))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			info.NumCores++
		case "vendor_id":
			if info.CPUVendorID == "" {
				info.CPUVendorID = v
			}
		case "cpu MHz":
			if f, err := strconv.ParseFloat(v, 64); err == nil && f > mhz {
				mhz = f
			}
		}
	}
	// As cAdvisor: the maximum from cpufreq when the kernel has it, else /proc/cpuinfo's
	// current clock (VMs usually have no cpufreq).
	if khz, err := strconv.ParseUint(r.readTrimmed("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"), 10, 64); err == nil {
		info.CPUFrequencyKHz = khz
	} else {
		info.CPUFrequencyKHz = uint64(mhz * 1000)
	}
	mem, err := os.ReadFile(r.path("/proc/meminfo"))
	if err != nil {
		return Info{}, fmt.Errorf("machine info: %w", err)
	}
	if info.MemoryCapacity, err = meminfoBytes(mem, "MemTotal"); err != nil {
		return Info{}, fmt.Errorf("machine info: %s: %w", r.path("/proc/meminfo"), err)
	}
	if info.SwapCapacity, err = meminfoBytes(mem, "SwapTotal"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("machine info: %s: %w", r.path("/proc/meminfo"), err)
	}
	info.MachineID = r.readTrimmed("/etc/machine-id", "/var/lib/dbus/machine-id")
	info.SystemUUID = r.readTrimmed("/sys/class/dmi/id/product_uuid")
	info.BootID = r.readTrimmed("/proc/sys/kernel/random/boot_id")
	return info, nil
}

// meminfoBytes returns the named /proc/meminfo field in bytes (the file says kB, meaning KiB).
func meminfoBytes(meminfo []byte, field string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, fmt.Errorf("%s: no value", field)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a number", field, f[0])
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: %w", field, fs.ErrNotExist)
}
