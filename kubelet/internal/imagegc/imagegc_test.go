package imagegc

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestBytesToFree(t *testing.T) {
	p := Policy{HighPercent: 85, LowPercent: 80}
	for _, tc := range []struct {
		name                string
		capacity, available uint64
		policy              Policy
		want                uint64
	}{
		{"below high", 1000, 200, p, 0},
		{"exactly high", 1000, 150, p, 0},
		{"above high frees down to low", 1000, 100, p, 100},
		{"full disk", 1000, 0, p, 200},
		{"disabled at 100", 1000, 0, Policy{HighPercent: 100, LowPercent: 80}, 0},
		{"no capacity reported", 0, 0, p, 0},
		{"everything when low is 0", 1000, 500, Policy{HighPercent: 1, LowPercent: 0}, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := BytesToFree(tc.capacity, tc.available, tc.policy); got != tc.want {
				t.Errorf("BytesToFree(%d, %d) = %d, want %d", tc.capacity, tc.available, got, tc.want)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(10 * time.Minute)
	cands := []Candidate{
		{ID: "used-recently", Size: 10, FirstDetected: t0, LastUsed: t0.Add(9 * time.Minute)},
		{ID: "used-long-ago", Size: 10, FirstDetected: t0, LastUsed: t0.Add(time.Minute)},
		{ID: "never-used-b", Size: 10, FirstDetected: t0.Add(time.Minute)},
		{ID: "never-used-a", Size: 10, FirstDetected: t0},
		{ID: "young", Size: 100, FirstDetected: now.Add(-time.Minute)},
	}
	ids := func(cs []Candidate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		minAge time.Duration
		bytes  uint64
		want   []string
	}{
		{"nothing to free", 2 * time.Minute, 0, nil},
		{"one image suffices", 2 * time.Minute, 5, []string{"never-used-a"}},
		{"never used before least recently used", 2 * time.Minute, 30, []string{"never-used-a", "never-used-b", "used-long-ago"}},
		{"young images are kept even when not enough is freed", 2 * time.Minute, 1000, []string{"never-used-a", "never-used-b", "used-long-ago", "used-recently"}},
		{"no minimum age: every never-used image precedes the used ones", 0, 1000, []string{"never-used-a", "never-used-b", "young", "used-long-ago", "used-recently"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(Select(cands, now, tc.minAge, tc.bytes)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Select = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeCRI is a stateful image store whose filesystem fills with the images it holds.
type fakeCRI struct {
	mu         sync.Mutex
	images     map[string]*runtimeapi.Image
	containers []*runtimeapi.Container
	capacity   uint64
	other      uint64 // bytes used by something else than images
	removed    []string
	removeErr  map[string]error
}

func (f *fakeCRI) ListImages(context.Context, *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.Image
	for _, img := range f.images {
		out = append(out, img)
	}
	return out, nil
}

func (f *fakeCRI) RemoveImage(_ context.Context, spec *runtimeapi.ImageSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.removeErr[spec.Image]; err != nil {
		return err
	}
	if _, ok := f.images[spec.Image]; !ok {
		return errors.New("no such image " + spec.Image)
	}
	delete(f.images, spec.Image)
	f.removed = append(f.removed, spec.Image)
	return nil
}

func (f *fakeCRI) ImageFsInfo(context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: "/var/lib/containerd/snapshots"}}}}, nil
}

func (f *fakeCRI) ListContainers(context.Context, *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*runtimeapi.Container(nil), f.containers...), nil
}

func (f *fakeCRI) stat(path string) (uint64, uint64, error) {
	if path != "/var/lib/containerd/snapshots" {
		return 0, 0, errors.New("statfs of the wrong path " + path)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	used := f.other
	for _, img := range f.images {
		used += img.Size
	}
	return f.capacity, f.capacity - used, nil
}

func (f *fakeCRI) add(id string, size uint64, tags ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[id] = &runtimeapi.Image{Id: id, RepoTags: tags, Size: size}
}

func (f *fakeCRI) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.images {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func TestManagerCollects(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	cri := &fakeCRI{images: map[string]*runtimeapi.Image{}, capacity: 1000, other: 100}
	cri.add("sha256:running", 100, "docker.io/library/app:1")
	cri.add("sha256:exited", 100, "docker.io/library/job:1")
	cri.add("sha256:pinned", 100, "example.com/pinned:1")
	cri.images["sha256:pinned"].Pinned = true
	cri.add("sha256:pause", 100, "registry.k8s.io/pause:3.10")
	cri.add("sha256:never-used", 100, "docker.io/library/old:1")
	cri.add("sha256:was-used", 100, "docker.io/library/was:1")
	cri.containers = []*runtimeapi.Container{
		// containerd reports the image ID as ImageRef; the spec may name the tag.
		{Id: "c1", State: runtimeapi.ContainerState_CONTAINER_RUNNING, ImageRef: "sha256:running", Image: &runtimeapi.ImageSpec{Image: "docker.io/library/app:1"}},
		{Id: "c2", State: runtimeapi.ContainerState_CONTAINER_EXITED, ImageRef: "sha256:exited", Image: &runtimeapi.ImageSpec{Image: "sha256:exited"}},
		{Id: "c3", State: runtimeapi.ContainerState_CONTAINER_RUNNING, ImageRef: "sha256:was-used", Image: &runtimeapi.ImageSpec{Image: "docker.io/library/was:1"}},
	}
	m, err := New(Config{Policy: Policy{HighPercent: 50, LowPercent: 40, MinAge: 2 * time.Minute}, SandboxImage: "registry.k8s.io/pause:3.10"}, cri, cri, cri.stat, func() time.Time { return now }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// 700 of 1000 used (70%), above 50%, but every unused image is younger than the minimum age.
	if err := m.GarbageCollect(ctx); err == nil || !strings.Contains(err.Error(), "only 0 bytes were eligible") {
		t.Fatalf("first collection: err = %v, want a shortfall error", err)
	}
	if len(cri.removed) != 0 {
		t.Fatalf("removed %v before imageMinimumGCAge passed", cri.removed)
	}

	// Later: the container of was-used is gone, a new image arrives; 800 used (80%): free 200
	// to reach 40%... only never-used and was-used may go (the new one is too young).
	now = t0.Add(5 * time.Minute)
	cri.containers = cri.containers[:2]
	cri.add("sha256:new", 100, "docker.io/library/new:1")
	err = m.GarbageCollect(ctx)
	if err == nil {
		t.Fatal("collection freed less than wanted but reported no error")
	}
	if want := []string{"sha256:never-used", "sha256:was-used"}; !reflect.DeepEqual(cri.removed, want) {
		t.Errorf("removed %v, want %v (never used first, then least recently used)", cri.removed, want)
	}
	if want := []string{"sha256:exited", "sha256:new", "sha256:pause", "sha256:pinned", "sha256:running"}; !reflect.DeepEqual(cri.ids(), want) {
		t.Errorf("images left %v, want %v", cri.ids(), want)
	}

	// Once the new image is old enough it goes too; what is in use, pinned or the sandbox image stays.
	now = t0.Add(10 * time.Minute)
	if err := m.GarbageCollect(ctx); err != nil {
		t.Logf("collection: %v", err)
	}
	if want := []string{"sha256:exited", "sha256:pause", "sha256:pinned", "sha256:running"}; !reflect.DeepEqual(cri.ids(), want) {
		t.Errorf("images left %v, want %v", cri.ids(), want)
	}
}

func TestManagerBelowThresholdKeepsImages(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cri := &fakeCRI{images: map[string]*runtimeapi.Image{}, capacity: 1000}
	cri.add("sha256:unused", 100, "docker.io/library/old:1")
	m, err := New(Config{Policy: Policy{HighPercent: 85, LowPercent: 80}}, cri, cri, cri.stat, func() time.Time { return now }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	if err := m.GarbageCollect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(cri.removed) != 0 {
		t.Errorf("removed %v at 10%% usage", cri.removed)
	}
	// Disk pressure reclaim removes every unused image old enough, whatever the thresholds.
	freed, err := m.DeleteUnused(context.Background())
	if err != nil || freed != 100 || len(cri.removed) != 1 {
		t.Errorf("DeleteUnused = %d, %v; removed %v", freed, err, cri.removed)
	}
}

func TestManagerReportsRemoveErrors(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cri := &fakeCRI{images: map[string]*runtimeapi.Image{}, capacity: 1000, removeErr: map[string]error{"sha256:stuck": errors.New("image is in use")}}
	cri.add("sha256:stuck", 100, "docker.io/library/stuck:1")
	cri.add("sha256:ok", 100, "docker.io/library/ok:1")
	m, _ := New(Config{Policy: Policy{HighPercent: 85, LowPercent: 80}}, cri, cri, cri.stat, func() time.Time { return now }, zap.NewNop())
	freed, err := m.DeleteUnused(context.Background())
	if err == nil || !strings.Contains(err.Error(), "sha256:stuck") || freed != 100 {
		t.Errorf("DeleteUnused = %d, %v; want 100 freed and an error naming the stuck image", freed, err)
	}
}

func TestSandboxImage(t *testing.T) {
	status := func(info map[string]string, err error) func(context.Context, bool) (*runtimeapi.StatusResponse, error) {
		return func(_ context.Context, verbose bool) (*runtimeapi.StatusResponse, error) {
			if !verbose {
				t.Error("status asked without verbose: no config in the answer")
			}
			return &runtimeapi.StatusResponse{Info: info}, err
		}
	}
	for _, tc := range []struct {
		name string
		info map[string]string
		err  error
		want string
	}{
		{"containerd config", map[string]string{"config": `{"sandboxImage":"registry.k8s.io/pause:3.10","other":1}`}, nil, "registry.k8s.io/pause:3.10"},
		{"no config", map[string]string{}, nil, ""},
		{"status fails", nil, errors.New("down"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SandboxImage(context.Background(), status(tc.info, tc.err)); got != tc.want {
				t.Errorf("SandboxImage = %q, want %q", got, tc.want)
			}
		})
	}
}
