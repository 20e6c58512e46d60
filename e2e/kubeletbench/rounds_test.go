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

func TestMarkdownRounds(t *testing.T) {
	r := Results{
		Pods:           2,
		Runtime:        "containerd 1.6.20",
		BoundToRunning: msList(2100, 2200, 3400, 3500, 2600, 2700),
		CRIFloor:       msList(2000, 2100, 3300, 3300, 2400, 2500),
		Rounds: []Round{
			{FloorP50: 2000 * time.Millisecond, KubeletP50: 2100 * time.Millisecond, KubeletP99: 2200 * time.Millisecond},
			{FloorP50: 3300 * time.Millisecond, KubeletP50: 3400 * time.Millisecond, KubeletP99: 3500 * time.Millisecond},
			{FloorP50: 2400 * time.Millisecond, KubeletP50: 2600 * time.Millisecond, KubeletP99: 2700 * time.Millisecond},
		},
	}
	out := r.Markdown(DefaultTargets())
	for prefix, want := range map[string][2]string{
		"round 1: kubelet p50 2100 ms - CRI floor p50 2000 ms":             {"100 ms", ""},
		"round 3: kubelet p50 2600 ms - CRI floor p50 2400 ms":             {"200 ms", ""},
		"kubelet over the CRI floor, p50, median of 3 rounds' differences": {"100 ms", "pass"},
		"pod start, 2 at once: bound -> running, p99 (median of 3 rounds)": {"2700 ms", "**miss**"},
		"pod start, 2 at once: bound -> running, p50 (median of 3 rounds)": {"2600 ms", ""},
		"CRI floor, 2 at once: RunPodSandbox -> running, p50":              {"2400 ms", ""},
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
