package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/kubeproxy/internal/gcpolicy"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"go.uber.org/zap"
)

// scalePlan builds n ClusterIP+NodePort services with eps endpoints each.
func scalePlan(n, eps int) *plan.Plan {
	p := &plan.Plan{Family: plan.IPv4, Services: make(map[plan.ServicePortName]*plan.Service, n),
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.50.1")}, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
	for i := range n {
		s := scaleService(i, eps, 0)
		p.Services[s.Name] = s
	}
	return p
}

func scaleService(i, eps, gen int) *plan.Service {
	s := &plan.Service{
		Name:      plan.ServicePortName{Namespace: "bench", Name: fmt.Sprintf("svc-%d", i), Port: "http", Protocol: plan.TCP},
		ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
		Port:      80,
		NodePort:  uint16(30000 + i%2768),
	}
	if i >= 2768 {
		s.NodePort = 0 // the node-port range holds 2768 ports
	}
	for j := range eps {
		s.ClusterEndpoints = append(s.ClusterEndpoints, plan.Endpoint{
			IP: netip.AddrFrom4([4]byte{10, 244, byte(i >> 4), byte((i&15)<<4 | (j+gen)&15)}), Port: 8080, Ready: true, Serving: true})
	}
	s.ExternalEndpoints = s.ClusterEndpoints
	s.HasEndpoints = eps > 0
	return s
}

// vmRSS returns the process's resident set size in MiB.
func vmRSS() float64 { return procStatusMiB("VmRSS:") }

// procStatusMiB returns a kB field of /proc/self/status in MiB.
func procStatusMiB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// says more about the sync's cost than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// liveHeap is the Go heap in use after a full collection, in bytes.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// benchSync measures, on whatever kernel newBackend returns: the first full
// sync into an empty kernel, a full resync with nothing changed, and a
// partial sync after one service's endpoints changed.
//
// It runs with kube-proxy's default GC policy (gcpolicy), like the binary.
// Memory, in the last full sync: rss-MiB is the whole benchmark process's
// peak resident set during that sync (its resident set after it where the
// high-water mark cannot be reset) (test binary, the plan, the backend, and the
// in-memory kernel when there is one, with the Go heap's GC headroom over
// all of them). The live Go heap is split into what a kube-proxy holds,
// plan-MiB (the plan, which the proxier keeps between syncs) and
// backend-MiB (what the backend keeps), and fake-MiB, the in-memory
// kernel's and firewall's own state, which a real kube-proxy does not
// have (newBackend's second result measures it; nil on a real kernel).
func benchSync(b *testing.B, n int, newBackend func(b *testing.B) (*Backend, func() uint64)) {
	ctx := context.Background()
	// kube-proxy's GC policy, as the binary applies it (a set GOGC wins).
	var cfg proxyv1alpha1.KubeProxyConfiguration
	proxyv1alpha1.SetDefaults(&cfg)
	gcpolicy.Apply(int(*cfg.GCPercent), os.Getenv)
	heap0 := liveHeap()
	p := scalePlan(n, 10)
	planHeap := liveHeap() - heap0
	// The last full-sync backend carries on into resync and one-change, so
	// the (slow, in the VM) kernel is filled only as often as needed.
	var be *Backend
	var fakeHeap func() uint64
	b.Run("full", func(sb *testing.B) {
		var cpu time.Duration
		for i := range sb.N {
			sb.StopTimer()
			if be != nil {
				if err := be.Cleanup(ctx); err != nil {
					sb.Fatal(err)
				}
			}
			// The peak RSS is this sync's own: the previous backend and
			// kernel are collected and the high-water mark reset first.
			be, fakeHeap = nil, nil
			runtime.GC()
			debug.FreeOSMemory()
			peakReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
			be, fakeHeap = newBackend(b) // cleanups on the outer b: be lives on after "full"
			sb.StartTimer()
			c0 := cpuTime()
			if err := be.Sync(ctx, p, nil, true); err != nil {
				sb.Fatal(err)
			}
			cpu += cpuTime() - c0
			if i == sb.N-1 {
				sb.StopTimer()
				sb.ReportMetric(float64(cpu.Microseconds())/1000/float64(sb.N), "cpu-ms/op")
				rss := vmRSS()
				if peakReset {
					rss = procStatusMiB("VmHWM:")
				}
				sb.ReportMetric(rss, "rss-MiB")
				all := liveHeap()
				var fake uint64
				if fakeHeap != nil {
					fake = fakeHeap()
				}
				sb.ReportMetric(mib(planHeap), "plan-MiB")
				sb.ReportMetric(mib(all-heap0-planHeap-fake), "backend-MiB")
				sb.ReportMetric(mib(fake), "fake-MiB")
			}
		}
	})
	if be == nil {
		return
	}
	b.Cleanup(func() { be.Cleanup(ctx) })
	b.Run("resync", func(b *testing.B) {
		c0 := cpuTime()
		for range b.N {
			if err := be.Sync(ctx, p, nil, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-c0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
	b.Run("one-change", func(b *testing.B) {
		name := scaleService(n/2, 10, 0).Name
		changed := map[plan.ServicePortName]struct{}{name: {}}
		c0 := cpuTime()
		for i := range b.N {
			p.Services[name] = scaleService(n/2, 10, i+1)
			if err := be.Sync(ctx, p, changed, false); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-c0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
}

// BenchmarkSyncFake is the Go side: plan -> diff -> calls against the
// in-memory kernel.
func BenchmarkSyncFake(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			benchSync(b, n, func(b *testing.B) (*Backend, func() uint64) {
				k, fw := NewFake(), NewFakeFirewall()
				be, err := NewWithKernel(Config{}, zap.NewNop(), k, fw)
				if err != nil {
					b.Fatal(err)
				}
				return be, func() uint64 { return fakeHeap(k, fw) }
			})
		})
	}
}

// fakeHeap measures the live heap the fakes hold, as the growth of the
// heap while an identical copy of them is built through their own methods
// (their state cannot be set aside: whatever keeps it to put it back keeps
// it live).
func fakeHeap(k *Fake, fw *FakeFirewall) uint64 {
	before := liveHeap()
	k2, fw2 := NewFake(), NewFakeFirewall()
	vss, _ := k.VirtualServers()
	for _, vs := range vss {
		_ = k2.AddVirtualServer(vs)
		rss, _ := k.RealServers(vs.VSKey)
		for _, rs := range rss {
			_ = k2.AddRealServer(vs.VSKey, rs)
		}
	}
	for dev := range k.devices {
		_ = k2.EnsureDevice(dev)
		addrs, _ := k.DeviceAddresses(dev)
		for _, a := range addrs {
			_ = k2.AddDeviceAddress(dev, a)
		}
	}
	rs := fw.rs
	for key := range fw.elems {
		rs.Elements = append(rs.Elements, key.elem())
	}
	_ = fw2.Replace(&rs)
	rs.Elements = nil
	vss = nil
	size := liveHeap() - before
	runtime.KeepAlive(k2)
	runtime.KeepAlive(fw2)
	return size
}
