package nft

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/kubeproxy/internal/gcpolicy"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// scaleResult is what one worker process measures at one scale.
type scaleResult struct {
	Services, Endpoints int
	// Full sync into an empty table: wall time and the process's CPU time
	// (user+system; nf_tables runs in our sendmsg, so kernel work counts).
	FullWall, FullCPU time.Duration
	// One service's endpoint change, Sync only (median).
	OneWall, OneCPU time.Duration
	// Network programming latency: endpoint change -> plan -> rules
	// committed in the kernel.
	LatP50, LatP99 time.Duration
	// Peak RSS of the worker process during the syncs, the RSS before
	// them (the services, endpoints and plan the harness holds, like an
	// informer cache would), and Go heap in use after the run.
	HWMKiB, BaseKiB, HeapMiB int64
	// GC is the garbage-collector setting the worker ran with: the
	// kube-proxy policy (gcpolicy.Apply with the config default), or the
	// environment's GOGC/GOMEMLIMIT when set.
	GC string
	// GCCPU is the CPU time the garbage collector spent over the whole
	// run, TotalCPU the process's.
	GCCPU, TotalCPU time.Duration
	// Go heap the backend keeps after the run, beyond the harness's.
	BackendHeapMiB int64
	// A periodic full resync of the programmed table with nothing to fix:
	// it reads every element back. Wall, CPU and its own peak RSS.
	ResyncWall, ResyncCPU time.Duration
	ResyncHWMKiB          int64
	FullRuns, Changes     int
}

const scaleWorkerEnv = "KUBENODE_NFT_SCALE_WORKER"

// TestScaleReport runs one worker process per scale (so each peak RSS is
// its own) and prints the table the README shows. make bench-nft runs it.
func TestScaleReport(t *testing.T) {
	if os.Getenv("KUBENODE_NFT_BENCH") == "" {
		t.Skip("KUBENODE_NFT_BENCH not set: run through make bench-nft")
	}
	needRoot(t)
	load, _ := os.ReadFile("/proc/loadavg")
	var results []scaleResult
	// The rows without env run with kube-proxy's GC policy, applied as the
	// binary applies it; the last two show Go's default GC and a memory
	// limit for comparison.
	runs := []struct {
		n   int
		env []string
	}{{1000, nil}, {10000, nil}, {30000, nil}, {30000, []string{"GOGC=100"}}, {30000, []string{"GOGC=100", "GOMEMLIMIT=128MiB"}}}
	for _, run := range runs {
		n := run.n
		cmd := exec.Command(os.Args[0], "-test.run", "^TestScaleWorker$", "-test.count", "1", "-test.timeout", "20m")
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(append(env, fmt.Sprintf("%s=%d", scaleWorkerEnv, n)), run.env...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("worker for %d services: %v\n%s", n, err, out)
		}
		var r scaleResult
		found := false
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatal(err)
				}
				found = true
			}
		}
		if !found {
			t.Fatalf("worker for %d services printed no result:\n%s", n, out)
		}
		results = append(results, r)
	}
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	release := utsString(uts.Release[:])
	fmt.Printf("\n### nftables backend (kubeproxy/internal/nft), %d-core VM, kernel %s, load average at start %s\n\n",
		runtime.NumCPU(), release, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Println("| services x endpoints, GC | full sync wall (cpu) | one-service change wall (cpu) | programming latency p50 / p99 | peak RSS (harness alone) | Go heap kept by the backend | periodic resync wall (cpu), peak RSS | GC cpu (est., idle marking excluded) of the run's cpu |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		fmt.Printf("| %d x %d, %s | %v (%v) | %v (%v) | %v / %v | %d MiB (%d MiB) | %d MiB | %v (%v), %d MiB | %v of %v |\n",
			r.Services, r.Endpoints, r.GC, rnd(r.FullWall), rnd(r.FullCPU), rnd(r.OneWall), rnd(r.OneCPU),
			rnd(r.LatP50), rnd(r.LatP99), r.HWMKiB/1024, r.BaseKiB/1024, r.BackendHeapMiB,
			rnd(r.ResyncWall), rnd(r.ResyncCPU), r.ResyncHWMKiB/1024, rnd(r.GCCPU), rnd(r.TotalCPU))
	}
	fmt.Println()
	fmt.Println("Wall times depend on what else runs on the machine; cpu is this process's user+system time (nf_tables runs inside our sendmsg, so the kernel's work is in it).")
	fmt.Println("Peak RSS is the worker process's high-water mark over three full syncs and 200 one-service changes; it holds what a kube-proxy holds (the service and endpoints maps, the latest plan, the backend) plus the test binary. The resync's peak is measured on its own.")
	fmt.Printf("gcPercent=%d is kube-proxy's default GC policy (config gcPercent, applied by gcpolicy.Apply as the binary does); GOGC=100 is Go's default.\n", proxyv1alpha1.DefaultGCPercent)
	fmt.Println()
	fmt.Println("Targets at 10k: full sync <= 2 s, one-service change <= 20 ms, p99 latency <= 100 ms; RSS <= 150 MiB at 30k (with kube-proxy's default GC policy).")
	for _, r := range results {
		var miss []string
		if r.Services == 10000 {
			if r.FullWall > 2*time.Second {
				miss = append(miss, fmt.Sprintf("full sync %v > 2s", rnd(r.FullWall)))
			}
			if r.OneWall > 20*time.Millisecond {
				miss = append(miss, fmt.Sprintf("one-service change %v > 20ms", rnd(r.OneWall)))
			}
			if r.LatP99 > 100*time.Millisecond {
				miss = append(miss, fmt.Sprintf("p99 latency %v > 100ms", rnd(r.LatP99)))
			}
		}
		if r.Services == 30000 && r.GC == policyLabel() && r.HWMKiB > 150*1024 {
			miss = append(miss, fmt.Sprintf("peak RSS %d MiB > 150 MiB", r.HWMKiB/1024))
		}
		if len(miss) > 0 {
			fmt.Printf("MISSED at %d services: %s\n", r.Services, strings.Join(miss, "; "))
		}
	}
}

func utsString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func rnd(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestScaleWorker measures one scale inside a throwaway netns.
func TestScaleWorker(t *testing.T) {
	v := os.Getenv(scaleWorkerEnv)
	if v == "" {
		t.Skip(scaleWorkerEnv + " not set: started by TestScaleReport (make bench-nft)")
	}
	needRoot(t)
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	const eps = 10
	r := scaleResult{Services: n, Endpoints: eps, FullRuns: 3, Changes: 200}
	// kube-proxy's GC policy, exactly as the binary applies it: the
	// config's default through gcpolicy.Apply, which leaves a set GOGC.
	var cfg proxyv1alpha1.KubeProxyConfiguration
	proxyv1alpha1.SetDefaults(&cfg)
	r.GC = policyLabel()
	if a := gcpolicy.Apply(int(*cfg.GCPercent), os.Getenv); a.Env != "" {
		r.GC = "GOGC=" + a.Env
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		r.GC += ", GOMEMLIMIT=" + v
	}
	gc0, cpu0 := gcCPU(), cpuTime()
	w := newScaleWorld(n, eps)
	p := w.plan(nil)
	ns := newNS(t)
	ctx := context.Background()
	newBackend := func() *Backend {
		b, err := New(Config{Family: plan.IPv4, NetNSFd: int(ns)}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The peak RSS counts from here: what the harness holds is the
	// baseline.
	runtime.GC()
	debug.FreeOSMemory()
	r.BaseKiB = procStatus(t, "VmRSS:")
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}

	var walls, cpus []time.Duration
	var b *Backend
	for i := range r.FullRuns {
		if b != nil {
			if err := b.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
		}
		b = newBackend()
		runtime.GC()
		c0, t0 := cpuTime(), time.Now()
		if err := b.Sync(ctx, p, nil, true); err != nil {
			t.Fatalf("full sync %d: %v", i, err)
		}
		walls, cpus = append(walls, time.Since(t0)), append(cpus, cpuTime()-c0)
	}
	r.FullWall, r.FullCPU = median(walls), median(cpus)

	walls, cpus = nil, nil
	var lats []time.Duration
	for i := range r.Changes {
		start := time.Now()
		ch := w.change(i*7919, i+1)
		np := w.plan(ch)
		c0, t0 := cpuTime(), time.Now()
		if err := b.Sync(ctx, np, ch, false); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		walls, cpus = append(walls, time.Since(t0)), append(cpus, cpuTime()-c0)
		lats = append(lats, time.Since(start))
	}
	r.OneWall, r.OneCPU = median(walls), median(cpus)
	slices.Sort(lats)
	r.LatP50, r.LatP99 = lats[len(lats)/2], lats[len(lats)*99/100]

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	r.HeapMiB = int64(ms.HeapInuse >> 20)
	r.BackendHeapMiB = (int64(ms.HeapInuse) - int64(ms0.HeapInuse)) >> 20
	r.HWMKiB = procStatus(t, "VmHWM:")

	// A periodic resync of the same plan: reads everything back, fixes
	// nothing. Its peak is measured on its own.
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}
	c0, t0 := cpuTime(), time.Now()
	if err := b.Sync(ctx, w.prev, nil, true); err != nil {
		t.Fatalf("resync: %v", err)
	}
	r.ResyncWall, r.ResyncCPU = time.Since(t0), cpuTime()-c0
	r.ResyncHWMKiB = procStatus(t, "VmHWM:")
	if err := b.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	r.GCCPU, r.TotalCPU = gcCPU()-gc0, cpuTime()-cpu0
	out, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", out)
}

// policyLabel names kube-proxy's default GC policy in the table.
func policyLabel() string {
	return fmt.Sprintf("gcPercent=%d (kube-proxy default)", proxyv1alpha1.DefaultGCPercent)
}

// gcCPU is the CPU time the garbage collector has taken from the program
// so far: mark assists, dedicated mark workers and pauses, as the runtime
// estimates them (marking on otherwise idle processors is left out).
func gcCPU() time.Duration {
	s := []metrics.Sample{
		{Name: "/cpu/classes/gc/mark/assist:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/dedicated:cpu-seconds"},
		{Name: "/cpu/classes/gc/pause:cpu-seconds"},
	}
	metrics.Read(s)
	var sec float64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindFloat64 {
			sec += v.Value.Float64()
		}
	}
	return time.Duration(sec * float64(time.Second))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func procStatus(t *testing.T, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}
