package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// countingAPI counts reads and can hold them until released, to see concurrent misses share one.
type countingAPI struct {
	mu      sync.Mutex
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
	reads   map[string]int
	hold    chan struct{}
}

func (a *countingAPI) read(key string) {
	a.mu.Lock()
	a.reads[key]++
	hold := a.hold
	a.mu.Unlock()
	if hold != nil {
		<-hold
	}
}

func (a *countingAPI) count(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reads[key]
}

func (a *countingAPI) ConfigMap(_ context.Context, ns, name string) (*v1.ConfigMap, error) {
	a.read("cm/" + ns + "/" + name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.cms[ns+"/"+name]; ok {
		return c.DeepCopy(), nil
	}
	return nil, errors.New("not found")
}

func (a *countingAPI) Secret(_ context.Context, ns, name string) (*v1.Secret, error) {
	a.read("secret/" + ns + "/" + name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.secrets[ns+"/"+name]; ok {
		return s.DeepCopy(), nil
	}
	return nil, errors.New("not found")
}

func (a *countingAPI) CreateToken(_ context.Context, _, _ string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	out := req.DeepCopy()
	out.Status.Token = "tok"
	out.Status.ExpirationTimestamp = metav1.NewTime(clockNow.Add(time.Hour))
	return out, nil
}

func podWithConfigMapAndSecret(uid types.UID) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: string(uid), Namespace: "ns", UID: uid}, Spec: v1.PodSpec{Volumes: []v1.Volume{
		{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "app"}}}},
		{Name: "creds", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "pw"}}},
	}}}
}

func TestConfigMapsAndSecretsAreCachedForTTL(t *testing.T) {
	now := clockNow
	api := &countingAPI{
		cms:     map[string]*v1.ConfigMap{"ns/app": {Data: map[string]string{"k": "v1"}}},
		secrets: map[string]*v1.Secret{"ns/pw": {Data: map[string][]byte{"p": []byte("s1")}}},
		reads:   map[string]int{},
	}
	m := NewManager(t.TempDir(), api, fields, func() time.Time { return now }, zap.NewNop())
	ctx := context.Background()
	read := func(pod *v1.Pod, vol, file string) string {
		t.Helper()
		paths, err := m.Setup(ctx, pod)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(paths[vol], file))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a, b := podWithConfigMapAndSecret("a"), podWithConfigMapAndSecret("b")

	t.Run("pods sharing objects read them once", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			read(a, "cfg", "k")
			read(b, "cfg", "k")
		}
		if n, s := api.count("cm/ns/app"), api.count("secret/ns/pw"); n != 1 || s != 1 {
			t.Errorf("configMap read %d times, secret %d times; want 1 each", n, s)
		}
	})
	t.Run("a change reaches running pods after the TTL", func(t *testing.T) {
		api.mu.Lock()
		api.cms["ns/app"] = &v1.ConfigMap{Data: map[string]string{"k": "v2"}}
		api.secrets["ns/pw"] = &v1.Secret{Data: map[string][]byte{"p": []byte("s2")}}
		api.mu.Unlock()
		now = now.Add(ObjectTTL / 2)
		if got := read(a, "cfg", "k"); got != "v1" {
			t.Errorf("within the TTL: %q, want the cached v1", got)
		}
		now = now.Add(ObjectTTL)
		if got := read(a, "cfg", "k"); got != "v2" {
			t.Errorf("after the TTL: configMap key = %q, want v2", got)
		}
		if got := read(b, "creds", "p"); got != "s2" {
			t.Errorf("after the TTL: secret key = %q, want s2", got)
		}
		if n := api.count("cm/ns/app"); n != 2 {
			t.Errorf("configMap read %d times, want 2", n)
		}
	})
	t.Run("a missing object is read again on the next sync", func(t *testing.T) {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", UID: "c"}, Spec: v1.PodSpec{Volumes: []v1.Volume{
			{Name: "late", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "late"}}}},
		}}}
		if _, err := m.Setup(ctx, p); err == nil {
			t.Fatal("setup succeeded without the configMap")
		}
		api.mu.Lock()
		api.cms["ns/late"] = &v1.ConfigMap{Data: map[string]string{"x": "here"}}
		api.mu.Unlock()
		if got := read(p, "late", "x"); got != "here" {
			t.Errorf("created configMap: %q, want here", got)
		}
	})
}

func TestConcurrentMissesShareOneRead(t *testing.T) {
	api := &countingAPI{cms: map[string]*v1.ConfigMap{"ns/app": {Data: map[string]string{"k": "v"}}}, reads: map[string]int{}, hold: make(chan struct{})}
	c := newObjectCache(api, ObjectTTL, func() time.Time { return clockNow })
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cm, err := c.ConfigMap(context.Background(), "ns", "app")
			if err == nil && cm.Data["k"] != "v" {
				err = errors.New("wrong data")
			}
			errs <- err
		}()
	}
	// Let the first read reach the API, then give the others time to queue behind it.
	for api.count("cm/ns/app") == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(api.hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := api.count("cm/ns/app"); n != 1 {
		t.Errorf("%d reads for 10 concurrent misses, want 1", n)
	}
}

func TestUnchangedVolumeIsNotRewritten(t *testing.T) {
	now := clockNow
	api := &fakeAPI{cms: map[string]*v1.ConfigMap{"team/kube-root-ca.crt": {Data: map[string]string{"ca.crt": "CA"}}}, now: &now}
	m := NewManager(t.TempDir(), api, fields, func() time.Time { return now }, zap.NewNop())
	pod := kubeAPIAccessPod()
	setup := func() (dir, data string) {
		t.Helper()
		paths, err := m.Setup(context.Background(), pod)
		if err != nil {
			t.Fatal(err)
		}
		dir = paths["kube-api-access-x"]
		data, err = os.Readlink(filepath.Join(dir, dataLink))
		if err != nil {
			t.Fatal(err)
		}
		return dir, data
	}
	dir, first := setup()
	now = now.Add(10 * time.Minute)
	if _, again := setup(); again != first {
		t.Errorf("unchanged volume rewritten: ..data %s -> %s", first, again)
	}
	// Past 80% of the token's lifetime the new token is written.
	now = now.Add(50 * time.Minute)
	if _, later := setup(); later == first {
		t.Error("refreshed token did not rewrite the volume")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "token")); string(b) != "token-2" {
		t.Errorf("token = %q, want token-2", b)
	}
	// A volume removed behind the kubelet's back is written again.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	setup()
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); string(b) != "CA" {
		t.Errorf("ca.crt after the volume was removed = %q, want CA", b)
	}
}
