package cm

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGrowLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		a, b, want PodLimits
	}{
		{"larger of each", PodLimits{CPUShares: 102, CPUQuota: 20000, MemoryLimit: 200}, PodLimits{CPUShares: 51, CPUQuota: 40000, MemoryLimit: 100}, PodLimits{CPUShares: 102, CPUQuota: 40000, MemoryLimit: 200}},
		{"unlimited wins", PodLimits{CPUShares: 2, CPUQuota: -1, MemoryLimit: 100}, PodLimits{CPUShares: 2, CPUQuota: 40000, MemoryLimit: -1}, PodLimits{CPUShares: 2, CPUQuota: -1, MemoryLimit: -1}},
		{"equal", PodLimits{CPUShares: 2, CPUQuota: 1000, MemoryLimit: 1}, PodLimits{CPUShares: 2, CPUQuota: 1000, MemoryLimit: 1}, PodLimits{CPUShares: 2, CPUQuota: 1000, MemoryLimit: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GrowLimits(tc.a, tc.b); got != tc.want {
				t.Fatalf("GrowLimits = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSetPodLimits(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		name := "v1"
		if v2 {
			name = "v2"
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if v2 {
				if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids"), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, ctl := range []string{"cpu", "memory", "pids"} {
					if err := os.MkdirAll(filepath.Join(root, ctl), 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			c, err := NewCgroups(root, "/", 100)
			if err != nil {
				t.Fatal(err)
			}
			p := resPod("r", "100m", "200m", "64Mi", "128Mi")
			rel, err := c.EnsurePod(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SetPodLimits(p, PodLimits{CPUShares: 512, CPUQuota: 40000, MemoryLimit: 201326592}); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"cpu/cpu.shares": "512", "cpu/cpu.cfs_quota_us": "40000", "memory/memory.limit_in_bytes": "201326592", "pids/pids.max": "100"}
			if v2 {
				want = map[string]string{"cpu.max": "40000 100000", "memory.max": "201326592", "pids.max": "100"}
			}
			for f, v := range want {
				dir, file := filepath.Split(f)
				if got := read(t, filepath.Join(root, dir, rel, file)); got != v {
					t.Errorf("%s = %s, want %s", f, got, v)
				}
			}
			// A pod cgroup that is gone is an error, not created again by a resize.
			if err := c.RemovePod(p.UID); err != nil {
				t.Fatal(err)
			}
			if err := c.SetPodLimits(p, PodLimits{CPUShares: 2, CPUQuota: -1, MemoryLimit: -1}); err == nil {
				t.Error("SetPodLimits on a removed pod cgroup succeeded")
			}
		})
	}
}
