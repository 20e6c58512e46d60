package kubeletbench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of utime/stime in /proc/<pid>/stat. The kernel's ABI fixes USER_HZ at 100
// on every architecture Go targets, and reading it via sysconf would need cgo.
const userHZ = 100

// ProcSample is one reading of a process's resident memory and consumed CPU.
type ProcSample struct {
	RSSBytes int64
	// AnonBytes and FileBytes split RSS: heap, stacks and runtime (anon) against mapped file
	// pages, mostly the binary's own text (file). Shmem, the rest, is 0 for the kubelet.
	AnonBytes, FileBytes int64
	// CPUTicks is utime+stime in USER_HZ ticks.
	CPUTicks uint64
}

// ReadProc reads VmRSS from /proc/<pid>/status and utime+stime from /proc/<pid>/stat.
func ReadProc(pid int) (ProcSample, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("process %d: %w", pid, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("process %d: %w", pid, err)
	}
	rss, err := statusKB(string(status), "VmRSS")
	if err != nil {
		return ProcSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	anon, err := statusKB(string(status), "RssAnon")
	if err != nil {
		return ProcSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	file, err := statusKB(string(status), "RssFile")
	if err != nil {
		return ProcSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	ticks, err := parseCPUTicks(string(stat))
	if err != nil {
		return ProcSample{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return ProcSample{RSSBytes: rss, AnonBytes: anon, FileBytes: file, CPUTicks: ticks}, nil
}

// statusKB returns the value of a "<key>: <n> kB" line of a /proc/<pid>/status text in bytes.
func statusKB(status, key string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected value %q", key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s line (a zombie or kernel thread?)", key)
}

// parseCPUTicks returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
func parseCPUTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' closing the command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var sum uint64
	for _, k := range []int{14, 15} {
		v, err := strconv.ParseUint(f[k-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("field %d: %w", k, err)
		}
		sum += v
	}
	return sum, nil
}
