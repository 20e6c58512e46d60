// Package volume sets up the volumes of a pod on the node: emptyDir, hostPath, configMap,
// secret, downwardAPI and projected (service account tokens from TokenRequest, the
// kube-root-ca.crt ConfigMap, the namespace). Contents that come from the API are written
// atomically; ConfigMaps and Secrets are read through a TTL cache (ObjectTTL) and a volume is
// rewritten only when its contents changed.
package volume

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// API reads what volumes need from the API server (through the node's client).
type API interface {
	ConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*v1.Secret, error)
	CreateToken(ctx context.Context, namespace, serviceAccount string, req *authv1.TokenRequest) (*authv1.TokenRequest, error)
}

// FieldResolver resolves downward-API fields (shared with env resolution). Resource fields
// come as ResourceFieldPath strings.
type FieldResolver func(pod *v1.Pod, fieldPath string) (string, error)

// ResourceFieldPath encodes a resourceFieldRef for a FieldResolver:
// "resource:<container>:<resource>:<divisor>".
func ResourceFieldPath(r *v1.ResourceFieldSelector) string {
	return "resource:" + r.ContainerName + ":" + r.Resource + ":" + r.Divisor.String()
}

// Manager sets up and tears down pod volumes under <root>/pods/<uid>/volumes.
type Manager struct {
	root    string
	api     API
	objects *objectCache
	fields  FieldResolver
	log     *zap.Logger
	now     func() time.Time
	// tokenRetry are the waits before asking again for a new pod's first token when the API
	// server refused it as if the pod were not bound here yet.
	tokenRetry []time.Duration

	mu      sync.Mutex
	tokens  map[string]*authv1.TokenRequest // key: pod uid/volume/audience
	written map[string][sha256.Size]byte    // volume dir -> digest of the payload last written there
}

// NewManager returns a volume manager rooted at the kubelet's root dir.
func NewManager(root string, api API, fields FieldResolver, now func() time.Time, log *zap.Logger) *Manager {
	return &Manager{
		root: root, api: api, objects: newObjectCache(api, ObjectTTL, now), fields: fields, log: log, now: now,
		tokenRetry: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		tokens:     map[string]*authv1.TokenRequest{}, written: map[string][sha256.Size]byte{},
	}
}

// PodDir is the pod's directory on the node.
func (m *Manager) PodDir(uid types.UID) string { return filepath.Join(m.root, "pods", string(uid)) }

func (m *Manager) volDir(uid types.UID, plugin, name string) string {
	return filepath.Join(m.PodDir(uid), "volumes", plugin, name)
}

// Setup makes every volume of the pod present and current and returns the host path of each
// by volume name. It is idempotent and cheap when nothing changed.
func (m *Manager) Setup(ctx context.Context, pod *v1.Pod) (map[string]string, error) {
	out := map[string]string{}
	gid := -1
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		gid = int(*sc.FSGroup)
	}
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		path, err := m.setupOne(ctx, pod, vol, gid)
		if err != nil {
			return nil, fmt.Errorf("volume %q of pod %s/%s: %w", vol.Name, pod.Namespace, pod.Name, err)
		}
		out[vol.Name] = path
	}
	return out, nil
}

func (m *Manager) setupOne(ctx context.Context, pod *v1.Pod, vol *v1.Volume, gid int) (string, error) {
	src := vol.VolumeSource
	switch {
	case src.EmptyDir != nil:
		dir := m.volDir(pod.UID, "kubernetes.io~empty-dir", vol.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
		if src.EmptyDir.Medium == v1.StorageMediumMemory {
			if err := mountTmpfs(dir, src.EmptyDir.SizeLimit); err != nil {
				return "", err
			}
		}
		// Everyone in the pod may write, whatever user it runs as (upstream does the same).
		return dir, os.Chmod(dir, 0o777)
	case src.HostPath != nil:
		return hostPath(src.HostPath)
	case src.ConfigMap != nil:
		payload, err := m.configMapPayload(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, mode(src.ConfigMap.DefaultMode))
		if err != nil {
			return "", err
		}
		return m.write(pod.UID, "kubernetes.io~configmap", vol.Name, payload, gid)
	case src.Secret != nil:
		payload, err := m.secretPayload(ctx, pod.Namespace, src.Secret.SecretName, src.Secret.Items, src.Secret.Optional, mode(src.Secret.DefaultMode))
		if err != nil {
			return "", err
		}
		return m.write(pod.UID, "kubernetes.io~secret", vol.Name, payload, gid)
	case src.DownwardAPI != nil:
		payload, err := m.downwardPayload(pod, src.DownwardAPI.Items, mode(src.DownwardAPI.DefaultMode))
		if err != nil {
			return "", err
		}
		return m.write(pod.UID, "kubernetes.io~downward-api", vol.Name, payload, gid)
	case src.Projected != nil:
		payload, err := m.projectedPayload(ctx, pod, vol.Name, src.Projected)
		if err != nil {
			return "", err
		}
		return m.write(pod.UID, "kubernetes.io~projected", vol.Name, payload, gid)
	}
	return "", fmt.Errorf("volume type is not supported by this kubelet")
}

func mode(m *int32) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m)
}

func (m *Manager) write(uid types.UID, plugin, name string, payload map[string]File, gid int) (string, error) {
	dir := m.volDir(uid, plugin, name)
	// Most syncs change nothing: compare with what this kubelet last wrote instead of reading
	// the volume back. ..data must still be there (a restarted kubelet or a removed dir writes).
	sum := digest(payload, gid)
	m.mu.Lock()
	last, ok := m.written[dir]
	m.mu.Unlock()
	if ok && last == sum {
		if _, err := os.Lstat(filepath.Join(dir, dataLink)); err == nil {
			return dir, nil
		}
	}
	if _, err := WriteAtomic(dir, payload, gid); err != nil {
		return "", err
	}
	m.mu.Lock()
	m.written[dir] = sum
	m.mu.Unlock()
	return dir, nil
}

// digest identifies a payload: paths, modes, contents and the owning group.
func digest(payload map[string]File, gid int) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "gid=%d\n", gid)
	for _, p := range sortedKeys(payload) {
		f := payload[p]
		fmt.Fprintf(h, "%q %o %d\n", p, f.Mode, len(f.Data))
		h.Write(f.Data)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func hostPath(hp *v1.HostPathVolumeSource) (string, error) {
	t := v1.HostPathUnset
	if hp.Type != nil {
		t = *hp.Type
	}
	st, err := os.Stat(hp.Path)
	switch t {
	case v1.HostPathDirectoryOrCreate:
		if os.IsNotExist(err) {
			return hp.Path, os.MkdirAll(hp.Path, 0o755)
		}
	case v1.HostPathFileOrCreate:
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(hp.Path), 0o755); err != nil {
				return "", err
			}
			f, err := os.OpenFile(hp.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return "", err
			}
			return hp.Path, f.Close()
		}
	case v1.HostPathDirectory:
		if err != nil || !st.IsDir() {
			return "", fmt.Errorf("hostPath %s is not a directory", hp.Path)
		}
	case v1.HostPathFile:
		if err != nil || !st.Mode().IsRegular() {
			return "", fmt.Errorf("hostPath %s is not a file", hp.Path)
		}
	case v1.HostPathSocket:
		if err != nil || st.Mode()&os.ModeSocket == 0 {
			return "", fmt.Errorf("hostPath %s is not a socket", hp.Path)
		}
	}
	return hp.Path, nil
}

func keyItems[V any](data map[string]V, items []v1.KeyToPath, def os.FileMode, conv func(V) []byte, what string) (map[string]File, error) {
	out := map[string]File{}
	if len(items) == 0 {
		for _, k := range sortedKeys(data) {
			out[k] = File{Data: conv(data[k]), Mode: def}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		md := def
		if it.Mode != nil {
			md = os.FileMode(*it.Mode)
		}
		out[it.Path] = File{Data: conv(v), Mode: md}
	}
	return out, nil
}

func (m *Manager) configMapPayload(ctx context.Context, ns, name string, items []v1.KeyToPath, optional *bool, def os.FileMode) (map[string]File, error) {
	cm, err := m.objects.ConfigMap(ctx, ns, name)
	if err != nil {
		if optional != nil && *optional {
			return map[string]File{}, nil
		}
		return nil, fmt.Errorf("configMap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyItems(data, items, def, func(b []byte) []byte { return b }, fmt.Sprintf("configMap %q", name))
}

func (m *Manager) secretPayload(ctx context.Context, ns, name string, items []v1.KeyToPath, optional *bool, def os.FileMode) (map[string]File, error) {
	s, err := m.objects.Secret(ctx, ns, name)
	if err != nil {
		if optional != nil && *optional {
			return map[string]File{}, nil
		}
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return keyItems(s.Data, items, def, func(b []byte) []byte { return b }, fmt.Sprintf("secret %q", name))
}

func (m *Manager) downwardPayload(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, def os.FileMode) (map[string]File, error) {
	out := map[string]File{}
	for _, it := range items {
		md := def
		if it.Mode != nil {
			md = os.FileMode(*it.Mode)
		}
		var val string
		switch {
		case it.FieldRef != nil:
			switch it.FieldRef.FieldPath {
			case "metadata.labels":
				val = formatMap(pod.Labels)
			case "metadata.annotations":
				val = formatMap(pod.Annotations)
			default:
				v, err := m.fields(pod, it.FieldRef.FieldPath)
				if err != nil {
					return nil, fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
				}
				val = v
			}
		case it.ResourceFieldRef != nil:
			v, err := m.fields(pod, ResourceFieldPath(it.ResourceFieldRef))
			if err != nil {
				return nil, fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
			}
			val = v
		}
		out[it.Path] = File{Data: []byte(val), Mode: md}
	}
	return out, nil
}

// formatMap writes labels/annotations as key="value" lines, sorted, like upstream.
func formatMap(m map[string]string) string {
	keys := sortedKeys(m)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

func (m *Manager) projectedPayload(ctx context.Context, pod *v1.Pod, volName string, p *v1.ProjectedVolumeSource) (map[string]File, error) {
	def := mode(p.DefaultMode)
	out := map[string]File{}
	merge := func(more map[string]File) {
		for k, v := range more {
			out[k] = v
		}
	}
	for i, s := range p.Sources {
		switch {
		case s.ServiceAccountToken != nil:
			tok, err := m.token(ctx, pod, volName, s.ServiceAccountToken)
			if err != nil {
				return nil, fmt.Errorf("projected source %d (serviceAccountToken): %w", i, err)
			}
			out[s.ServiceAccountToken.Path] = File{Data: []byte(tok), Mode: def}
		case s.ConfigMap != nil:
			pl, err := m.configMapPayload(ctx, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, def)
			if err != nil {
				return nil, fmt.Errorf("projected source %d: %w", i, err)
			}
			merge(pl)
		case s.Secret != nil:
			pl, err := m.secretPayload(ctx, pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, def)
			if err != nil {
				return nil, fmt.Errorf("projected source %d: %w", i, err)
			}
			merge(pl)
		case s.DownwardAPI != nil:
			pl, err := m.downwardPayload(pod, s.DownwardAPI.Items, def)
			if err != nil {
				return nil, fmt.Errorf("projected source %d: %w", i, err)
			}
			merge(pl)
		}
	}
	return out, nil
}

// token returns a bound service account token for the pod, requesting a new one when the cached
// one has used 80% of its lifetime (or is older than 24 h), as upstream's token manager does.
func (m *Manager) token(ctx context.Context, pod *v1.Pod, volName string, src *v1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	key := string(pod.UID) + "/" + volName + "/" + src.Audience + "/" + src.Path
	now := m.now()
	m.mu.Lock()
	cached := m.tokens[key]
	m.mu.Unlock()
	if cached != nil && !needsRefresh(cached, now) {
		return cached.Status.Token, nil
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tr, err := m.api.CreateToken(ctx, pod.Namespace, sa, req)
	for i := 0; err != nil && cached == nil && i < len(m.tokenRetry) && notBoundYet(err); i++ {
		// Right after a pod is bound the API server's node authorizer may not have seen the
		// binding (forbidden: no relationship between node and pod), or its pod lookup lags
		// (pod not found). Both pass within milliseconds: asking again here beats failing the
		// whole sync and waiting for its retry.
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(m.tokenRetry[i]):
		}
		tr, err = m.api.CreateToken(ctx, pod.Namespace, sa, req)
	}
	if err != nil {
		if cached != nil && cached.Status.ExpirationTimestamp.Time.After(now) {
			m.log.Warn("token refresh failed; keeping the current token", zap.String("pod", pod.Namespace+"/"+pod.Name), zap.Error(err))
			return cached.Status.Token, nil
		}
		return "", fmt.Errorf("request token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	// Remember when it was issued: the refresh point is a fraction of the lifetime.
	if tr.Annotations == nil {
		tr.Annotations = map[string]string{}
	}
	tr.Annotations[issuedAnnotation] = now.Format(time.RFC3339Nano)
	m.mu.Lock()
	m.tokens[key] = tr
	m.mu.Unlock()
	return tr.Status.Token, nil
}

const issuedAnnotation = "kubenode.io/issued"

// notBoundYet reports the errors a TokenRequest for a just-bound pod gets until the API
// server's authorizer and pod lookup caught up.
func notBoundYet(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsNotFound(err)
}

func needsRefresh(tr *authv1.TokenRequest, now time.Time) bool {
	issued, err := time.Parse(time.RFC3339Nano, tr.Annotations[issuedAnnotation])
	if err != nil {
		return true
	}
	exp := tr.Status.ExpirationTimestamp.Time
	life := exp.Sub(issued)
	refresh := issued.Add(life * 8 / 10)
	if life > 24*time.Hour*10/8 {
		refresh = issued.Add(24 * time.Hour)
	}
	return !now.Before(refresh)
}

// Teardown removes everything the pod's volumes left on the node, and forgets its tokens.
// hostPath volumes are the node's and stay.
func (m *Manager) Teardown(uid types.UID) error {
	m.mu.Lock()
	for k := range m.tokens {
		if strings.HasPrefix(k, string(uid)+"/") {
			delete(m.tokens, k)
		}
	}
	podDir := m.PodDir(uid) + string(filepath.Separator)
	for dir := range m.written {
		if strings.HasPrefix(dir, podDir) {
			delete(m.written, dir)
		}
	}
	m.mu.Unlock()
	// Memory-backed emptyDirs are tmpfs mounts: unmount before removing.
	if err := unmountUnder(filepath.Join(m.PodDir(uid), "volumes")); err != nil {
		return fmt.Errorf("unmount volumes of pod %s: %w", uid, err)
	}
	if err := os.RemoveAll(m.PodDir(uid)); err != nil {
		return fmt.Errorf("remove volumes of pod %s: %w", uid, err)
	}
	return nil
}

// PodDirs lists the pod UIDs that have a directory on the node (to clean up orphans).
func (m *Manager) PodDirs() ([]types.UID, error) {
	entries, err := os.ReadDir(filepath.Join(m.root, "pods"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []types.UID
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, types.UID(e.Name()))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
