package kubeletbench

import (
	"context"
	"fmt"
	"slices"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
)

// Round is one floor burst (all at once), one paced floor burst (K start calls at a time, as
// the kubelet paces them) and one kubelet burst of the same size. Pairing them keeps the drift
// of this shared machine (the floor alone moves by a second between runs) out of each
// difference; the headline takes the median of the differences.
type Round struct {
	// FloorP50 is the CRI floor burst's p50 RunPodSandbox -> running.
	FloorP50 time.Duration
	// PacedFloorP50 is the paced CRI floor burst's p50 burst start -> running; 0 when the round
	// had no paced floor.
	PacedFloorP50 time.Duration
	// KubeletP50 and KubeletP99 are the kubelet burst's p50 and p99 bound -> running.
	KubeletP50, KubeletP99 time.Duration
}

// newRound summarises one round's samples; paced is empty when there was no paced floor.
func newRound(kubelet, floor, paced []time.Duration) Round {
	return Round{
		FloorP50: Percentile(floor, 50), PacedFloorP50: Percentile(paced, 50),
		KubeletP50: Percentile(kubelet, 50), KubeletP99: Percentile(kubelet, 99),
	}
}

// Over is what the kubelet added over the all-at-once floor in this round, at p50.
func (r Round) Over() time.Duration { return r.KubeletP50 - r.FloorP50 }

// OverPaced is what the kubelet added over the paced floor in this round, at p50.
func (r Round) OverPaced() time.Duration { return r.KubeletP50 - r.PacedFloorP50 }

// Median returns the median of ds (the mean of the middle two for an even count), 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2
}

// MedianOver is the median over rounds of each round's kubelet p50 minus its floor p50.
func MedianOver(rounds []Round) time.Duration {
	ds := make([]time.Duration, len(rounds))
	for i, r := range rounds {
		ds[i] = r.Over()
	}
	return Median(ds)
}

// MedianOverPaced is the median over rounds of each round's kubelet p50 minus its paced floor
// p50.
func MedianOverPaced(rounds []Round) time.Duration {
	ds := make([]time.Duration, len(rounds))
	for i, r := range rounds {
		ds[i] = r.OverPaced()
	}
	return Median(ds)
}

// MedianKubeletP99 is the median of the rounds' kubelet p99s.
func MedianKubeletP99(rounds []Round) time.Duration {
	ds := make([]time.Duration, len(rounds))
	for i, r := range rounds {
		ds[i] = r.KubeletP99
	}
	return Median(ds)
}

// MedianKubeletP50 is the median of the rounds' kubelet p50s.
func MedianKubeletP50(rounds []Round) time.Duration {
	ds := make([]time.Duration, len(rounds))
	for i, r := range rounds {
		ds[i] = r.KubeletP50
	}
	return Median(ds)
}

// waitSandboxesGone waits until the runtime holds no sandbox of any of the pods: the kubelet
// has torn them down, so the next floor burst does not share the machine with their teardown.
func waitSandboxesGone(ctx context.Context, rs internalapi.RuntimeService, pods []created, timeout time.Duration, alive func() error) error {
	want := map[string]bool{}
	for _, p := range pods {
		want[string(p.uid)] = true
	}
	return poll(ctx, timeout, "sandboxes of the deleted burst removed", func() error {
		if err := alive(); err != nil {
			return backoffStop{err}
		}
		sbs, err := rs.ListPodSandbox(ctx, nil)
		if err != nil {
			return fmt.Errorf("CRI ListPodSandbox: %w", err)
		}
		left := 0
		for _, sb := range sbs {
			if want[sb.GetLabels()["io.kubernetes.pod.uid"]] {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d sandboxes left", left)
		}
		return nil
	})
}
