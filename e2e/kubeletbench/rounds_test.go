package kubeletbench

import (
	"strings"
	"testing"
	"time"
)

func TestMedianOver(t *testing.T) {
	ms := func(d int) time.Duration { return time.Duration(d) * time.Millisecond }
	round := func(floor, kubelet int) Round { return Round{FloorP50: ms(floor), KubeletP50: ms(kubelet)} }
	tests := []struct {
		name   string
		rounds []Round
		want   time.Duration
	}{
		{"no rounds", nil, 0},
		{"one round", []Round{round(2000, 2150)}, ms(150)},
		// The floor drifts by a second between rounds; each round's own floor is subtracted.
		{"drifting floor: median of the differences", []Round{round(2000, 2100), round(3300, 3500), round(2500, 2620)}, ms(120)},
		{"not the difference of the medians", []Round{round(2000, 2500), round(2600, 2650), round(3000, 3100)}, ms(100)},
		{"one outlier round does not move it", []Round{round(2000, 2100), round(2100, 4100), round(2200, 2290)}, ms(100)},
		{"even count: mean of the middle two", []Round{round(2000, 2100), round(2000, 2300), round(2000, 2050), round(2000, 2900)}, ms(200)},
		{"kubelet faster than its floor: negative", []Round{round(2500, 2400), round(2500, 2450), round(2500, 2700)}, ms(-50)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MedianOver(tc.rounds); got != tc.want {
				t.Errorf("MedianOver = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestMedianOverPaced(t *testing.T) {
	ms := func(d int) time.Duration { return time.Duration(d) * time.Millisecond }
	round := func(floor, paced, kubelet int) Round {
		return Round{FloorP50: ms(floor), PacedFloorP50: ms(paced), KubeletP50: ms(kubelet)}
	}
	tests := []struct {
		name            string
		rounds          []Round
		want, wantFloor time.Duration
	}{
		{"no rounds", nil, 0, 0},
		// Each round's own paced floor is subtracted, not its all-at-once floor.
		{"against the paced floor", []Round{round(2200, 1350, 1450)}, ms(100), ms(-750)},
		{"median of the differences", []Round{round(2200, 1300, 1500), round(3000, 2000, 2100), round(2400, 1400, 1900)}, ms(200), ms(-700)},
		{"even count: mean of the middle two", []Round{round(2000, 1000, 1100), round(2000, 1000, 1300), round(2000, 1000, 1000), round(2000, 1000, 1900)}, ms(200), ms(-800)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MedianOverPaced(tc.rounds); got != tc.want {
				t.Errorf("MedianOverPaced = %s, want %s", got, tc.want)
			}
			if got := MedianOver(tc.rounds); got != tc.wantFloor {
				t.Errorf("MedianOver = %s, want %s", got, tc.wantFloor)
			}
		})
	}
}

func TestMarkdownRounds(t *testing.T) {
	r := Results{
		Pods:           2,
		Runtime:        "containerd 1.6.20",
		BoundToRunning: msList(2100, 2200, 3400, 3500, 2600, 2700),
		CRIFloor:       msList(2000, 2100, 3300, 3300, 2400, 2500),
		PacedK:         6,
		CRIFloorPaced:  msList(1800, 2100, 3000, 3300, 2300, 2500),
		Rounds: []Round{
			{FloorP50: 2000 * time.Millisecond, PacedFloorP50: 1800 * time.Millisecond, KubeletP50: 2100 * time.Millisecond, KubeletP99: 2200 * time.Millisecond},
			{FloorP50: 3300 * time.Millisecond, PacedFloorP50: 3000 * time.Millisecond, KubeletP50: 3400 * time.Millisecond, KubeletP99: 3500 * time.Millisecond},
			{FloorP50: 2400 * time.Millisecond, PacedFloorP50: 2300 * time.Millisecond, KubeletP50: 2600 * time.Millisecond, KubeletP99: 2700 * time.Millisecond},
		},
	}
	out := r.Markdown(DefaultTargets())
	if want := "3 rounds, each a CRI floor burst all at once, one paced 6 at a time, then a kubelet burst of 2 pods"; !strings.Contains(out, want) {
		t.Errorf("header lacks %q:\n%s", want, out)
	}
	for prefix, want := range map[string][2]string{
		"round 1: kubelet p50 2100 ms - CRI floor (all at once) p50 2000 ms":                                    {"100 ms", ""},
		"round 3: kubelet p50 2600 ms - CRI floor (all at once) p50 2400 ms":                                    {"200 ms", ""},
		"round 1: kubelet p50 2100 ms - CRI floor (paced) p50 1800 ms":                                          {"300 ms", ""},
		"round 2: kubelet p50 3400 ms - CRI floor (paced) p50 3000 ms":                                          {"400 ms", ""},
		"round 3: kubelet p50 2600 ms - CRI floor (paced) p50 2300 ms":                                          {"300 ms", ""},
		"kubelet over the CRI floor (all at once), p50, median of 3 rounds' differences":                        {"100 ms", "pass"},
		"kubelet over the CRI floor paced like the kubelet (6 at a time), p50, median of 3 rounds' differences": {"300 ms", "**miss**"},
		"CRI floor, 2 paced 6 at a time: RunPodSandbox -> running, p50":                                         {"2300 ms", ""},
		"pod start, 2 at once: bound -> running, p99 (median of 3 rounds)":                                      {"2700 ms", "**miss**"},
		"pod start, 2 at once: bound -> running, p50 (median of 3 rounds)":                                      {"2600 ms", ""},
		"CRI floor, 2 at once: RunPodSandbox -> running, p50":                                                   {"2400 ms", ""},
	} {
		row := findRow(out, prefix)
		if row == nil {
			t.Fatalf("no row starting %q in:\n%s", prefix, out)
		}
		if got := [2]string{strings.TrimSpace(row[1]), strings.TrimSpace(row[3])}; got != want {
			t.Errorf("row %q: value, verdict %q, want %q", prefix, got, want)
		}
	}
}
