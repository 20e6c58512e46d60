package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	steps := []struct {
		name        string
		payload     map[string]File
		wantChanged bool
	}{
		{name: "first write", payload: map[string]File{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o600}}, wantChanged: true},
		{name: "same content is a no-op", payload: map[string]File{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o600}}},
		{name: "update and remove a key", payload: map[string]File{"a": {Data: []byte("new"), Mode: 0o644}}, wantChanged: true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			changed, err := WriteAtomic(dir, st.payload, -1)
			if err != nil {
				t.Fatal(err)
			}
			if changed != st.wantChanged {
				t.Errorf("changed = %v, want %v", changed, st.wantChanged)
			}
			for p, f := range st.payload {
				b, err := os.ReadFile(filepath.Join(dir, p))
				if err != nil || string(b) != string(f.Data) {
					t.Errorf("%s = %q, %v; want %q", p, b, err, f.Data)
				}
				fi, _ := os.Stat(filepath.Join(dir, p))
				if fi != nil && fi.Mode().Perm() != f.Mode {
					t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), f.Mode)
				}
			}
			entries, _ := os.ReadDir(dir)
			visible, tsDirs := 0, 0
			for _, e := range entries {
				switch {
				case e.Name() == dataLink:
				case strings.HasPrefix(e.Name(), ".."):
					tsDirs++
				default:
					visible++
					if e.Type()&os.ModeSymlink == 0 {
						t.Errorf("%s is not a symlink through ..data", e.Name())
					}
				}
			}
			tops := map[string]bool{}
			for p := range st.payload {
				tops[strings.SplitN(p, "/", 2)[0]] = true
			}
			if visible != len(tops) || tsDirs != 1 {
				t.Errorf("dir has %d visible names and %d data dirs, want %d and 1", visible, tsDirs, len(tops))
			}
		})
	}
	if _, err := WriteAtomic(dir, map[string]File{"../escape": {}}, -1); err == nil {
		t.Error("a path with .. was accepted")
	}
}

type fakeAPI struct {
	cms      map[string]*v1.ConfigMap
	requests []*authv1.TokenRequest
	sa       []string
	fail     bool
	// refuse is how many token requests fail the way they do before the API server saw the
	// pod bound to the node.
	refuse int
	now    *time.Time
}

func (f *fakeAPI) ConfigMap(_ context.Context, ns, name string) (*v1.ConfigMap, error) {
	if c, ok := f.cms[ns+"/"+name]; ok {
		return c, nil
	}
	return nil, errors.New("not found")
}

func (f *fakeAPI) Secret(context.Context, string, string) (*v1.Secret, error) {
	return nil, errors.New("not found")
}

func (f *fakeAPI) CreateToken(_ context.Context, ns, sa string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	if f.fail {
		return nil, errors.New("apiserver down")
	}
	if f.refuse > 0 {
		f.refuse--
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts/token"}, sa, errors.New("node: no relationship found between node 'n1' and this object"))
	}
	f.requests = append(f.requests, req)
	f.sa = append(f.sa, ns+"/"+sa)
	out := req.DeepCopy()
	out.Status.Token = "token-" + string(rune('0'+len(f.requests)))
	out.Status.ExpirationTimestamp = metav1.NewTime(f.now.Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second))
	return out, nil
}

var clockNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// kubeAPIAccessPod is a pod as the API server's admission leaves it: with the projected
// kube-api-access volume every pod gets.
func kubeAPIAccessPod() *v1.Pod {
	exp := int64(3607)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team", UID: "uid-1"},
		Spec: v1.PodSpec{
			ServiceAccountName: "builder",
			Volumes: []v1.Volume{{Name: "kube-api-access-x", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
				{ServiceAccountToken: &v1.ServiceAccountTokenProjection{ExpirationSeconds: &exp, Path: "token"}},
				{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			}}}}, {Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}},
		},
	}
}

func fields(pod *v1.Pod, path string) (string, error) {
	if path == "metadata.namespace" {
		return pod.Namespace, nil
	}
	return "", errors.New("unsupported")
}

func TestProjectedServiceAccountVolume(t *testing.T) {
	root := t.TempDir()
	now := clockNow
	api := &fakeAPI{cms: map[string]*v1.ConfigMap{"team/kube-root-ca.crt": {Data: map[string]string{"ca.crt": "CA"}}}, now: &now}
	m := NewManager(root, api, fields, func() time.Time { return now }, zap.NewNop())
	pod := kubeAPIAccessPod()
	paths, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	dir := paths["kube-api-access-x"]
	for file, want := range map[string]string{"token": "token-1", "ca.crt": "CA", "namespace": "team"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", file, b, err, want)
		}
	}
	if len(api.requests) != 1 || api.sa[0] != "team/builder" {
		t.Fatalf("token requests %v for %v", api.requests, api.sa)
	}
	ref := api.requests[0].Spec.BoundObjectRef
	if ref == nil || ref.Kind != "Pod" || ref.UID != "uid-1" || len(api.requests[0].Spec.Audiences) != 0 {
		t.Errorf("token request not bound to the pod with the default audience: %+v", api.requests[0].Spec)
	}
	if fi, err := os.Stat(paths["scratch"]); err != nil || !fi.IsDir() {
		t.Errorf("emptyDir: %v", err)
	}

	// A sync soon after reuses the token; past 80% of its lifetime a new one is requested.
	now = now.Add(30 * time.Minute)
	if _, err := m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if len(api.requests) != 1 {
		t.Fatalf("token re-requested after 30 min: %d requests", len(api.requests))
	}
	now = now.Add(20 * time.Minute)
	if _, err := m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "token")); string(b) != "token-2" || len(api.requests) != 2 {
		t.Errorf("after 50 min token = %q with %d requests, want a refreshed token", b, len(api.requests))
	}

	// While the API is down, a still-valid token stays.
	api.fail = true
	now = now.Add(50 * time.Minute)
	if _, err := m.Setup(context.Background(), pod); err != nil {
		t.Errorf("setup failed while the current token is still valid: %v", err)
	}

	if err := m.Teardown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.PodDir(pod.UID)); !os.IsNotExist(err) {
		t.Errorf("pod dir still there after teardown: %v", err)
	}
}

func TestMissingConfigMapNamesIt(t *testing.T) {
	m := NewManager(t.TempDir(), &fakeAPI{}, fields, time.Now, zap.NewNop())
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}, Spec: v1.PodSpec{Volumes: []v1.Volume{
		{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "absent"}}}},
	}}}
	_, err := m.Setup(context.Background(), pod)
	if err == nil || !strings.Contains(err.Error(), `"cfg"`) || !strings.Contains(err.Error(), `"absent"`) {
		t.Fatalf("err = %v, want one naming the volume and the configMap", err)
	}
	opt := true
	pod.Spec.Volumes[0].ConfigMap.Optional = &opt
	if _, err := m.Setup(context.Background(), pod); err != nil {
		t.Fatalf("optional configMap: %v", err)
	}
}

func TestMemoryEmptyDirIsTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts a tmpfs)")
	}
	m := NewManager(t.TempDir(), &fakeAPI{}, fields, time.Now, zap.NewNop())
	limit := resource.MustParse("8Mi")
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "mem-uid"}, Spec: v1.PodSpec{Volumes: []v1.Volume{
		{Name: "cache", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory, SizeLimit: &limit}}},
	}}}
	t.Cleanup(func() { _ = unmountUnder(m.PodDir(pod.UID)) })
	for i := 0; i < 2; i++ { // a second sync must not stack a second mount
		if _, err := m.Setup(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(m.PodDir(pod.UID), "volumes", "kubernetes.io~empty-dir", "cache")
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("filesystem type %x, want tmpfs", st.Type)
	}
	if size := int64(st.Blocks) * st.Bsize; size != 8<<20 {
		t.Errorf("tmpfs size = %d, want the 8Mi sizeLimit", size)
	}
	mps, _ := mountPoints()
	n := 0
	for _, mp := range mps {
		if mp == dir {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d mounts at %s, want 1", n, dir)
	}
	if err := m.Teardown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if ok, _ := isMountPoint(dir); ok {
		t.Error("tmpfs still mounted after teardown")
	}
	if _, err := os.Stat(m.PodDir(pod.UID)); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
}

func TestTokenForJustBoundPod(t *testing.T) {
	tests := []struct {
		name     string
		refuse   int
		wantErr  bool
		wantReqs int
	}{
		{name: "refused once while the authorizer catches up: asked again in the same setup", refuse: 1, wantReqs: 1},
		{name: "refused as long as the retries last: the setup fails naming the cause", refuse: 3, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := clockNow
			api := &fakeAPI{cms: map[string]*v1.ConfigMap{"team/kube-root-ca.crt": {Data: map[string]string{"ca.crt": "CA"}}}, now: &now, refuse: tc.refuse}
			m := NewManager(t.TempDir(), api, fields, func() time.Time { return now }, zap.NewNop())
			m.tokenRetry = []time.Duration{time.Millisecond, time.Millisecond}
			_, err := m.Setup(context.Background(), kubeAPIAccessPod())
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "no relationship found") {
					t.Fatalf("err = %v, want the API server's refusal", err)
				}
				return
			}
			if err != nil || len(api.requests) != tc.wantReqs {
				t.Fatalf("err = %v with %d granted requests, want success", err, len(api.requests))
			}
		})
	}
}
