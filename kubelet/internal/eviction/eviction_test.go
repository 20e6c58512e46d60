package eviction

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const mi = int64(1 << 20)

func pod(name string, mutate ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "busybox"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func requests(mem string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		q := resource.MustParse(mem)
		p.Spec.Containers[0].Resources = v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceMemory: q, v1.ResourceCPU: resource.MustParse("100m")},
			Limits:   v1.ResourceList{v1.ResourceMemory: q, v1.ResourceCPU: resource.MustParse("100m")},
		}
	}
}

func prio(n int32) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.Priority = &n } }

func static(p *v1.Pod) { p.Annotations = map[string]string{"kubernetes.io/config.source": "file"} }

func TestParseThresholds(t *testing.T) {
	got, err := ParseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%", "imagefs.available": "0%", "pid.available": "0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].String() != "memory.available<100Mi" || got[1].String() != "nodefs.available<10%" {
		t.Errorf("thresholds = %v (0 and 0%% are no thresholds)", got)
	}
	if v := got[1].Value(1000); v != 100 {
		t.Errorf("10%% of 1000 = %d", v)
	}
	for _, bad := range []map[string]string{{"disk.free": "1Gi"}, {"memory.available": "lots"}, {"nodefs.available": "150%"}} {
		if _, err := ParseThresholds(bad); err == nil || !strings.Contains(err.Error(), "evictionHard[") {
			t.Errorf("ParseThresholds(%v) = %v, want an error naming the field", bad, err)
		}
	}
}

func TestMetAndPressure(t *testing.T) {
	th, _ := ParseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%", "imagefs.available": "15%", "nodefs.inodesFree": "5%", "pid.available": "1000"})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		obs   Observations
		met   []Signal
		conds []v1.NodeConditionType
	}{
		{"nothing crossed", Observations{MemoryAvailable: {Available: 200 * mi, Capacity: 1000 * mi}, NodeFsAvailable: {Available: 50, Capacity: 100}}, nil, nil},
		{"memory", Observations{MemoryAvailable: {Available: 99 * mi, Capacity: 1000 * mi}}, []Signal{MemoryAvailable}, []v1.NodeConditionType{v1.NodeMemoryPressure}},
		{"exactly at the threshold is not below it", Observations{MemoryAvailable: {Available: 100 * mi, Capacity: 1000 * mi}}, nil, nil},
		{"disk signals and memory: memory first", Observations{
			NodeFsAvailable: {Available: 9, Capacity: 100}, NodeFsInodesFree: {Available: 1, Capacity: 100},
			ImageFsAvailable: {Available: 20, Capacity: 100}, MemoryAvailable: {Available: 10 * mi, Capacity: 1000 * mi},
		}, []Signal{MemoryAvailable, NodeFsAvailable, NodeFsInodesFree}, []v1.NodeConditionType{v1.NodeDiskPressure, v1.NodeMemoryPressure}},
		{"pids", Observations{PIDAvailable: {Available: 999, Capacity: 4194304}}, []Signal{PIDAvailable}, []v1.NodeConditionType{v1.NodePIDPressure}},
		{"unobserved signals are not crossed", Observations{}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			met := Met(th, tc.obs)
			var sigs []Signal
			for _, m := range met {
				sigs = append(sigs, m.Signal)
			}
			if !reflect.DeepEqual(sigs, tc.met) {
				t.Errorf("met = %v, want %v", sigs, tc.met)
			}
			d := Decide(th, tc.obs, NewState(), t0, time.Minute)
			if !reflect.DeepEqual(d.Conditions, tc.conds) {
				t.Errorf("conditions = %v, want %v", d.Conditions, tc.conds)
			}
			if (d.Threshold != nil) != (len(tc.met) > 0) || (d.Threshold != nil && d.Threshold.Signal != tc.met[0]) {
				t.Errorf("decision threshold = %v, want the first of %v", d.Threshold, tc.met)
			}
			if d.Threshold != nil && d.Reclaim != (tc.met[0] != MemoryAvailable && tc.met[0] != PIDAvailable) {
				t.Errorf("reclaim = %v for %s: only disk signals reclaim images", d.Reclaim, tc.met[0])
			}
		})
	}
}

func TestParseSoftThresholds(t *testing.T) {
	got, err := ParseSoftThresholds(
		map[string]string{"memory.available": "500Mi", "nodefs.available": "15%", "pid.available": "0"},
		map[string]string{"memory.available": "1m30s", "nodefs.available": "0s", "pid.available": "1m"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, th := range got {
		names = append(names, th.String())
	}
	// A 0 threshold is none; a 0 s grace period makes a soft threshold act like a hard one.
	if want := []string{"memory.available<500Mi for 1m30s", "nodefs.available<15%"}; !reflect.DeepEqual(names, want) {
		t.Errorf("thresholds = %v, want %v", names, want)
	}
	if got[0].Hard() || !got[1].Hard() {
		t.Errorf("hard = %v, %v", got[0].Hard(), got[1].Hard())
	}
	for _, tc := range []struct {
		name        string
		soft, grace map[string]string
		wantErr     string
	}{
		{"soft signal without grace period", map[string]string{"memory.available": "1Gi"}, nil, "evictionSoftGracePeriod[memory.available]: missing"},
		{"grace period without soft threshold", map[string]string{"memory.available": "1Gi"},
			map[string]string{"memory.available": "1m", "nodefs.available": "1m"}, "evictionSoftGracePeriod[nodefs.available]: no evictionSoft"},
		{"bad duration", map[string]string{"memory.available": "1Gi"}, map[string]string{"memory.available": "soon"}, "evictionSoftGracePeriod[memory.available]: \"soon\""},
		{"negative duration", map[string]string{"memory.available": "1Gi"}, map[string]string{"memory.available": "-1m"}, "evictionSoftGracePeriod[memory.available]"},
		{"bad threshold", map[string]string{"memory.available": "lots"}, map[string]string{"memory.available": "1m"}, "evictionSoft[memory.available]: \"lots\""},
		{"unknown signal", map[string]string{"disk.free": "1Gi"}, map[string]string{"disk.free": "1m"}, "evictionSoft[disk.free]: unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSoftThresholds(tc.soft, tc.grace); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestDecideSoftGracePeriod walks one state through passes: a soft threshold sets its
// condition at once, acts only once it stayed crossed for its grace period, and starts over
// when it drops below in between; a hard one acts at once and before a soft one of its signal.
func TestDecideSoftGracePeriod(t *testing.T) {
	hard, _ := ParseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"})
	soft, err := ParseSoftThresholds(map[string]string{"memory.available": "500Mi", "nodefs.available": "20%"},
		map[string]string{"memory.available": "90s", "nodefs.available": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	th := append(hard, soft...)
	mem := func(avail int64) Observations {
		return Observations{MemoryAvailable: {Available: avail * mi, Capacity: 1000 * mi}}
	}
	both := func(memAvail, fsAvail int64) Observations {
		o := mem(memAvail)
		o[NodeFsAvailable] = Observation{Available: fsAvail, Capacity: 100}
		return o
	}
	memP := []v1.NodeConditionType{v1.NodeMemoryPressure}
	st := NewState()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, s := range []struct {
		name    string
		at      time.Duration
		obs     Observations
		conds   []v1.NodeConditionType
		act     string // the threshold acted on, "" for none
		waiting int
	}{
		{"soft crossed: condition at once, no eviction", 0, mem(400), memP, "", 1},
		{"still within the grace period", 60 * time.Second, mem(400), memP, "", 1},
		{"dropped below: timer resets, condition stays for the transition period", 80 * time.Second, mem(600), memP, "", 0},
		{"crossed again", 100 * time.Second, mem(400), memP, "", 1},
		{"89 s after the new crossing: still waiting", 189 * time.Second, mem(400), memP, "", 1},
		{"90 s after it: due", 190 * time.Second, mem(400), memP, "memory.available<500Mi for 1m30s", 0},
		{"hard crossed too: hard acts first", 200 * time.Second, mem(50), memP, "memory.available<100Mi", 0},
		{"soft nodefs crossed while soft memory is due: memory first", 210 * time.Second, both(400, 15),
			[]v1.NodeConditionType{v1.NodeDiskPressure, v1.NodeMemoryPressure}, "memory.available<500Mi for 1m30s", 1},
		{"memory recovers, nodefs soft not due yet", 230 * time.Second, both(600, 15),
			[]v1.NodeConditionType{v1.NodeDiskPressure, v1.NodeMemoryPressure}, "", 1},
		{"nodefs soft due after 30 s", 240 * time.Second, both(600, 15),
			[]v1.NodeConditionType{v1.NodeDiskPressure, v1.NodeMemoryPressure}, "nodefs.available<20% for 30s", 0},
		{"all fine past the transition period", 240*time.Second + 6*time.Minute, both(600, 50), nil, "", 0},
	} {
		d := Decide(th, s.obs, st, t0.Add(s.at), 5*time.Minute)
		act := ""
		if d.Threshold != nil {
			act = d.Threshold.String()
		}
		if !reflect.DeepEqual(d.Conditions, s.conds) || act != s.act || len(d.Waiting) != s.waiting {
			t.Errorf("%s (at %s): conditions %v, act %q, waiting %v; want %v, %q, %d waiting", s.name, s.at, d.Conditions, act, d.Waiting, s.conds, s.act, s.waiting)
		}
		if d.Threshold != nil && d.Reclaim != d.Threshold.Signal.disk() {
			t.Errorf("%s: reclaim %v for %s", s.name, d.Reclaim, d.Threshold)
		}
	}
}

func TestKillGrace(t *testing.T) {
	hard, _ := ParseThresholds(map[string]string{"memory.available": "100Mi"})
	soft, _ := ParseSoftThresholds(map[string]string{"memory.available": "500Mi"}, map[string]string{"memory.available": "1m"})
	withGrace := func(s int64) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.TerminationGracePeriodSeconds = &s } }
	for _, tc := range []struct {
		name     string
		th       Threshold
		pod      *v1.Pod
		maxGrace int64
		want     int64
	}{
		{"hard: 1 s whatever the pod asks", hard[0], pod("p", withGrace(60)), 30, 1},
		{"soft: capped at evictionMaxPodGracePeriod", soft[0], pod("p", withGrace(60)), 30, 30},
		{"soft: the pod's shorter grace", soft[0], pod("p", withGrace(10)), 30, 10},
		{"soft: pod without a grace period gets the cap", soft[0], pod("p"), 30, 30},
		{"soft: evictionMaxPodGracePeriod 0 means 1 s, as upstream", soft[0], pod("p", withGrace(60)), 0, 1},
		{"soft: a pod's 0 s grace still gets 1 s", soft[0], pod("p", withGrace(0)), 30, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := KillGrace(tc.th, tc.pod, tc.maxGrace); got != tc.want {
				t.Errorf("KillGrace = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPressureTransitionPeriod(t *testing.T) {
	th, _ := ParseThresholds(map[string]string{"memory.available": "100Mi"})
	crossed := Observations{MemoryAvailable: {Available: 10 * mi, Capacity: 1000 * mi}}
	fine := Observations{MemoryAvailable: {Available: 500 * mi, Capacity: 1000 * mi}}
	p := Pressure{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at   time.Duration
		obs  Observations
		want bool
	}{
		{0, crossed, true},
		{10 * time.Second, fine, true},             // within the period after the last crossing
		{5 * time.Minute, fine, true},              // exactly the period
		{5*time.Minute + time.Second, fine, false}, // past it
		{6 * time.Minute, crossed, true},
	}
	for _, s := range steps {
		got := p.Update(Met(th, s.obs), t0.Add(s.at), 5*time.Minute)
		if (len(got) == 1) != s.want {
			t.Errorf("at %s: conditions %v, want pressure %v", s.at, got, s.want)
		}
	}
}

func TestAdmit(t *testing.T) {
	mem := []v1.NodeConditionType{v1.NodeMemoryPressure}
	disk := []v1.NodeConditionType{v1.NodeDiskPressure}
	tolerates := func(tol v1.Toleration) func(*v1.Pod) {
		return func(p *v1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, tol) }
	}
	for _, tc := range []struct {
		name   string
		pod    *v1.Pod
		conds  []v1.NodeConditionType
		reject bool
	}{
		{"no pressure", pod("be"), nil, false},
		{"memory pressure rejects BestEffort", pod("be"), mem, true},
		{"memory pressure admits Guaranteed", pod("g", requests("64Mi")), mem, false},
		{"BestEffort tolerating the memory-pressure taint", pod("be", tolerates(v1.Toleration{Key: v1.TaintNodeMemoryPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule})), mem, false},
		{"BestEffort tolerating everything", pod("be", tolerates(v1.Toleration{Operator: v1.TolerationOpExists})), mem, false},
		{"BestEffort tolerating another taint", pod("be", tolerates(v1.Toleration{Key: v1.TaintNodeDiskPressure, Operator: v1.TolerationOpExists})), mem, true},
		{"disk pressure rejects Guaranteed", pod("g", requests("64Mi")), disk, true},
		{"static pods are critical", pod("s", static), disk, false},
		{"system-node-critical priority", pod("c", prio(2000001000)), disk, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rej := Admit(tc.pod, tc.conds)
			if (rej != nil) != tc.reject {
				t.Fatalf("Admit = %+v, want reject %v", rej, tc.reject)
			}
			if rej != nil && (rej.Reason != "Evicted" || !strings.HasPrefix(rej.Message, "The node had condition: [")) {
				t.Errorf("rejection = %+v, want upstream's reason and message", rej)
			}
		})
	}
}

func TestRank(t *testing.T) {
	u := func(p *v1.Pod, memMi int64, disk int64) PodUsage {
		return PodUsage{Pod: p, HasStats: true, Memory: memMi * mi, Disk: disk, Containers: map[string]ContainerUsage{"app": {Memory: memMi * mi, Disk: disk}}}
	}
	names := func(ps []PodUsage) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Pod.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		signal Signal
		pods   []PodUsage
		want   []string
	}{
		{"memory: above requests first, then priority, then usage over requests", MemoryAvailable, []PodUsage{
			u(pod("guaranteed-within", requests("100Mi")), 50, 0),
			u(pod("besteffort-small"), 5, 0),
			u(pod("besteffort-big"), 500, 0),
			u(pod("burstable-over-high-prio", requests("10Mi"), prio(1000)), 900, 0),
			u(pod("guaranteed-within-low-prio", requests("100Mi"), prio(-10)), 1, 0),
		}, []string{"besteffort-big", "besteffort-small", "burstable-over-high-prio", "guaranteed-within-low-prio", "guaranteed-within"}},
		{"pods without stats go first", MemoryAvailable, []PodUsage{
			u(pod("big"), 500, 0), {Pod: pod("unknown")},
		}, []string{"unknown", "big"}},
		{"critical pods are never candidates", MemoryAvailable, []PodUsage{
			u(pod("static", static), 900, 0), u(pod("critical", prio(2000000000)), 900, 0), u(pod("plain"), 1, 0),
		}, []string{"plain"}},
		{"disk ranks by writable layer use", NodeFsAvailable, []PodUsage{
			u(pod("small"), 900, 10), u(pod("big"), 1, 1000),
		}, []string{"big", "small"}},
		{"pids rank by priority", PIDAvailable, []PodUsage{
			u(pod("high", prio(10)), 1, 0), u(pod("low", prio(1)), 1, 0),
		}, []string{"low", "high"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(Rank(tc.signal, tc.pods)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rank = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	th, _ := ParseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"})
	p := pod("web", requests("10Mi"))
	p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: "side"})
	usage := PodUsage{Pod: p, HasStats: true, Containers: map[string]ContainerUsage{"app": {Memory: 20 * mi}, "side": {Memory: 1 * mi}}}
	got := Message(th[0], Observation{Available: 50 * mi, Capacity: 1000 * mi}, usage)
	want := "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. " +
		"Container app was using 20Mi, request is 10Mi, has larger consumption of memory. " +
		"Container side was using 1Mi, request is 0, has larger consumption of memory. "
	if got != want {
		t.Errorf("message\n got %q\nwant %q", got, want)
	}
	got = Message(th[1], Observation{Available: 5 << 30, Capacity: 100 << 30}, PodUsage{Pod: pod("x")})
	if want := "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. "; got != want {
		t.Errorf("message\n got %q\nwant %q", got, want)
	}
}

func TestPodUsages(t *testing.T) {
	a, b := pod("a"), pod("b")
	stat := func(uid, name string, ws, disk uint64) *runtimeapi.ContainerStats {
		return &runtimeapi.ContainerStats{
			Attributes:    &runtimeapi.ContainerAttributes{Labels: map[string]string{"io.kubernetes.pod.uid": uid, "io.kubernetes.container.name": name}},
			Memory:        &runtimeapi.MemoryUsage{WorkingSetBytes: &runtimeapi.UInt64Value{Value: ws}},
			WritableLayer: &runtimeapi.FilesystemUsage{UsedBytes: &runtimeapi.UInt64Value{Value: disk}},
		}
	}
	got := PodUsages([]*v1.Pod{a, b}, []*runtimeapi.ContainerStats{stat("uid-a", "app", 10, 1), stat("uid-a", "side", 5, 2), stat("uid-other", "x", 99, 99)})
	if !got[0].HasStats || got[0].Memory != 15 || got[0].Disk != 3 || got[0].Containers["side"].Memory != 5 {
		t.Errorf("a = %+v", got[0])
	}
	if got[1].HasStats {
		t.Errorf("b has no containers in the stats: %+v", got[1])
	}
}

func TestObserveFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/sys/kernel/pid_max", "4194304\n")
	write("proc/sys/kernel/threads-max", "100000\n")
	write("proc/loadavg", "0.10 0.20 0.30 3/812 4242\n")
	write("proc/meminfo", "MemTotal:       1000 kB\nMemFree:         200 kB\nInactive(file):  300 kB\n")
	o := NodeObserver{RootDir: dir, ProcRoot: filepath.Join(dir, "proc"), CgroupRoot: filepath.Join(dir, "cgroup"), MemoryCapacity: 1000 * 1024}
	obs, err := o.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// meminfo: usage 800 kB, inactive file 300 kB: working set 500 kB.
	if got := obs[MemoryAvailable]; got.Available != 500*1024 || got.Capacity != 1000*1024 {
		t.Errorf("memory.available = %+v", got)
	}
	if got := obs[PIDAvailable]; got.Available != 100000-812 || got.Capacity != 100000 {
		t.Errorf("pid.available = %+v", got)
	}
	if got := obs[NodeFsAvailable]; got.Capacity <= 0 || got.Available <= 0 {
		t.Errorf("nodefs.available = %+v", got)
	}
	// cgroup v1 root: usage_in_bytes and total_inactive_file win over meminfo.
	write("cgroup/memory/memory.usage_in_bytes", "700000\n")
	write("cgroup/memory/memory.stat", "cache 1\ntotal_inactive_file 200000\n")
	obs, _ = o.Observe(context.Background())
	if got := obs[MemoryAvailable].Available; got != 1000*1024-500000 {
		t.Errorf("memory.available from cgroup v1 = %d", got)
	}
	o.ImageFs = func(context.Context) (string, error) { return filepath.Join(dir, "missing"), nil }
	if _, err := o.Observe(context.Background()); err == nil || !strings.Contains(err.Error(), "imagefs") {
		t.Errorf("unreadable imagefs: err = %v", err)
	}
}

// fakes for the manager

type fakeObserver struct{ obs Observations }

func (f *fakeObserver) Observe(context.Context) (Observations, error) { return f.obs, nil }

type fakeStats []*runtimeapi.ContainerStats

func (f fakeStats) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	return f, nil
}

type fakeReclaimer struct {
	calls int
	then  func()
}

func (f *fakeReclaimer) DeleteUnused(context.Context) (uint64, error) {
	f.calls++
	if f.then != nil {
		f.then()
		return 100, nil
	}
	return 0, nil
}

type fakePods map[types.UID]*v1.Pod

func (f fakePods) Get(uid types.UID) (*v1.Pod, *v1.Pod, bool) {
	p, ok := f[uid]
	return p, p, ok
}

func TestManagerEvictsOnePodPerPass(t *testing.T) {
	th, _ := ParseThresholds(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"})
	obs := &fakeObserver{obs: Observations{MemoryAvailable: {Available: 50 * mi, Capacity: 1000 * mi}, NodeFsAvailable: {Available: 5, Capacity: 100}}}
	be, g, st := pod("besteffort"), pod("guaranteed", requests("64Mi")), pod("static", static)
	pods := fakePods{be.UID: be, g.UID: g, st.UID: st}
	var triggered []types.UID
	ev := NewEvictions(pods, func(uid types.UID) { triggered = append(triggered, uid) }, nil)
	rec := record.NewFakeRecorder(10)
	kicked := 0
	m, err := New(Config{Thresholds: th, TransitionPeriod: time.Minute, MaxPodGracePeriod: 30}, Deps{
		Observer: obs, Stats: fakeStats{},
		ActivePods: func() []*v1.Pod {
			var out []*v1.Pod
			for _, p := range []*v1.Pod{be, g, st} {
				if _, ok := pods[p.UID]; ok && !ev.Evicted(p.UID) {
					out = append(out, p)
				}
			}
			return out
		},
		Killer: ev, Recorder: rec, ConditionsChanged: func() { kicked++ }, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v := m.Synchronize(ctx); v == nil || v.Name != "besteffort" {
		t.Fatalf("first victim = %v, want besteffort", v)
	}
	if got := m.Conditions(); !reflect.DeepEqual(got, []v1.NodeConditionType{v1.NodeDiskPressure, v1.NodeMemoryPressure}) || kicked != 1 {
		t.Errorf("conditions = %v (kicked %d)", got, kicked)
	}
	if len(triggered) != 1 || triggered[0] != be.UID {
		t.Errorf("triggered %v", triggered)
	}
	select {
	case e := <-rec.Events:
		if !strings.HasPrefix(e, "Warning Evicted The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.") {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no event")
	}
	// The syncs see the evicted pod as Failed/Evicted with the eviction's grace.
	p, api, ok := ev.Get(be.UID)
	if !ok || p != api || p.Status.Phase != v1.PodFailed || p.Status.Reason != "Evicted" || !strings.HasPrefix(p.Status.Message, "The node was low on resource: memory.") ||
		*p.Spec.TerminationGracePeriodSeconds != 1 {
		t.Errorf("evicted pod as synced: %+v", p.Status)
	}
	if be.Status.Phase != "" {
		t.Error("the pod manager's object was modified")
	}
	if p, _, _ := ev.Get(g.UID); p != g {
		t.Error("a pod that was not evicted changed")
	}
	if v := m.Synchronize(ctx); v == nil || v.Name != "guaranteed" {
		t.Fatalf("second victim = %v, want guaranteed (pressure persists)", v)
	}
	if v := m.Synchronize(ctx); v != nil {
		t.Fatalf("third victim = %v: only a static pod is left, and it is critical", v.Name)
	}
	delete(pods, be.UID)
	ev.Forget()
	if ev.Evicted(be.UID) || !ev.Evicted(g.UID) {
		t.Error("Forget must drop only pods that are gone")
	}
	if rej := m.Admit(pod("new-be")); rej == nil {
		t.Error("a BestEffort pod was admitted under pressure")
	}
}

func TestManagerReclaimsBeforeEvicting(t *testing.T) {
	th, _ := ParseThresholds(map[string]string{"imagefs.available": "15%"})
	obs := &fakeObserver{obs: Observations{ImageFsAvailable: {Available: 10, Capacity: 100}}}
	rec := &fakeReclaimer{then: func() { obs.obs = Observations{ImageFsAvailable: {Available: 40, Capacity: 100}} }}
	be := pod("besteffort")
	var evicted []string
	m, _ := New(Config{Thresholds: th, TransitionPeriod: time.Minute}, Deps{
		Observer: obs, Stats: fakeStats{}, Reclaimer: rec, ActivePods: func() []*v1.Pod { return []*v1.Pod{be} },
		Killer: killerFunc(func(p *v1.Pod) { evicted = append(evicted, p.Name) }), Log: zap.NewNop(),
	})
	if v := m.Synchronize(context.Background()); v != nil || rec.calls != 1 || len(evicted) != 0 {
		t.Errorf("victim %v, reclaim calls %d, evicted %v: reclaiming images was enough", v, rec.calls, evicted)
	}
	if got := m.Conditions(); !reflect.DeepEqual(got, []v1.NodeConditionType{v1.NodeDiskPressure}) {
		t.Errorf("conditions = %v: the threshold was crossed in this pass", got)
	}
	// Reclaiming frees nothing: a pod goes.
	rec.then = nil
	obs.obs = Observations{ImageFsAvailable: {Available: 10, Capacity: 100}}
	if v := m.Synchronize(context.Background()); v == nil || len(evicted) != 1 {
		t.Errorf("victim %v, evicted %v", v, evicted)
	}
}

func TestManagerSoftEviction(t *testing.T) {
	soft, _ := ParseSoftThresholds(map[string]string{"memory.available": "500Mi"}, map[string]string{"memory.available": "1m"})
	obs := &fakeObserver{obs: Observations{MemoryAvailable: {Available: 400 * mi, Capacity: 1000 * mi}}}
	long := pod("long", func(p *v1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(120)) })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type kill struct {
		name  string
		grace int64
		msg   string
	}
	var kills []kill
	m, err := New(Config{Thresholds: soft, TransitionPeriod: time.Minute, MaxPodGracePeriod: 45}, Deps{
		Observer: obs, Stats: fakeStats{}, ActivePods: func() []*v1.Pod { return []*v1.Pod{long} },
		Killer: killerGraceFunc(func(p *v1.Pod, g int64, msg string) { kills = append(kills, kill{p.Name, g, msg}) }),
		Now:    func() time.Time { return now }, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v := m.Synchronize(ctx); v != nil {
		t.Fatalf("evicted %s as soon as the soft threshold was crossed", v.Name)
	}
	if got := m.Conditions(); !reflect.DeepEqual(got, []v1.NodeConditionType{v1.NodeMemoryPressure}) {
		t.Errorf("conditions = %v: a crossed soft threshold sets the condition at once", got)
	}
	if rej := m.Admit(pod("new-be")); rej == nil {
		t.Error("a BestEffort pod was admitted under soft memory pressure")
	}
	now = now.Add(50 * time.Second)
	if v := m.Synchronize(ctx); v != nil {
		t.Fatalf("evicted %s before the grace period passed", v.Name)
	}
	now = now.Add(10 * time.Second)
	if v := m.Synchronize(ctx); v == nil || len(kills) != 1 {
		t.Fatalf("no eviction after the grace period: %v", kills)
	}
	want := "The node was low on resource: memory. Threshold quantity: 500Mi, available: 400Mi. "
	if k := kills[0]; k.name != "long" || k.grace != 45 || !strings.HasPrefix(k.msg, want) {
		t.Errorf("kill %+v, want long with grace 45 (the cap below the pod's 120) and a message starting %q", k, want)
	}
}

type killerGraceFunc func(*v1.Pod, int64, string)

func (f killerGraceFunc) Evict(p *v1.Pod, g int64, msg string, _ bool) { f(p, g, msg) }

func (f killerGraceFunc) Forget() {}

type killerFunc func(*v1.Pod)

func (f killerFunc) Evict(p *v1.Pod, _ int64, _ string, _ bool) { f(p) }

func (f killerFunc) Forget() {}

func TestEvictionsOverlay(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	deleting := pod("deleting", func(p *v1.Pod) {
		p.DeletionTimestamp = &at
		p.DeletionGracePeriodSeconds = ptr(int64(30))
	})
	done := pod("done", func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded })
	running := pod("running", func(p *v1.Pod) {
		p.Status.Phase = v1.PodRunning
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	})
	pods := fakePods{deleting.UID: deleting, done.UID: done, running.UID: running}
	ev := NewEvictions(pods, func(types.UID) {}, func() metav1.Time { return at })
	for _, p := range []*v1.Pod{deleting, done, running} {
		ev.Evict(p, 1, "low on memory", true)
	}
	for _, tc := range []struct {
		name   string
		uid    types.UID
		phase  v1.PodPhase
		reason string
		grace  int64
	}{
		{"running pod turns Failed/Evicted", running.UID, v1.PodFailed, "Evicted", 1},
		{"a deletion's longer grace is cut to the eviction's", deleting.UID, v1.PodFailed, "Evicted", 1},
		{"a pod that already finished keeps its ending", done.UID, v1.PodSucceeded, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, api, ok := ev.Get(tc.uid)
			if !ok || p != api {
				t.Fatalf("Get = %v, %v, %v", p, api, ok)
			}
			if p.Status.Phase != tc.phase || p.Status.Reason != tc.reason || *p.Spec.TerminationGracePeriodSeconds != tc.grace {
				t.Errorf("status %s/%s grace %d", p.Status.Phase, p.Status.Reason, *p.Spec.TerminationGracePeriodSeconds)
			}
			if p.DeletionGracePeriodSeconds != nil && *p.DeletionGracePeriodSeconds != tc.grace {
				t.Errorf("deletion grace %d", *p.DeletionGracePeriodSeconds)
			}
		})
	}
	p, _, _ := ev.Get(running.UID)
	var disrupted, ready bool
	for _, c := range p.Status.Conditions {
		disrupted = disrupted || c.Type == v1.DisruptionTarget && c.Status == v1.ConditionTrue && c.Reason == v1.PodReasonTerminationByKubelet && c.Message == "low on memory"
		ready = ready || c.Type == v1.PodReady
	}
	if !disrupted || !ready {
		t.Errorf("conditions %+v: want DisruptionTarget added and the others kept", p.Status.Conditions)
	}
	if _, _, ok := ev.Get("unknown"); ok {
		t.Error("a pod the manager does not have appeared")
	}
	t.Run("OwnLimitIsNoDisruption", func(t *testing.T) {
		own := pod("own", func(p *v1.Pod) { p.Status.Phase = v1.PodRunning })
		pods[own.UID] = own
		ev.Evict(own, 1, "over its limit", false)
		p, _, _ := ev.Get(own.UID)
		if p.Status.Phase != v1.PodFailed || p.Status.Reason != Reason || p.Status.Message != "over its limit" {
			t.Errorf("status %s/%s %q", p.Status.Phase, p.Status.Reason, p.Status.Message)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.DisruptionTarget {
				t.Errorf("DisruptionTarget set for a pod that outgrew its own limit: %+v", c)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }
