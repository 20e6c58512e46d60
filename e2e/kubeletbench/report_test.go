package kubeletbench

import (
	"strings"
	"testing"
	"time"
)

func TestMarkdownVerdicts(t *testing.T) {
	base := func() Results {
		return Results{
			Machine:        Machine{CPUs: 2, Model: "Test CPU", Kernel: "6.18", LoadAvg: "1.00 2.00 3.00"},
			Runtime:        "containerd 1.6.20",
			Pods:           3,
			BoundToRunning: msList(400, 500, 900),
			BoundToReady:   msList(450, 600, 1000),
			CRIFloor:       msList(300, 400, 500),
			PacedK:         2,
			CRIFloorPaced:  msList(250, 380, 700),
			Idle: []Usage{
				{Pods: 0, RSSBytes: 40 << 20, Cores: 0.001, Window: time.Minute},
				{Pods: 100, RSSBytes: 60 << 20, Cores: 0.01, Window: time.Minute},
			},
		}
	}
	tests := []struct {
		name   string
		mutate func(*Results)
		// rows maps a row's label prefix to the verdict it must carry.
		rows map[string]string
	}{
		{"all targets met", func(*Results) {}, map[string]string{
			"pod start, 3 at once: bound -> running, p99":        "pass",
			"kubelet over the CRI floor (all at once), p50":      "pass",
			"kubelet over the CRI floor paced like the kubelet ": "pass",
			"kubelet RSS (max VmRSS), 100 running pods":          "pass",
			"kubelet CPU (average over 1m0s), 100":               "pass",
		}},
		{"slow start", func(r *Results) { r.BoundToRunning = msList(400, 500, 1501) }, map[string]string{
			"pod start, 3 at once: bound -> running, p99": "**miss**",
		}},
		{"p99 exactly at the target passes", func(r *Results) { r.BoundToRunning = msList(400, 500, 1500) }, map[string]string{
			"pod start, 3 at once: bound -> running, p99": "pass",
		}},
		{"kubelet 151 ms over the floor", func(r *Results) { r.BoundToRunning = msList(400, 551, 900) }, map[string]string{
			"kubelet over the CRI floor (all at once), p50":      "**miss**",
			"kubelet over the CRI floor paced like the kubelet ": "**miss**",
		}},
		// Pacing brings the floor's median pod up sooner: the kubelet can pass against the
		// all-at-once floor and still miss against the floor paced like it.
		{"kubelet 151 ms over the paced floor only", func(r *Results) { r.CRIFloorPaced = msList(200, 349, 700) }, map[string]string{
			"kubelet over the CRI floor (all at once), p50":      "pass",
			"kubelet over the CRI floor paced like the kubelet ": "**miss**",
		}},
		{"150 ms over the paced floor passes", func(r *Results) { r.CRIFloorPaced = msList(200, 350, 700) }, map[string]string{
			"kubelet over the CRI floor paced like the kubelet ": "pass",
		}},
		{"fat kubelet", func(r *Results) { r.Idle[1].RSSBytes = 80<<20 + 1 }, map[string]string{
			"kubelet RSS (max VmRSS), 100 running pods": "**miss**",
		}},
		{"busy kubelet: the CPU target is strict", func(r *Results) { r.Idle[1].Cores = 0.05 }, map[string]string{
			"kubelet CPU (average over 1m0s), 100": "**miss**",
		}},
		{"no samples never pass", func(r *Results) { r.BoundToRunning = nil }, map[string]string{
			"pod start, 3 at once: bound -> running, p99":        "**miss**",
			"kubelet over the CRI floor (all at once), p50":      "**miss**",
			"kubelet over the CRI floor paced like the kubelet ": "**miss**",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mutate(&r)
			out := r.Markdown(DefaultTargets())
			for prefix, want := range tc.rows {
				row := findRow(out, prefix)
				if row == nil {
					t.Fatalf("no row starting %q in:\n%s", prefix, out)
				}
				if got := strings.TrimSpace(row[3]); got != want {
					t.Errorf("row %q: verdict %q, want %q", prefix, got, want)
				}
			}
		})
	}
}

func TestMarkdownFigures(t *testing.T) {
	r := Results{
		Machine:         Machine{CPUs: 2, Model: "Test CPU", Kernel: "6.18.1", LoadAvg: "1.50 2.00 3.00"},
		Runtime:         "containerd 1.6.20",
		LoadAvgEnd:      "4.00 5.00 6.00",
		CRISingle:       321 * time.Millisecond,
		Pods:            2,
		BoundToRunning:  msList(700, 1200),
		BoundToReady:    msList(800, 1300),
		CRIFloor:        msList(600, 650),
		RunningToReady:  msList(90, 40),
		BoundToCreated:  msList(500, 900),
		CRIFloorCreated: msList(450, 460),
		Idle:            []Usage{{Pods: 0, RSSBytes: 3 << 19, Cores: 0.0123, Window: 30 * time.Second}},
	}
	out := r.Markdown(DefaultTargets())
	for _, want := range []string{"2 x Test CPU", "kernel 6.18.1", "load average at start 1.50 2.00 3.00 (at end 4.00 5.00 6.00)", "containerd 1.6.20"} {
		if !strings.Contains(out, want) {
			t.Errorf("header lacks %q:\n%s", want, out)
		}
	}
	for prefix, value := range map[string]string{
		"pod start, 2 at once: bound -> running, p50":         "700 ms",
		"pod start, 2 at once: bound -> running, p99":         "1200 ms",
		"pod start, 2 at once: bound -> Ready (watch), p99":   "1300 ms",
		"CRI floor, 2 at once: RunPodSandbox -> running, p50": "600 ms",
		"kubelet over the CRI floor (all at once), p50":       "100 ms",
		"kubelet RSS (max VmRSS), 0 running pods":             "1.5 MiB",
		"kubelet CPU (average over 30s), 0 running pods":      "0.012 core",
	} {
		row := findRow(out, prefix)
		if row == nil {
			t.Fatalf("no row starting %q in:\n%s", prefix, out)
		}
		if got := strings.TrimSpace(row[1]); got != value {
			t.Errorf("row %q: value %q, want %q", prefix, got, value)
		}
	}
	// Targets at other pod counts are not judged.
	if row := findRow(out, "kubelet RSS (max VmRSS), 0 running pods"); strings.TrimSpace(row[3]) != "" {
		t.Errorf("0-pod RSS was judged: %q", row[3])
	}
}

// findRow returns the cells of the table row whose first cell starts with prefix.
func findRow(md, prefix string) []string {
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) == 4 && strings.HasPrefix(strings.TrimSpace(cells[0]), prefix) {
			return cells
		}
	}
	return nil
}

func TestMarkdownPacedFloor(t *testing.T) {
	r := Results{
		Pods:           3,
		Runtime:        "containerd 1.6.20",
		BoundToRunning: msList(1400, 1500, 2400),
		CRIFloor:       msList(2100, 2200, 2400),
		PacedK:         6,
		CRIFloorPaced:  msList(900, 1350, 2450),
	}
	out := r.Markdown(DefaultTargets())
	for prefix, want := range map[string][2]string{
		"CRI floor, 3 at once: RunPodSandbox -> running, p50":                  {"2200 ms", ""},
		"CRI floor, 3 paced 6 at a time: RunPodSandbox -> running, p50":        {"1350 ms", ""},
		"CRI floor, 3 paced 6 at a time: RunPodSandbox -> running, p99":        {"2450 ms", ""},
		"kubelet over the CRI floor (all at once), p50":                        {"-700 ms", "pass"},
		"kubelet over the CRI floor paced like the kubelet (6 at a time), p50": {"150 ms", "pass"},
		"pod start, 3 at once: bound -> running, p99 (1 round)":                {"2400 ms", "**miss**"},
	} {
		row := findRow(out, prefix)
		if row == nil {
			t.Fatalf("no row starting %q in:\n%s", prefix, out)
		}
		if got := [2]string{strings.TrimSpace(row[1]), strings.TrimSpace(row[3])}; got != want {
			t.Errorf("row %q: value, verdict %q, want %q", prefix, got, want)
		}
	}
	// Under the table, a sentence says what the paced floor is and why it is there.
	after := out[strings.LastIndex(out, "|\n")+2:]
	for _, want := range []string{"at most 6 start calls in flight", "maxParallelPodStarts 6", "like-for-like"} {
		if !strings.Contains(after, want) {
			t.Errorf("no %q under the table:\n%s", want, out)
		}
	}

	// Without a cap there is no paced floor: no rows, no sentence.
	r.PacedK, r.CRIFloorPaced = 0, nil
	out = r.Markdown(DefaultTargets())
	for _, absent := range []string{"paced", "like-for-like"} {
		if strings.Contains(out, absent) {
			t.Errorf("no paced floor, yet %q in:\n%s", absent, out)
		}
	}
}
