package cm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func resPod(uid string, reqCPU, limCPU, reqMem, limMem string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: types.UID("u-" + uid)}}
	c := v1.Container{Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{}, Limits: v1.ResourceList{}}}
	set := func(l v1.ResourceList, n v1.ResourceName, v string) {
		if v != "" {
			l[n] = resource.MustParse(v)
		}
	}
	set(c.Resources.Requests, v1.ResourceCPU, reqCPU)
	set(c.Resources.Limits, v1.ResourceCPU, limCPU)
	set(c.Resources.Requests, v1.ResourceMemory, reqMem)
	set(c.Resources.Limits, v1.ResourceMemory, limMem)
	p.Spec.Containers = []v1.Container{c}
	return p
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

func TestQOSClass(t *testing.T) {
	cases := []struct {
		name string
		pod  *v1.Pod
		want v1.PodQOSClass
	}{
		{"nothing set", resPod("a", "", "", "", ""), v1.PodQOSBestEffort},
		{"limits equal requests", resPod("a", "1", "1", "1Gi", "1Gi"), v1.PodQOSGuaranteed},
		{"limits only (requests default to them)", resPod("a", "", "1", "", "1Gi"), v1.PodQOSGuaranteed},
		{"request below limit", resPod("a", "500m", "1", "1Gi", "1Gi"), v1.PodQOSBurstable},
		{"memory only", resPod("a", "", "", "64Mi", ""), v1.PodQOSBurstable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := QOSClass(tc.pod); got != tc.want {
				t.Fatalf("QOS = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCgroupsV1(t *testing.T) {
	root := t.TempDir()
	for _, ctl := range []string{"cpu", "cpuacct", "memory", "pids", "freezer"} {
		if err := os.MkdirAll(filepath.Join(root, ctl), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, err := NewCgroups(root, "/", 321)
	if err != nil {
		t.Fatal(err)
	}
	if c.V2() {
		t.Fatal("v1 layout detected as v2")
	}
	cases := []struct {
		name                  string
		pod                   *v1.Pod
		wantDir               string
		wantShares, wantQuota string
		wantMem               string
	}{
		{"burstable with limits", resPod("b", "250m", "500m", "64Mi", "128Mi"), "kubepods/burstable/podu-b", "256", "50000", "134217728"},
		{"guaranteed", resPod("g", "1", "1", "1Gi", "1Gi"), "kubepods/podu-g", "1024", "100000", "1073741824"},
		{"best effort is unlimited", resPod("e", "", "", "", ""), "kubepods/besteffort/podu-e", "2", "-1", "-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent, err := c.EnsurePod(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if parent != "/"+tc.wantDir {
				t.Fatalf("parent = %s, want /%s", parent, tc.wantDir)
			}
			if got := read(t, filepath.Join(root, "cpu", tc.wantDir, "cpu.shares")); got != tc.wantShares {
				t.Errorf("cpu.shares = %s, want %s", got, tc.wantShares)
			}
			if got := read(t, filepath.Join(root, "cpu", tc.wantDir, "cpu.cfs_quota_us")); got != tc.wantQuota {
				t.Errorf("cpu.cfs_quota_us = %s, want %s", got, tc.wantQuota)
			}
			if got := read(t, filepath.Join(root, "memory", tc.wantDir, "memory.limit_in_bytes")); got != tc.wantMem {
				t.Errorf("memory.limit_in_bytes = %s, want %s", got, tc.wantMem)
			}
			if got := read(t, filepath.Join(root, "pids", tc.wantDir, "pids.max")); got != "321" {
				t.Errorf("pids.max = %s, want podPidsLimit 321", got)
			}
			// The runtime makes container cgroups below, in more controllers; removal takes all.
			if err := os.MkdirAll(filepath.Join(root, "freezer", tc.wantDir, "ctr1"), 0o755); err != nil {
				t.Fatal(err)
			}
			if !c.PodCgroupExists(tc.pod.UID) {
				t.Fatal("pod cgroup not found")
			}
			if err := c.RemovePod(tc.pod.UID); err != nil {
				t.Fatal(err)
			}
			if c.PodCgroupExists(tc.pod.UID) {
				t.Fatal("pod cgroup left behind")
			}
		})
	}
}

func TestCgroupsV2(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewCgroups(root, "/", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !c.V2() {
		t.Fatal("v2 layout not detected")
	}
	p := resPod("b", "250m", "500m", "64Mi", "128Mi")
	parent, err := c.EnsurePod(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, parent)
	if got := read(t, filepath.Join(dir, "cpu.max")); got != "50000 100000" {
		t.Errorf("cpu.max = %q", got)
	}
	if got := read(t, filepath.Join(dir, "memory.max")); got != "134217728" {
		t.Errorf("memory.max = %q", got)
	}
	if got := read(t, filepath.Join(dir, "pids.max")); got != "4096" {
		t.Errorf("pids.max = %q, want podPidsLimit 4096", got)
	}
	if got := read(t, filepath.Join(dir, "cpu.weight")); got != "10" {
		t.Errorf("cpu.weight = %q, want 10 (256 shares)", got)
	}
	if got := read(t, filepath.Join(root, "kubepods", "cgroup.subtree_control")); !strings.Contains(got, "+memory") {
		t.Errorf("controllers not delegated to kubepods children: %q", got)
	}
	if err := c.RemovePod(p.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("pod cgroup still there: %v", err)
	}
}

func TestPodPidsLimit(t *testing.T) {
	cases := []struct {
		name       string
		limit      int64
		pidsFile   bool // the kernel offers pids.max (the pids controller)
		want       string
		wantNoFile bool
	}{
		{"limit", 100, true, "100", false},
		{"unlimited resets an earlier limit", -1, true, "max", false},
		{"unlimited without the pids controller needs nothing", -1, false, "", true},
		{"limit is written", 50, false, "50", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids"), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := NewCgroups(root, "/", tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			p := resPod("p", "", "", "", "")
			dir := filepath.Join(root, c.PodCgroup(p))
			if tc.pidsFile {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte("7\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.EnsurePod(p); err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(filepath.Join(dir, "pids.max"))
			if tc.wantNoFile {
				if statErr == nil {
					t.Fatal("pids.max written without the pids controller")
				}
				return
			}
			if got := read(t, filepath.Join(dir, "pids.max")); got != tc.want {
				t.Fatalf("pids.max = %q, want %q", got, tc.want)
			}
		})
	}
}
