package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// benchLine matches `go test -bench` result lines of the IPVS sync benchmarks.
var benchLine = regexp.MustCompile(`^Benchmark(SyncFake|SyncKernel)/services=(\d+)/([a-z-]+?)(?:-\d+)?\s+\d+\s+(.*)$`)

type benchKey struct {
	where    string // "host" or "vm"
	kind     string // SyncFake or SyncKernel
	services int
	op       string
}

// parseBench reads result lines into metrics by unit ("ns/op", "cpu-ms/op", "rss-MiB").
func parseBench(r io.Reader, where string, into map[benchKey]map[string]float64) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		k := benchKey{where: where, kind: m[1], services: n, op: m[3]}
		metrics := map[string]float64{}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				metrics[f[i+1]] = v
			}
		}
		into[k] = metrics
	}
}

// writeTable prints the markdown table README shows.
func writeTable(w io.Writer, res map[benchKey]map[string]float64) {
	cell := func(k benchKey) string {
		m, ok := res[k]
		if !ok {
			return "-"
		}
		s := fmtMs(m["ns/op"] / 1e6)
		if c, ok := m["cpu-ms/op"]; ok && k.where == "host" {
			s += " (cpu " + fmtMs(c) + ")"
		}
		return s
	}
	fmt.Fprintln(w, "| services x 10 endpoints | sync | Go side, host (ms) | Go side in VM (ms) | real kernel in VM (ms) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, n := range []int{1000, 10000} {
		for _, op := range []string{"full", "resync", "one-change"} {
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s |\n", n, op,
				cell(benchKey{"host", "SyncFake", n, op}),
				cell(benchKey{"vm", "SyncFake", n, op}),
				cell(benchKey{"vm", "SyncKernel", n, op}))
		}
	}
	rss := func(k benchKey) string {
		if m, ok := res[k]; ok {
			return fmt.Sprintf("%.0f MiB", m["rss-MiB"])
		}
		return "-"
	}
	fmt.Fprintf(w, "\nPeak RSS during a 10k-service full sync: Go side on the host %s; real kernel run in the VM %s.\n",
		rss(benchKey{"host", "SyncFake", 10000, "full"}), rss(benchKey{"vm", "SyncKernel", 10000, "full"}))
	// The Go side's process also holds the in-memory fake kernel, which a
	// kube-proxy does not: say how much of its heap that is.
	if m, ok := res[benchKey{"host", "SyncFake", 10000, "full"}]; ok {
		if fake, ok := m["fake-MiB"]; ok {
			fmt.Fprintf(w, "Live Go heap of that Go-side process: plan %.0f MiB, backend %.0f MiB, in-memory fake kernel and firewall %.0f MiB (the RSS includes the fake and the GC's headroom over it).\n",
				m["plan-MiB"], m["backend-MiB"], fake)
		}
	}
	fmt.Fprintln(w, "full = first sync into an empty kernel; resync = periodic full sync with nothing changed; "+
		"one-change = partial sync after one service's endpoints changed. The VM is qemu TCG (no KVM): its figures are emulation-bound.")
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
