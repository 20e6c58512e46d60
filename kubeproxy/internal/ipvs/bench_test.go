package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
func vmRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
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

// benchSync measures, on whatever kernel newBackend returns: the first full
// sync into an empty kernel, a full resync with nothing changed, and a
// partial sync after one service's endpoints changed.
func benchSync(b *testing.B, n int, newBackend func(b *testing.B) *Backend) {
	ctx := context.Background()
	p := scalePlan(n, 10)
	// The last full-sync backend carries on into resync and one-change, so
	// the (slow, in the VM) kernel is filled only as often as needed.
	var be *Backend
	b.Run("full", func(sb *testing.B) {
		var cpu time.Duration
		for i := range sb.N {
			sb.StopTimer()
			if be != nil {
				if err := be.Cleanup(ctx); err != nil {
					sb.Fatal(err)
				}
			}
			be = newBackend(b) // cleanups on the outer b: be lives on after "full"
			sb.StartTimer()
			c0 := cpuTime()
			if err := be.Sync(ctx, p, nil, true); err != nil {
				sb.Fatal(err)
			}
			cpu += cpuTime() - c0
			if i == sb.N-1 {
				sb.StopTimer()
				sb.ReportMetric(float64(cpu.Microseconds())/1000/float64(sb.N), "cpu-ms/op")
				sb.ReportMetric(vmRSS(), "rss-MiB")
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
			benchSync(b, n, func(b *testing.B) *Backend {
				be, err := NewWithKernel(Config{}, zap.NewNop(), NewFake(), NewFakeFirewall())
				if err != nil {
					b.Fatal(err)
				}
				return be
			})
		})
	}
}
