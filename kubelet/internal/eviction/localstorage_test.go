package eviction

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

func emptyDir(name, medium, limit string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		ed := &v1.EmptyDirVolumeSource{Medium: v1.StorageMedium(medium)}
		if limit != "" {
			q := resource.MustParse(limit)
			ed.SizeLimit = &q
		}
		p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: name, VolumeSource: v1.VolumeSource{EmptyDir: ed}})
	}
}

// storageLimits gives the pod's containers app, app2, ... the ephemeral-storage limits ("" none).
func storageLimits(limits ...string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		p.Spec.Containers = nil
		for i, l := range limits {
			c := v1.Container{Name: "app", Image: "busybox"}
			if i > 0 {
				c.Name = "app" + string(rune('1'+i))
			}
			if l != "" {
				c.Resources.Limits = v1.ResourceList{v1.ResourceEphemeralStorage: resource.MustParse(l)}
			}
			p.Spec.Containers = append(p.Spec.Containers, c)
		}
	}
}

func TestLocalStorage(t *testing.T) {
	type usage map[string]DiskUsage // by pod name
	vols := func(kv ...any) map[string]int64 {
		m := map[string]int64{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(int64)
		}
		return m
	}
	tests := []struct {
		name  string
		pods  []*v1.Pod
		usage usage
		want  map[string]string // pod name -> message
	}{
		{
			name:  "emptyDir over its sizeLimit",
			pods:  []*v1.Pod{pod("a", emptyDir("scratch", "", "1Mi"))},
			usage: usage{"a": {Volumes: vols("scratch", 4*mi)}},
			want:  map[string]string{"a": `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `},
		},
		{
			name:  "emptyDir under and at its sizeLimit stays",
			pods:  []*v1.Pod{pod("under", emptyDir("scratch", "", "1Mi")), pod("at", emptyDir("scratch", "", "1Mi"))},
			usage: usage{"under": {Volumes: vols("scratch", mi/2)}, "at": {Volumes: vols("scratch", mi)}},
		},
		{
			name:  "memory emptyDir is tmpfs: its sizeLimit is not a disk limit",
			pods:  []*v1.Pod{pod("a", emptyDir("shm", "Memory", "1Mi"))},
			usage: usage{"a": {Volumes: vols("shm", 4*mi)}},
		},
		{
			name:  "emptyDir without sizeLimit or with 0 is unlimited",
			pods:  []*v1.Pod{pod("a", emptyDir("x", "", ""), emptyDir("y", "", "0"))},
			usage: usage{"a": {Volumes: vols("x", 100*mi, "y", 100*mi)}},
		},
		{
			name:  "second emptyDir over names that volume",
			pods:  []*v1.Pod{pod("a", emptyDir("ok", "", "10Mi"), emptyDir("big", "", "2M"))},
			usage: usage{"a": {Volumes: vols("ok", mi, "big", 3*mi)}},
			want:  map[string]string{"a": `Usage of EmptyDir volume "big" exceeds the limit "2M". `},
		},
		{
			name: "container writable layer plus logs over its limit",
			// Pod total 2.5Mi is under the pod's 2Mi+8Mi, so the container check decides.
			pods:  []*v1.Pod{pod("a", storageLimits("2Mi", "8Mi"))},
			usage: usage{"a": {Containers: map[string]ContainerDisk{"app": {Rootfs: 2 * mi, Logs: mi / 2}}}},
			want:  map[string]string{"a": `Container app exceeded its local ephemeral storage limit "2Mi". `},
		},
		{
			name:  "container under its limit with logs counted stays",
			pods:  []*v1.Pod{pod("a", storageLimits("2Mi"))},
			usage: usage{"a": {Containers: map[string]ContainerDisk{"app": {Rootfs: mi, Logs: mi / 2}}}},
		},
		{
			name: "pod total (emptyDir + layers + logs + etc-hosts) over the containers' summed limits",
			pods: []*v1.Pod{pod("a", storageLimits("2Mi", "2Mi"), emptyDir("scratch", "", ""))},
			usage: usage{"a": {Volumes: vols("scratch", 3*mi), Other: 4096, Containers: map[string]ContainerDisk{
				"app": {Rootfs: mi / 2}, "app2": {Logs: mi / 2},
			}}},
			want: map[string]string{"a": "Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. "},
		},
		{
			name:  "emptyDir message wins over the pod total",
			pods:  []*v1.Pod{pod("a", storageLimits("1Mi"), emptyDir("scratch", "", "1Mi"))},
			usage: usage{"a": {Volumes: vols("scratch", 3*mi), Containers: map[string]ContainerDisk{"app": {Rootfs: 3 * mi}}}},
			want:  map[string]string{"a": `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `},
		},
		{
			name:  "pod total counts only the containers that have a limit, as upstream",
			pods:  []*v1.Pod{pod("a", storageLimits("1Mi", ""))},
			usage: usage{"a": {Containers: map[string]ContainerDisk{"app": {Rootfs: mi / 2}, "app2": {Rootfs: mi}}}},
			want:  map[string]string{"a": "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "},
		},
		{
			name:  "no limits at all: never evicted whatever it uses",
			pods:  []*v1.Pod{pod("a", emptyDir("scratch", "", ""))},
			usage: usage{"a": {Volumes: vols("scratch", 1000*mi), Containers: map[string]ContainerDisk{"app": {Rootfs: 1000 * mi}}}},
		},
		{
			name: "critical and unmeasured pods are left alone; the rest all go, in order",
			pods: []*v1.Pod{
				pod("static", static, emptyDir("s", "", "1Mi")),
				pod("unmeasured", emptyDir("s", "", "1Mi")),
				pod("b", emptyDir("s", "", "1Mi")),
				pod("c", storageLimits("1Mi")),
			},
			usage: usage{
				"static": {Volumes: vols("s", 2*mi)},
				"b":      {Volumes: vols("s", 2*mi)},
				"c":      {Containers: map[string]ContainerDisk{"app": {Logs: 2 * mi}}},
			},
			want: map[string]string{
				"b": `Usage of EmptyDir volume "s" exceeds the limit "1Mi". `,
				"c": "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. ",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := map[types.UID]DiskUsage{}
			for name, du := range tt.usage {
				u[types.UID("uid-"+name)] = du
			}
			got := map[string]string{}
			var order []string
			for _, e := range LocalStorage(tt.pods, u) {
				got[e.Pod.Name] = e.Message
				order = append(order, e.Pod.Name)
			}
			if tt.want == nil {
				tt.want = map[string]string{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("evictions = %q, want %q", got, tt.want)
			}
			for i := 1; i < len(order); i++ {
				if order[i-1] > order[i] {
					t.Errorf("evictions out of the pods' order: %v", order)
				}
			}
		})
	}
}

func TestPodEphemeralLimit(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	lim := func(q string) v1.ResourceRequirements {
		return v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceEphemeralStorage: resource.MustParse(q)}}
	}
	tests := []struct {
		name   string
		spec   v1.PodSpec
		want   string // "" none
		needed bool
	}{
		{name: "none", spec: v1.PodSpec{Containers: []v1.Container{{Name: "a"}}}},
		{name: "sum of app containers", spec: v1.PodSpec{Containers: []v1.Container{{Name: "a", Resources: lim("1Mi")}, {Name: "b", Resources: lim("3Mi")}}}, want: "4Mi", needed: true},
		{name: "an init container's larger limit", spec: v1.PodSpec{
			InitContainers: []v1.Container{{Name: "i", Resources: lim("10Mi")}},
			Containers:     []v1.Container{{Name: "a", Resources: lim("1Mi")}},
		}, want: "10Mi", needed: true},
		{name: "sidecars add to the app containers and to later init containers", spec: v1.PodSpec{
			InitContainers: []v1.Container{{Name: "s", RestartPolicy: &always, Resources: lim("2Mi")}, {Name: "i", Resources: lim("5Mi")}},
			Containers:     []v1.Container{{Name: "a", Resources: lim("1Mi")}},
		}, want: "7Mi", needed: true},
		{name: "overhead on top", spec: v1.PodSpec{
			Containers: []v1.Container{{Name: "a", Resources: lim("1Mi")}},
			Overhead:   v1.ResourceList{v1.ResourceEphemeralStorage: resource.MustParse("1Mi")},
		}, want: "2Mi", needed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &v1.Pod{Spec: tt.spec}
			q, ok := podEphemeralLimit(p)
			got := ""
			if ok {
				got = q.String()
			}
			if got != tt.want {
				t.Errorf("limit = %q, want %q", got, tt.want)
			}
			if NeedsDiskUsage(p) != tt.needed {
				t.Errorf("NeedsDiskUsage = %v, want %v", !tt.needed, tt.needed)
			}
		})
	}
}

func writeFile(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = 'x' // not zeros: no filesystem may leave it sparse
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLocalDiskUsage(t *testing.T) {
	root := t.TempDir()
	podsDir, logRoot := filepath.Join(root, "pods"), filepath.Join(root, "logs")
	p := pod("a", storageLimits("1Mi", "1Mi"), emptyDir("scratch", "", "1Mi"), emptyDir("shm", "Memory", ""), func(p *v1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes,
			v1.Volume{Name: "cm", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{}}},
			v1.Volume{Name: "sec", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{}}})
	})
	vol := func(plugin, name string) string {
		return filepath.Join(podsDir, string(p.UID), "volumes", plugin, name)
	}
	scratch := vol("kubernetes.io~empty-dir", "scratch")
	writeFile(t, filepath.Join(scratch, "a"), 256<<10)
	writeFile(t, filepath.Join(scratch, "sub", "b"), 256<<10)
	// A hard link is the same blocks; a symlink to a big file outside is not the volume's.
	if err := os.Link(filepath.Join(scratch, "a"), filepath.Join(scratch, "a-link")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(root, "outside")
	writeFile(t, outside, 4<<20)
	if err := os.Symlink(outside, filepath.Join(scratch, "to-outside")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(vol("kubernetes.io~configmap", "cm"), "key"), 100<<10)
	writeFile(t, filepath.Join(vol("kubernetes.io~secret", "sec"), "key"), 100<<10)
	writeFile(t, filepath.Join(podsDir, string(p.UID), "etc-hosts"), 100)
	logDir := runtime.PodLogDir(logRoot, p)
	writeFile(t, filepath.Join(logDir, "app", "0.log"), 64<<10)
	writeFile(t, filepath.Join(logDir, "app", "1.log"), 64<<10)

	stats := fakeStats{
		layer(string(p.UID), "app", 0, 5*mi),
		layer(string(p.UID), "app", 1, 2*mi), // the current attempt
		layer(string(p.UID), "app2", 0, 3*mi),
		layer("other-pod", "app", 0, 100*mi),
	}
	got, err := LocalDisk{PodsDir: podsDir, LogRoot: logRoot, Stats: stats}.Usage(context.Background(), []*v1.Pod{p})
	if err != nil {
		t.Fatal(err)
	}
	u := got[p.UID]
	within := func(what string, got, want int64) {
		t.Helper()
		// Allocated blocks: the content rounded up to blocks, plus the directories' own blocks.
		if got < want || got > want+64<<10 {
			t.Errorf("%s = %d, want %d (+ up to 64Ki of blocks)", what, got, want)
		}
	}
	within("emptyDir scratch", u.Volumes["scratch"], 512<<10)
	within("configMap cm", u.Volumes["cm"], 100<<10)
	if _, ok := u.Volumes["shm"]; ok {
		t.Error("a memory emptyDir was measured as disk")
	}
	if _, ok := u.Volumes["sec"]; ok {
		t.Error("a secret volume was measured as disk")
	}
	within("etc-hosts", u.Other, 100)
	if c := u.Containers["app"]; c.Rootfs != 2*mi {
		t.Errorf("app rootfs = %d, want the current attempt's %d", c.Rootfs, 2*mi)
	}
	within("app logs", u.Containers["app"].Logs, 128<<10)
	if c := u.Containers["app2"]; c.Rootfs != 3*mi || c.Logs != 0 {
		t.Errorf("app2 = %+v, want rootfs %d and no logs", c, 3*mi)
	}

	t.Run("CappedWalkIsALowerBound", func(t *testing.T) {
		got, err := LocalDisk{PodsDir: podsDir, LogRoot: logRoot, Stats: stats, MaxWalkEntries: 2}.Usage(context.Background(), []*v1.Pod{p})
		if err != nil {
			t.Fatal(err)
		}
		if n := got[p.UID].Volumes["scratch"]; n >= u.Volumes["scratch"] {
			t.Errorf("capped walk counted %d, the full walk %d", n, u.Volumes["scratch"])
		}
	})
	t.Run("CRIFailureKeepsVolumes", func(t *testing.T) {
		got, err := LocalDisk{PodsDir: podsDir, LogRoot: logRoot, Stats: failingStats{}}.Usage(context.Background(), []*v1.Pod{p})
		if err == nil {
			t.Error("no error from a failed ListContainerStats")
		}
		if got[p.UID].Volumes["scratch"] != u.Volumes["scratch"] {
			t.Errorf("volumes lost with the CRI call: %+v", got[p.UID])
		}
	})
}

func layer(uid, name string, attempt uint32, bytes int64) *runtimeapi.ContainerStats {
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
			Labels:   map[string]string{runtime.LabelPodUID: uid, runtime.LabelContainerName: name},
		},
		WritableLayer: &runtimeapi.FilesystemUsage{UsedBytes: &runtimeapi.UInt64Value{Value: uint64(bytes)}},
	}
}

type failingStats struct{}

func (failingStats) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	return nil, errors.New("runtime down")
}

type fakeDisk map[types.UID]DiskUsage

func (f fakeDisk) Usage(_ context.Context, pods []*v1.Pod) (map[types.UID]DiskUsage, error) {
	out := map[types.UID]DiskUsage{}
	for _, p := range pods {
		if u, ok := f[p.UID]; ok {
			out[p.UID] = u
		}
	}
	return out, nil
}

// TestManagerLocalStorageEviction: without any node pressure, every pod over its own limit is
// evicted at once in one pass, with the message as event and status, grace 1 and no
// DisruptionTarget.
func TestManagerLocalStorageEviction(t *testing.T) {
	over := pod("over", emptyDir("scratch", "", "1Mi"))
	under := pod("under", emptyDir("scratch", "", "1Mi"))
	container := pod("container", storageLimits("2Mi"))
	unlimited := pod("unlimited")
	disk := fakeDisk{
		over.UID: {Volumes: map[string]int64{"scratch": 4 * mi}}, under.UID: {Volumes: map[string]int64{"scratch": mi / 2}},
		container.UID: {Containers: map[string]ContainerDisk{"app": {Rootfs: 8 * mi}}},
		unlimited.UID: {Containers: map[string]ContainerDisk{"app": {Rootfs: 800 * mi}}},
	}
	type kill struct {
		name       string
		grace      int64
		msg        string
		disruption bool
	}
	var kills []kill
	rec := record.NewFakeRecorder(10)
	thresholds, _ := ParseThresholds(map[string]string{"memory.available": "100Mi"})
	m, err := New(Config{Thresholds: thresholds}, Deps{
		Observer: &fakeObserver{obs: Observations{MemoryAvailable: {Available: 900 * mi, Capacity: 1000 * mi}}},
		Stats:    fakeStats{}, ActivePods: func() []*v1.Pod { return []*v1.Pod{over, under, container, unlimited} },
		Killer:   killerDisruptionFunc(func(p *v1.Pod, g int64, msg string, d bool) { kills = append(kills, kill{p.Name, g, msg, d}) }),
		Recorder: rec, LocalStorage: disk, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Synchronize(context.Background()); v == nil || v.Name != "over" {
		t.Errorf("Synchronize returned %v, want the first evicted pod", v)
	}
	want := []kill{
		{"over", 1, `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `, false},
		{"container", 1, "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. ", false},
	}
	if !reflect.DeepEqual(kills, want) {
		t.Errorf("kills = %+v, want %+v", kills, want)
	}
	if len(m.Conditions()) != 0 {
		t.Errorf("conditions %v: a pod over its own limit is no node pressure", m.Conditions())
	}
	close(rec.Events)
	var events []string
	for e := range rec.Events {
		events = append(events, e)
	}
	wantEvents := []string{"Warning Evicted " + want[0].msg, "Warning Evicted " + want[1].msg}
	if !reflect.DeepEqual(events, wantEvents) {
		t.Errorf("events = %q, want %q", events, wantEvents)
	}
}

type killerDisruptionFunc func(*v1.Pod, int64, string, bool)

func (f killerDisruptionFunc) Evict(p *v1.Pod, g int64, msg string, d bool) { f(p, g, msg, d) }

func (f killerDisruptionFunc) Forget() {}

// TestManagerLocalStorageBeforePressure: under a hard memory threshold, a pass that evicts a pod
// over its own limit evicts no one for the pressure (upstream's order); the next pass does.
func TestManagerLocalStorageBeforePressure(t *testing.T) {
	over := pod("over", emptyDir("scratch", "", "1Mi"))
	big := pod("big")
	active := []*v1.Pod{big, over}
	var kills []string
	thresholds, _ := ParseThresholds(map[string]string{"memory.available": "100Mi"})
	m, err := New(Config{Thresholds: thresholds}, Deps{
		Observer: &fakeObserver{obs: Observations{MemoryAvailable: {Available: 50 * mi, Capacity: 1000 * mi}}},
		Stats:    fakeStats{}, ActivePods: func() []*v1.Pod { return active },
		Killer: killerDisruptionFunc(func(p *v1.Pod, _ int64, _ string, d bool) {
			kills = append(kills, p.Name)
			if p.Name == "big" != d {
				t.Errorf("%s evicted with disruption %v", p.Name, d)
			}
		}),
		LocalStorage: fakeDisk{over.UID: {Volumes: map[string]int64{"scratch": 2 * mi}}}, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Synchronize(ctx)
	if !reflect.DeepEqual(kills, []string{"over"}) {
		t.Fatalf("first pass evicted %v, want only the pod over its emptyDir limit", kills)
	}
	if got := m.Conditions(); !reflect.DeepEqual(got, []v1.NodeConditionType{v1.NodeMemoryPressure}) {
		t.Errorf("conditions %v, want MemoryPressure set in the same pass", got)
	}
	active = []*v1.Pod{big}
	m.Synchronize(ctx)
	if !reflect.DeepEqual(kills, []string{"over", "big"}) {
		t.Errorf("second pass: evicted %v, want big for the memory pressure", kills)
	}
}
