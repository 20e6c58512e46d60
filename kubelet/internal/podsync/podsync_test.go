package podsync

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"

	"github.com/kubenode/kubenode/kubelet/internal/pleg"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
	"github.com/kubenode/kubenode/kubelet/internal/status"
)

type fakePods struct {
	mu   sync.Mutex
	pods map[types.UID]*v1.Pod
}

func (f *fakePods) Get(uid types.UID) (*v1.Pod, *v1.Pod, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[uid]
	return p, p, ok
}

type fakeVolumes struct{ torn []types.UID }

func (f *fakeVolumes) Setup(context.Context, *v1.Pod) (map[string]string, error) {
	return map[string]string{}, nil
}
func (f *fakeVolumes) Teardown(uid types.UID) error { f.torn = append(f.torn, uid); return nil }

type fakeStatus struct {
	last map[types.UID]v1.PodStatus
}

func (f *fakeStatus) Set(uid types.UID, _ *v1.Pod, st v1.PodStatus) { f.last[uid] = st }
func (f *fakeStatus) Forget(uid types.UID)                          { delete(f.last, uid) }

type fakeDeleter struct{ deleted []types.UID }

func (f *fakeDeleter) DeletePod(_ context.Context, _, _ string, uid types.UID) error {
	f.deleted = append(f.deleted, uid)
	return nil
}

type rejectAll struct{}

func (rejectAll) Admit(*v1.Pod) *status.Rejection {
	return &status.Rejection{Reason: "OutOfcpu", Message: "Node didn't have enough resource: cpu"}
}

type env struct {
	rs      *critest.FakeRuntimeService
	is      *critest.FakeImageService
	pods    *fakePods
	vols    *fakeVolumes
	status  *fakeStatus
	deleter *fakeDeleter
	syncer  *Syncer
}

type noObjects struct{}

func (noObjects) ConfigMap(context.Context, string, string) (*v1.ConfigMap, error) {
	return nil, errors.New("not found")
}
func (noObjects) Secret(context.Context, string, string) (*v1.Secret, error) {
	return nil, errors.New("not found")
}

func newEnv(t *testing.T, admit Admitter) *env {
	return newEnvWithCache(t, admit, nil)
}

func newEnvWithCache(t *testing.T, admit Admitter, cache PodCache) *env {
	e := &env{
		rs:      critest.NewFakeRuntimeService(),
		is:      critest.NewFakeImageService(),
		pods:    &fakePods{pods: map[types.UID]*v1.Pod{}},
		vols:    &fakeVolumes{},
		status:  &fakeStatus{last: map[types.UID]v1.PodStatus{}},
		deleter: &fakeDeleter{},
	}
	e.is.SetFakeImages([]string{"busybox:1.36"})
	rt := runtime.New(e.rs, e.is, time.Second, zap.NewNop())
	s, err := New(Deps{
		Pods: e.pods, Runtime: rt, Cache: cache, Images: runtime.NewPuller(e.is, noObjects{}, time.Now), Objects: noObjects{},
		Volumes: e.vols, Admit: admit, Status: e.status, Deleter: e.deleter,
		Node: Node{Name: "n1", HostIPs: []string{"192.0.2.10"}}, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.syncer = s
	return e
}

func newPod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "u1"},
		Spec: v1.PodSpec{
			NodeName:   "n1",
			Containers: []v1.Container{{Name: "a", Image: "busybox:1.36"}, {Name: "b", Image: "busybox:1.36"}},
		},
	}
}

func TestSyncRunsPodAndReportsRunning(t *testing.T) {
	e := newEnv(t, nil)
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	st := e.status.last[p.UID]
	if st.Phase != v1.PodRunning || len(st.ContainerStatuses) != 2 || st.ContainerStatuses[0].State.Running == nil {
		t.Fatalf("status after first sync = %+v", st)
	}
	if st.PodIP == "" {
		t.Errorf("no pod IP")
	}
	// A second sync changes nothing in the runtime.
	before := len(e.rs.GetCalls())
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	for _, c := range e.rs.GetCalls()[before:] {
		if c == "RunPodSandbox" || c == "CreateContainer" || c == "StopContainer" {
			t.Fatalf("steady-state sync called %s", c)
		}
	}
}

// cacheModes runs a test with syncs that list the runtime every time and with the pod cache.
func cacheModes() []struct {
	name  string
	cache func() PodCache
} {
	return []struct {
		name  string
		cache func() PodCache
	}{
		{name: "no pod cache", cache: func() PodCache { return nil }},
		{name: "pod cache", cache: func() PodCache { return pleg.NewCache() }},
	}
}

func TestSyncDeletedPodStopsAndDeletes(t *testing.T) {
	for _, m := range cacheModes() {
		t.Run(m.name, func(t *testing.T) { testSyncDeletedPodStopsAndDeletes(t, m.cache()) })
	}
}

func testSyncDeletedPodStopsAndDeletes(t *testing.T, cache PodCache) {
	e := newEnvWithCache(t, nil, cache)
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	grace := int64(5)
	d := p.DeepCopy()
	d.DeletionTimestamp = &now
	d.DeletionGracePeriodSeconds = &grace
	e.pods.pods[p.UID] = d
	for i := 0; i < 3 && len(e.deleter.deleted) == 0; i++ {
		if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.deleter.deleted) != 1 {
		t.Fatalf("pod not deleted from the API after stopping: calls %v", e.rs.GetCalls())
	}
	for _, c := range e.rs.Containers {
		if c.State != 2 { // CONTAINER_EXITED
			t.Errorf("container %s still in state %v", c.Id, c.State)
		}
	}
	if len(e.rs.Sandboxes) != 0 {
		t.Errorf("sandboxes left: %d", len(e.rs.Sandboxes))
	}
	// The API forgets the pod: the worker finishes.
	delete(e.pods.pods, p.UID)
	res, err := e.syncer.Sync(ctx, p.UID)
	if err != nil || !res.Finished {
		t.Fatalf("after removal: %+v, %v", res, err)
	}
}

func TestSyncOrphanIsTornDown(t *testing.T) {
	for _, m := range cacheModes() {
		t.Run(m.name, func(t *testing.T) { testSyncOrphanIsTornDown(t, m.cache()) })
	}
}

func testSyncOrphanIsTornDown(t *testing.T, cache PodCache) {
	e := newEnvWithCache(t, nil, cache)
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	delete(e.pods.pods, p.UID) // force-deleted while the kubelet was away
	res, err := e.syncer.Sync(ctx, p.UID)
	if err != nil || !res.Finished {
		t.Fatalf("orphan sync: %+v %v", res, err)
	}
	if len(e.rs.Sandboxes) != 0 || len(e.vols.torn) != 1 {
		t.Fatalf("orphan left sandboxes %d, volumes torn %v", len(e.rs.Sandboxes), e.vols.torn)
	}
}

func TestSyncImagePullErrorShowsInStatus(t *testing.T) {
	e := newEnv(t, nil)
	p := newPod()
	p.Spec.Containers[1].Image = "registry.invalid/none:1"
	e.is.InjectError("PullImage", errors.New("not found"))
	e.pods.pods[p.UID] = p
	res, err := e.syncer.Sync(context.Background(), p.UID)
	if err != nil {
		t.Fatal(err)
	}
	st := e.status.last[p.UID]
	w := st.ContainerStatuses[1].State.Waiting
	if w == nil || w.Reason != runtime.ReasonErrImagePull {
		t.Fatalf("container b state = %+v, want waiting ErrImagePull", st.ContainerStatuses[1].State)
	}
	if st.ContainerStatuses[0].State.Running == nil {
		t.Errorf("container a should run regardless: %+v", st.ContainerStatuses[0].State)
	}
	if res.RequeueAfter == 0 {
		t.Errorf("no retry scheduled after a failed pull")
	}
	// Next sync within the back-off: ImagePullBackOff.
	if _, err := e.syncer.Sync(context.Background(), p.UID); err != nil {
		t.Fatal(err)
	}
	if w := e.status.last[p.UID].ContainerStatuses[1].State.Waiting; w == nil || w.Reason != runtime.ReasonImagePullBackOff {
		t.Fatalf("second sync: %+v, want ImagePullBackOff", w)
	}
}

func TestSyncRejectedPodFails(t *testing.T) {
	e := newEnv(t, rejectAll{})
	p := newPod()
	e.pods.pods[p.UID] = p
	if _, err := e.syncer.Sync(context.Background(), p.UID); err != nil {
		t.Fatal(err)
	}
	st := e.status.last[p.UID]
	if st.Phase != v1.PodFailed || st.Reason != "OutOfcpu" {
		t.Fatalf("rejected pod status = %s/%s", st.Phase, st.Reason)
	}
	for _, c := range e.rs.GetCalls() {
		if c == "RunPodSandbox" {
			t.Fatal("a rejected pod got a sandbox")
		}
	}
}

func TestImageEvents(t *testing.T) {
	tests := []struct {
		name  string
		image string
		want  []string
	}{
		{name: "present image: Pulled only", image: "busybox:1.36", want: []string{
			`Normal Pulled Container image "busybox:1.36" already present on machine`,
		}},
		{name: "missing image: Pulling then Pulled", image: "example.com/app:1.0", want: []string{
			`Normal Pulling Pulling image "example.com/app:1.0"`,
			`Normal Pulled Successfully pulled image "example.com/app:1.0" in `,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			rec := record.NewFakeRecorder(100)
			e.syncer.d.Recorder = rec
			p := newPod()
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.Containers[0].Image = tc.image
			e.pods.pods[p.UID] = p
			if _, err := e.syncer.Sync(context.Background(), p.UID); err != nil {
				t.Fatal(err)
			}
			close(rec.Events)
			var got []string
			for ev := range rec.Events {
				if strings.Contains(ev, " Pull") {
					got = append(got, ev)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("image events %q, want %q", got, tc.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("event %d = %q, want %q...", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func countCalls(calls []string, names ...string) map[string]int {
	out := map[string]int{}
	for _, c := range calls {
		for _, n := range names {
			if c == n {
				out[n]++
			}
		}
	}
	return out
}

// With the pod cache, a burst of pod starts costs the runtime one listing per pod (after its
// actions) instead of two per sync, and a sync after a relist plans from the relist.
func TestSyncUsesPodCache(t *testing.T) {
	c := pleg.NewCache()
	e := newEnvWithCache(t, nil, c)
	rt := runtime.New(e.rs, e.is, time.Second, zap.NewNop())
	relist := func() {
		at := time.Now()
		pods, err := rt.Relist(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.SetAll(pods, at)
	}
	relist() // the PLEG has run: the new pod has nothing in the runtime
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	steps := []struct {
		name      string
		before    func()
		wantLists int
		wantRuns  int
		wantCalls string
	}{
		{name: "first sync lists only after its actions", before: func() {}, wantLists: 1, wantRuns: 1},
		{name: "next sync reads its own listing", before: func() {}, wantLists: 0},
		{name: "sync after a relist reads the relist", before: relist, wantLists: 0},
		{name: "a container exited: the relist shows it and the sync restarts it", before: func() {
			for _, ctr := range e.rs.Containers {
				if ctr.Metadata.Name == "a" {
					ctr.State = 2 // CONTAINER_EXITED
				}
			}
			relist()
		}, wantLists: 1, wantCalls: "StartContainer"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.before()
			before := len(e.rs.GetCalls())
			if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
				t.Fatal(err)
			}
			calls := e.rs.GetCalls()[before:]
			n := countCalls(calls, "ListPodSandbox", "ListContainers", "RunPodSandbox", "StartContainer")
			if n["ListPodSandbox"] != st.wantLists || n["ListContainers"] != st.wantLists {
				t.Errorf("list calls %v, want %d of each: %v", n, st.wantLists, calls)
			}
			if n["RunPodSandbox"] != st.wantRuns {
				t.Errorf("RunPodSandbox called %d times, want %d", n["RunPodSandbox"], st.wantRuns)
			}
			if st.wantCalls != "" && n[st.wantCalls] == 0 {
				t.Errorf("no %s: %v", st.wantCalls, calls)
			}
			if got := e.status.last[p.UID]; got.Phase != v1.PodRunning {
				t.Errorf("phase %s, want Running", got.Phase)
			}
		})
	}
}

// staleCache answers "nothing in the runtime" for every pod, observed at at, and keeps nothing.
type staleCache struct{ at time.Time }

func (s staleCache) Get(_ types.UID, notBefore time.Time) (*runtime.PodState, bool) {
	return nil, !notBefore.After(s.at)
}
func (staleCache) Set(types.UID, *runtime.PodState, time.Time) {}

// A sync must not act on a runtime state observed before its own last action: a cache that
// still shows the pod without a sandbox must not get it a second one.
func TestSyncNeverPlansFromStateOlderThanItsActions(t *testing.T) {
	e := newEnvWithCache(t, nil, staleCache{at: time.Now()})
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	for range 3 {
		if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
			t.Fatal(err)
		}
	}
	if n := countCalls(e.rs.GetCalls(), "RunPodSandbox")["RunPodSandbox"]; n != 1 || len(e.rs.Sandboxes) != 1 {
		t.Fatalf("RunPodSandbox called %d times, %d sandboxes; want 1", n, len(e.rs.Sandboxes))
	}
}

type failingVolumes struct {
	fakeVolumes
	fail int
}

func (f *failingVolumes) Setup(ctx context.Context, pod *v1.Pod) (map[string]string, error) {
	if f.fail > 0 {
		f.fail--
		return nil, errors.New(`serviceaccounts "default" is forbidden: node: no relationship found`)
	}
	return f.fakeVolumes.Setup(ctx, pod)
}

// A volume that fails right after the pod is bound (TokenRequest before the API server's node
// authorizer saw the binding) is retried soon, then less often; success resets the back-off.
func TestSyncRetriesFailedMountSoonThenBacksOff(t *testing.T) {
	e := newEnv(t, nil)
	vols := &failingVolumes{fail: 6}
	e.syncer.d.Volumes = vols
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		res, err := e.syncer.Sync(ctx, p.UID)
		if err != nil {
			t.Fatal(err)
		}
		if res.RequeueAfter != w {
			t.Errorf("failure %d: retry after %s, want %s", i+1, res.RequeueAfter, w)
		}
	}
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	if e.status.last[p.UID].Phase != v1.PodRunning {
		t.Fatalf("pod not running once its volumes are set up: %+v", e.status.last[p.UID])
	}
	vols.fail = 1
	res, err := e.syncer.Sync(ctx, p.UID)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 200*time.Millisecond {
		t.Errorf("after a success the first retry is %s, want 200ms again", res.RequeueAfter)
	}
}

// slowVolumes finishes a new pod's volume setup only once the runtime has its sandbox, and
// checks that no container was created before the volumes were there.
type slowVolumes struct {
	fakeVolumes
	rs      *critest.FakeRuntimeService
	fail    error
	overlap bool // the sandbox appeared while the setup ran
	early   bool // a container was created before the setup returned
}

func (v *slowVolumes) Setup(ctx context.Context, pod *v1.Pod) (map[string]string, error) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		v.rs.Lock()
		n := len(v.rs.Sandboxes)
		created := slices.Contains(v.rs.Called, "CreateContainer")
		v.rs.Unlock()
		v.early = v.early || created
		if n > 0 {
			v.overlap = true
			break
		}
		time.Sleep(time.Millisecond)
	}
	if v.fail != nil {
		return nil, v.fail
	}
	return v.fakeVolumes.Setup(ctx, pod)
}

// A new pod's volumes (TokenRequest, ConfigMaps) are set up while the runtime makes its
// sandbox; its containers still start only with the volumes in place.
func TestSyncSetsUpVolumesWhileSandboxStarts(t *testing.T) {
	tests := []struct {
		name       string
		fail       error
		wantCreate bool
		wantRetry  time.Duration
	}{
		{name: "volumes ready: containers start after them", wantCreate: true},
		{name: "volumes fail: sandbox kept, no container, retried soon", fail: errors.New(`configmap "app" not found`), wantRetry: 200 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWithCache(t, nil, pleg.NewCache())
			rec := record.NewFakeRecorder(100)
			e.syncer.d.Recorder = rec
			vols := &slowVolumes{rs: e.rs, fail: tc.fail}
			e.syncer.d.Volumes = vols
			p := newPod()
			e.pods.pods[p.UID] = p
			res, err := e.syncer.Sync(context.Background(), p.UID)
			if err != nil {
				t.Fatal(err)
			}
			if !vols.overlap {
				t.Error("the sandbox was not made while the volumes were set up")
			}
			if vols.early {
				t.Error("a container was created before its volumes were set up")
			}
			calls := countCalls(e.rs.GetCalls(), "RunPodSandbox", "CreateContainer")
			if calls["RunPodSandbox"] != 1 || (calls["CreateContainer"] > 0) != tc.wantCreate {
				t.Errorf("runtime calls %v, want a sandbox and containers=%v", calls, tc.wantCreate)
			}
			if res.RequeueAfter != tc.wantRetry && tc.wantRetry != 0 {
				t.Errorf("retry after %s, want %s", res.RequeueAfter, tc.wantRetry)
			}
			st := e.status.last[p.UID]
			if tc.fail != nil {
				var mount []string
			drain:
				for {
					select {
					case ev := <-rec.Events:
						if strings.Contains(ev, "FailedMount") {
							mount = append(mount, ev)
						}
					default:
						break drain
					}
				}
				if len(mount) != 1 || !strings.Contains(mount[0], `configmap "app" not found`) {
					t.Errorf("FailedMount events %q", mount)
				}
				if st.Phase != v1.PodPending || st.ContainerStatuses[0].State.Waiting == nil {
					t.Errorf("status %s %+v, want Pending with waiting containers", st.Phase, st.ContainerStatuses)
				}
				// Volumes fixed: the next sync starts the containers in the same sandbox.
				vols.fail = nil
				if _, err := e.syncer.Sync(context.Background(), p.UID); err != nil {
					t.Fatal(err)
				}
				calls = countCalls(e.rs.GetCalls(), "RunPodSandbox", "CreateContainer")
				if calls["RunPodSandbox"] != 1 || calls["CreateContainer"] != 2 {
					t.Errorf("after the volumes recovered: runtime calls %v, want the one sandbox and 2 containers", calls)
				}
				st = e.status.last[p.UID]
			}
			if st.Phase != v1.PodRunning && tc.fail == nil {
				t.Errorf("phase %s, want Running", st.Phase)
			}
		})
	}
}

// When relisting stalls, the cache grows old: a sync then lists the pod itself rather than plan
// from a state older than MaxCacheAge.
func TestSyncListsWhenPodCacheIsStale(t *testing.T) {
	c := pleg.NewCache()
	e := newEnvWithCache(t, nil, c)
	p := newPod()
	e.pods.pods[p.UID] = p
	ctx := context.Background()
	if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		later     time.Duration
		wantLists int
	}{
		{name: "cache a second old is used", later: time.Second, wantLists: 0},
		{name: "cache older than MaxCacheAge is not", later: MaxCacheAge + time.Second, wantLists: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.syncer.d.Now = func() time.Time { return time.Now().Add(tc.later) }
			before := len(e.rs.GetCalls())
			if _, err := e.syncer.Sync(ctx, p.UID); err != nil {
				t.Fatal(err)
			}
			if n := countCalls(e.rs.GetCalls()[before:], "ListPodSandbox")["ListPodSandbox"]; n != tc.wantLists {
				t.Errorf("ListPodSandbox called %d times, want %d", n, tc.wantLists)
			}
		})
	}
}

// slotLog is a StartSlots that records, for each slot held, the runtime calls made while it was
// held, and whether an image pull started while one was held.
type slotLog struct {
	e           *env
	tickets     []uint64
	windows     [][2]int
	held        int
	pullsInSlot int
	pulls       int
}

func (s *slotLog) Ticket() uint64 { return 7 }

func (s *slotLog) Acquire(_ context.Context, t uint64) (func(), error) {
	s.tickets = append(s.tickets, t)
	s.held++
	rs0 := len(s.e.rs.GetCalls())
	return func() {
		s.held--
		s.windows = append(s.windows, [2]int{rs0, len(s.e.rs.GetCalls())})
	}, nil
}

// pullWatch wraps the image puller to see whether a slot is held when a pull starts.
type pullWatch struct {
	Images
	slots *slotLog
}

func (w pullWatch) EnsureImageNotify(ctx context.Context, pod *v1.Pod, c *v1.Container, sb *runtimeapi.PodSandboxConfig, pulling func()) (string, error) {
	return w.Images.EnsureImageNotify(ctx, pod, c, sb, func() {
		w.slots.pulls++
		if w.slots.held > 0 {
			w.slots.pullsInSlot++
		}
		if pulling != nil {
			pulling()
		}
	})
}

// The start cap covers the sandbox and each container's create+start, and nothing else: an
// image pull must not hold a slot other pods' starts wait for.
func TestStartCallsHoldASlotAndPullsDoNot(t *testing.T) {
	e := newEnv(t, nil)
	slots := &slotLog{e: e}
	e.syncer.d.StartSlots = slots
	e.syncer.d.Images = pullWatch{Images: e.syncer.d.Images, slots: slots}
	p := newPod()
	p.Spec.Containers[1].Image = "example.com/app:1.0" // not present: pulled
	e.pods.pods[p.UID] = p
	if _, err := e.syncer.Sync(context.Background(), p.UID); err != nil {
		t.Fatal(err)
	}
	if st := e.status.last[p.UID]; st.Phase != v1.PodRunning {
		t.Fatalf("phase %s, want Running", st.Phase)
	}
	if slots.held != 0 {
		t.Fatalf("%d slots still held after the sync", slots.held)
	}
	// One slot for the sandbox, one per container, all with the sync's one ticket.
	if len(slots.windows) != 3 {
		t.Fatalf("%d slots taken, want 3 (sandbox, a, b)", len(slots.windows))
	}
	for _, tk := range slots.tickets {
		if tk != 7 {
			t.Fatalf("tickets %v: every call of a sync should use its one ticket", slots.tickets)
		}
	}
	starts := 0
	for i, c := range e.rs.GetCalls() {
		switch c {
		case "RunPodSandbox", "CreateContainer", "StartContainer":
			starts++
			in := false
			for _, w := range slots.windows {
				in = in || (i >= w[0] && i < w[1])
			}
			if !in {
				t.Errorf("runtime call %d (%s) made without a start slot", i, c)
			}
		}
	}
	if starts != 5 {
		t.Fatalf("%d start calls, want 5 (1 sandbox, 2 creates, 2 starts)", starts)
	}
	if slots.pulls != 1 {
		t.Fatalf("%d pulls, want 1: the test did not exercise a pull", slots.pulls)
	}
	if slots.pullsInSlot != 0 {
		t.Fatal("an image pull started while holding a start slot")
	}
}
