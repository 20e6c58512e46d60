package kubeletbench

import (
	"fmt"
	"strings"
	"time"
)

// Results is everything one run measured.
type Results struct {
	Machine Machine
	// Runtime is the container runtime's name and version, as CRI reports them.
	Runtime string
	// Pods is the size of the start-up burst.
	Pods int
	// Rounds summarise each floor burst + kubelet burst pair, in order. The sample slices below
	// pool all rounds.
	Rounds []Round
	// BoundToRunning and BoundToReady hold one sample per pod of the burst through the kubelet:
	// from the pod's creation (it is created already bound) to its last container's CRI
	// StartedAt, and to the Ready condition first seen true through a watch.
	BoundToRunning []time.Duration
	BoundToReady   []time.Duration
	// RunningToReady is, per pod, Ready seen in the API minus its last container's start: the
	// kubelet's status path (relist, status build, patch) plus the watch.
	RunningToReady []time.Duration
	// CRIFloor holds one sample per pod of the same burst issued straight over CRI: from just
	// before RunPodSandbox to the container's StartedAt.
	CRIFloor []time.Duration
	// PacedK is the kubelet's cap on pod-starting CRI calls in this run (maxParallelPodStarts),
	// and the paced floor's; 0 means no cap and no paced floor.
	PacedK int
	// CRIFloorPaced holds one sample per pod of the same burst over CRI with at most PacedK start
	// calls in flight, granted in pod order: from the burst's start (waiting counts) to the
	// container's StartedAt.
	CRIFloorPaced []time.Duration
	// BoundToCreated and CRIFloorCreated end at the container's CRI CreatedAt instead: they
	// split each start into the part before CreateContainer (for the kubelet: admission,
	// volumes, pod cgroup, RunPodSandbox) and the part after.
	BoundToCreated  []time.Duration
	CRIFloorCreated []time.Duration
	// CreateSpread is how far apart the burst's Create calls returned (first to last): the
	// kubelet sees the pods that much less "at once" than the CRI floor's pods. The widest of
	// the rounds.
	CreateSpread time.Duration
	// CRISingle is one pod alone over CRI, after a warm-up pod: the floor without contention.
	CRISingle time.Duration
	// LoadAvgEnd is the machine's load average when the measurements ended.
	LoadAvgEnd string
	// Idle holds the kubelet's resource use with no pods and with the idle pods running.
	Idle []Usage
}

// Usage is the kubelet's resource use over an idle window.
type Usage struct {
	Pods int
	// RSSBytes is the highest VmRSS sampled in the window; AnonBytes and FileBytes split it.
	RSSBytes, AnonBytes, FileBytes int64
	// Cores is (utime+stime) over the window divided by its wall time.
	Cores  float64
	Window time.Duration
}

// Targets are the figures the kubelet is held to.
type Targets struct {
	// P99BoundToRunning bounds the burst's p99 bound -> running.
	P99BoundToRunning time.Duration
	// P50OverFloor bounds the kubelet's p50 bound -> running minus the CRI floor's p50, for the
	// all-at-once floor and the paced one alike.
	P50OverFloor time.Duration
	// IdlePods is the pod count at which RSS and CPU are held to MaxRSSBytes and MaxCores.
	IdlePods    int
	MaxRSSBytes int64
	MaxCores    float64
}

// DefaultTargets are the project's targets for a 30-pod burst and 100 idle pods.
func DefaultTargets() Targets {
	return Targets{
		P99BoundToRunning: 1500 * time.Millisecond,
		P50OverFloor:      150 * time.Millisecond,
		IdlePods:          100,
		MaxRSSBytes:       80 << 20,
		MaxCores:          0.05,
	}
}

// rounds returns the per-round figures; results without any (made by hand) count as one round
// of the pooled samples.
func (r Results) rounds() []Round {
	if len(r.Rounds) > 0 {
		return r.Rounds
	}
	return []Round{newRound(r.BoundToRunning, r.CRIFloor, r.CRIFloorPaced)}
}

// Overhead is what the kubelet adds over the all-at-once CRI floor at p50: the median over
// rounds of each round's kubelet p50 minus its floor p50.
func (r Results) Overhead() time.Duration {
	return MedianOver(r.rounds())
}

// paced reports whether the run had a paced floor.
func (r Results) paced() bool { return r.PacedK > 0 && len(r.CRIFloorPaced) > 0 }

// OverheadPaced is what the kubelet adds over the floor paced like it, at p50: the median over
// rounds of each round's kubelet p50 minus its paced floor p50.
func (r Results) OverheadPaced() time.Duration {
	return MedianOverPaced(r.rounds())
}

// Markdown renders the results as a markdown table with a pass/miss column for each target.
func (r Results) Markdown(t Targets) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %d x %s, kernel %s, load average at start %s", m.CPUs, m.Model, m.Kernel, m.LoadAvg)
	if r.LoadAvgEnd != "" {
		fmt.Fprintf(&b, " (at end %s)", r.LoadAvgEnd)
	}
	fmt.Fprintf(&b, "; runtime %s.\n", r.Runtime)
	if len(r.Rounds) > 1 {
		floors := "a CRI floor burst"
		if r.paced() {
			floors = fmt.Sprintf("a CRI floor burst all at once, one paced %d at a time,", r.PacedK)
		}
		fmt.Fprintf(&b, "%d rounds, each %s then a kubelet burst of %d pods; latency rows not marked as medians pool every round's samples.\n", len(r.Rounds), floors, r.Pods)
	}
	b.WriteString("\n")
	b.WriteString("| measure | value | target | result |\n")
	b.WriteString("| --- | ---: | --- | --- |\n")
	row := func(what, value, target, result string) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", what, value, target, result)
	}
	n := r.Pods
	rounds := r.rounds()
	of := fmt.Sprintf("median of %d rounds", len(rounds))
	if len(rounds) == 1 {
		of = "1 round"
	}
	row(fmt.Sprintf("pod start, %d at once: bound -> running, p50 (%s)", n, of), ms(MedianKubeletP50(rounds)), "", "")
	p99 := MedianKubeletP99(rounds)
	row(fmt.Sprintf("pod start, %d at once: bound -> running, p99 (%s)", n, of), ms(p99), "<= "+ms(t.P99BoundToRunning), verdict(len(r.BoundToRunning) > 0 && p99 <= t.P99BoundToRunning))
	row(fmt.Sprintf("pod start, %d at once: bound -> Ready (watch), p50", n), ms(Percentile(r.BoundToReady, 50)), "", "")
	row(fmt.Sprintf("pod start, %d at once: bound -> Ready (watch), p99", n), ms(Percentile(r.BoundToReady, 99)), "", "")
	if len(r.RunningToReady) > 0 {
		row(fmt.Sprintf("pod start, %d at once: running -> Ready (watch), p50", n), ms(Percentile(r.RunningToReady, 50)), "", "")
		row(fmt.Sprintf("pod start, %d at once: running -> Ready (watch), p99", n), ms(Percentile(r.RunningToReady, 99)), "", "")
	}
	row(fmt.Sprintf("CRI floor, %d at once: RunPodSandbox -> running, p50", n), ms(Percentile(r.CRIFloor, 50)), "", "")
	row(fmt.Sprintf("CRI floor, %d at once: RunPodSandbox -> running, p99", n), ms(Percentile(r.CRIFloor, 99)), "", "")
	if r.paced() {
		row(fmt.Sprintf("CRI floor, %d paced %d at a time: RunPodSandbox -> running, p50", n, r.PacedK), ms(Percentile(r.CRIFloorPaced, 50)), "", "")
		row(fmt.Sprintf("CRI floor, %d paced %d at a time: RunPodSandbox -> running, p99", n, r.PacedK), ms(Percentile(r.CRIFloorPaced, 99)), "", "")
	}
	if len(r.BoundToCreated) > 0 && len(r.CRIFloorCreated) > 0 {
		row(fmt.Sprintf("split: kubelet bound -> container created (CRI), p50 of %d", n), ms(Percentile(r.BoundToCreated, 50)), "", "")
		row(fmt.Sprintf("split: CRI floor RunPodSandbox -> container created, p50 of %d", n), ms(Percentile(r.CRIFloorCreated, 50)), "", "")
	}
	if r.CreateSpread > 0 {
		row(fmt.Sprintf("API creates of the %d pods returned within", n), ms(r.CreateSpread), "", "")
	}
	if r.CRISingle > 0 {
		row("CRI floor, 1 pod alone: RunPodSandbox -> running", ms(r.CRISingle), "", "")
	}
	if len(r.Rounds) > 1 {
		for i, rd := range r.Rounds {
			row(fmt.Sprintf("round %d: kubelet p50 %s - CRI floor (all at once) p50 %s", i+1, ms(rd.KubeletP50), ms(rd.FloorP50)), ms(rd.Over()), "", "")
			if r.paced() {
				row(fmt.Sprintf("round %d: kubelet p50 %s - CRI floor (paced) p50 %s", i+1, ms(rd.KubeletP50), ms(rd.PacedFloorP50)), ms(rd.OverPaced()), "", "")
			}
		}
	}
	ofDiffs := ""
	if len(rounds) > 1 {
		ofDiffs = fmt.Sprintf(", median of %d rounds' differences", len(rounds))
	}
	over := r.Overhead()
	row("kubelet over the CRI floor (all at once), p50"+ofDiffs, ms(over), "<= "+ms(t.P50OverFloor), verdict(len(r.BoundToRunning) > 0 && len(r.CRIFloor) > 0 && over <= t.P50OverFloor))
	if r.paced() {
		overPaced := r.OverheadPaced()
		row(fmt.Sprintf("kubelet over the CRI floor paced like the kubelet (%d at a time), p50", r.PacedK)+ofDiffs, ms(overPaced), "<= "+ms(t.P50OverFloor),
			verdict(len(r.BoundToRunning) > 0 && overPaced <= t.P50OverFloor))
	}
	for _, u := range r.Idle {
		rssTarget, cpuTarget, rssResult, cpuResult := "", "", "", ""
		if u.Pods == t.IdlePods {
			rssTarget, rssResult = "<= "+mib(t.MaxRSSBytes), verdict(u.RSSBytes <= t.MaxRSSBytes)
			cpuTarget, cpuResult = fmt.Sprintf("< %.3f core", t.MaxCores), verdict(u.Cores < t.MaxCores)
		}
		rss := mib(u.RSSBytes)
		if u.AnonBytes > 0 || u.FileBytes > 0 {
			rss += fmt.Sprintf(" (anon %s, file %s)", mib(u.AnonBytes), mib(u.FileBytes))
		}
		row(fmt.Sprintf("kubelet RSS (max VmRSS), %d running pods", u.Pods), rss, rssTarget, rssResult)
		row(fmt.Sprintf("kubelet CPU (average over %s), %d running pods", u.Window.Round(time.Second), u.Pods), fmt.Sprintf("%.3f core", u.Cores), cpuTarget, cpuResult)
	}
	if r.paced() {
		fmt.Fprintf(&b, "\nThe paced CRI floor issues the same %d pods over CRI with at most %d start calls in flight "+
			"(each pod's RunPodSandbox, then its CreateContainer+StartContainer, each waiting for a slot that goes to the lowest-numbered waiting pod; "+
			"its latencies count from the burst's start, waiting included). "+
			"It is there because the kubelet paces its start calls the same way (maxParallelPodStarts %d), which makes early pods finish early: "+
			"the like-for-like kubelet overhead is the one over the paced floor, while the all-at-once floor shows the runtime's raw burst.\n", n, r.PacedK, r.PacedK)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "**miss**"
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func mib(b int64) string {
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
