package kubeletbench

import (
	"bufio"
	"os"
	"runtime"
	"strings"
)

// Machine names the machine a run measured on; this one is shared, so the load at the start
// is part of the result.
type Machine struct {
	CPUs    int
	Model   string
	Kernel  string
	LoadAvg string // the first three fields of /proc/loadavg
}

// ReadMachine reads the machine's facts from /proc. Missing facts read as "unknown": they label
// the output and must not stop a benchmark.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Model: "unknown", Kernel: "unknown", LoadAvg: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if s := parseModelName(string(b)); s != "" {
			m.Model = s
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// parseModelName returns the first "model name" of a /proc/cpuinfo text.
func parseModelName(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
