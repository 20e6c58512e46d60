package runtime

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Waiting reasons of image handling, as upstream reports them.
const (
	ReasonErrImagePull       = "ErrImagePull"
	ReasonImagePullBackOff   = "ImagePullBackOff"
	ReasonErrImageNeverPull  = "ErrImageNeverPull"
	ReasonInvalidImageName   = "InvalidImageName"
	ReasonCreateConfigError  = "CreateContainerConfigError"
	ReasonCreateContainerErr = "CreateContainerError"
	ReasonRunContainerError  = "RunContainerError"
)

// ContainerError is a failure to start a container that the status shows as its waiting reason.
type ContainerError struct {
	Reason  string
	Message string
}

func (e *ContainerError) Error() string { return e.Reason + ": " + e.Message }

// Puller pulls images by pull policy with per-image back-off after failures.
type Puller struct {
	images internalapi.ImageManagerService
	objs   Objects
	now    func() time.Time

	initial, max time.Duration

	// slots holds one token per pull allowed in flight (serializeImagePulls: one); nil: no cap.
	slots chan struct{}

	mu      sync.Mutex
	backoff map[string]pullBackoff
}

type pullBackoff struct {
	delay time.Duration
	until time.Time
}

// NewPuller returns a puller that pulls one image at a time (upstream's serializeImagePulls
// default). now is the clock (time.Now in production).
func NewPuller(images internalapi.ImageManagerService, objs Objects, now func() time.Time) *Puller {
	return NewParallelPuller(images, objs, now, 1)
}

// NewParallelPuller returns a puller with at most maxParallel pulls in flight across the node;
// 0 means no cap (serializeImagePulls false without maxParallelImagePulls).
func NewParallelPuller(images internalapi.ImageManagerService, objs Objects, now func() time.Time, maxParallel int) *Puller {
	p := &Puller{images: images, objs: objs, now: now, initial: 10 * time.Second, max: 5 * time.Minute, backoff: map[string]pullBackoff{}}
	if maxParallel > 0 {
		p.slots = make(chan struct{}, maxParallel)
	}
	return p
}

// MaxParallelPulls turns serializeImagePulls and maxParallelImagePulls into a pull cap for
// NewParallelPuller: 1 when serialized, the cap when set, else 0 (no cap).
func MaxParallelPulls(serialize *bool, maxParallel *int32) int {
	if serialize == nil || *serialize {
		return 1
	}
	if maxParallel != nil && *maxParallel > 0 {
		return int(*maxParallel)
	}
	return 0
}

// acquire waits for a pull slot; the returned func gives it back.
func (p *Puller) acquire(ctx context.Context) (func(), error) {
	if p.slots == nil {
		return func() {}, nil
	}
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// EnsureImage makes the container's image present according to its pull policy and returns the
// image reference to create the container from.
func (p *Puller) EnsureImage(ctx context.Context, pod *v1.Pod, c *v1.Container, sandbox *runtimeapi.PodSandboxConfig) (string, error) {
	return p.EnsureImageNotify(ctx, pod, c, sandbox, nil)
}

// EnsureImageNotify is EnsureImage that calls pulling (when not nil) just before a pull starts,
// so the caller can tell a pull from an image already present (the Pulling/Pulled events).
func (p *Puller) EnsureImageNotify(ctx context.Context, pod *v1.Pod, c *v1.Container, sandbox *runtimeapi.PodSandboxConfig, pulling func()) (string, error) {
	if c.Image == "" {
		return "", &ContainerError{Reason: ReasonInvalidImageName, Message: "container has no image"}
	}
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = v1.PullIfNotPresent
		if !strings.Contains(lastPathPart(c.Image), ":") && !strings.Contains(c.Image, "@") || strings.HasSuffix(c.Image, ":latest") {
			policy = v1.PullAlways
		}
	}
	spec := &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Image}
	if policy != v1.PullAlways {
		st, err := p.images.ImageStatus(ctx, spec, false)
		if err != nil {
			return "", &ContainerError{Reason: ReasonErrImagePull, Message: fmt.Sprintf("image status of %q: %v", c.Image, err)}
		}
		if st.GetImage() != nil {
			return st.GetImage().GetId(), nil
		}
		if policy == v1.PullNever {
			return "", &ContainerError{Reason: ReasonErrImageNeverPull, Message: fmt.Sprintf("container image %q is not present with pull policy of Never", c.Image)}
		}
	}
	key := c.Image
	p.mu.Lock()
	b, inBackoff := p.backoff[key]
	p.mu.Unlock()
	if inBackoff && p.now().Before(b.until) {
		return "", &ContainerError{Reason: ReasonImagePullBackOff, Message: fmt.Sprintf("Back-off pulling image %q", c.Image)}
	}
	auths, err := p.auths(ctx, pod, c.Image)
	if err != nil {
		return "", &ContainerError{Reason: ReasonErrImagePull, Message: err.Error()}
	}
	var ref string
	if len(auths) == 0 {
		auths = []*runtimeapi.AuthConfig{nil}
	}
	// Only the pull itself waits for a slot: status checks of present images never queue.
	release, err := p.acquire(ctx)
	if err != nil {
		return "", &ContainerError{Reason: ReasonErrImagePull, Message: fmt.Sprintf("waiting to pull %q: %v", c.Image, err)}
	}
	if pulling != nil {
		pulling()
	}
	for _, a := range auths {
		ref, err = p.images.PullImage(ctx, spec, a, sandbox)
		if err == nil {
			break
		}
	}
	release()
	if err != nil {
		p.mu.Lock()
		d := p.initial
		if inBackoff {
			d = min(b.delay*2, p.max)
		}
		p.backoff[key] = pullBackoff{delay: d, until: p.now().Add(d)}
		p.mu.Unlock()
		return "", &ContainerError{Reason: ReasonErrImagePull, Message: fmt.Sprintf("pull %q: %v", c.Image, err)}
	}
	p.mu.Lock()
	delete(p.backoff, key)
	p.mu.Unlock()
	return ref, nil
}

func lastPathPart(image string) string {
	if i := strings.LastIndex(image, "/"); i >= 0 {
		return image[i+1:]
	}
	return image
}

// RegistryHost returns the registry host of an image reference (docker.io when none is named).
func RegistryHost(image string) string {
	i := strings.Index(image, "/")
	if i < 0 {
		return "docker.io"
	}
	first := image[:i]
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return first
	}
	return "docker.io"
}

type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// auths collects the credentials the pod's imagePullSecrets hold for the image's registry.
func (p *Puller) auths(ctx context.Context, pod *v1.Pod, image string) ([]*runtimeapi.AuthConfig, error) {
	host := RegistryHost(image)
	var out []*runtimeapi.AuthConfig
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := p.objs.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			// Upstream goes on without a missing pull secret; the pull may still work.
			continue
		}
		cfg, err := ParseDockerConfig(s)
		if err != nil {
			return nil, fmt.Errorf("imagePullSecret %s/%s: %w", pod.Namespace, ref.Name, err)
		}
		for server, a := range cfg {
			if normalizeRegistry(server) != host {
				continue
			}
			ac := &runtimeapi.AuthConfig{Username: a.Username, Password: a.Password, Auth: a.Auth, ServerAddress: server, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
			if ac.Username == "" && a.Auth != "" {
				if dec, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
					if u, pw, ok := strings.Cut(string(dec), ":"); ok {
						ac.Username, ac.Password = u, pw
					}
				}
			}
			out = append(out, ac)
		}
	}
	return out, nil
}

// ParseDockerConfig reads a kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg secret.
func ParseDockerConfig(s *v1.Secret) (map[string]dockerAuth, error) {
	if b, ok := s.Data[v1.DockerConfigJsonKey]; ok {
		var c dockerConfig
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("parse %s: %w", v1.DockerConfigJsonKey, err)
		}
		return c.Auths, nil
	}
	if b, ok := s.Data[v1.DockerConfigKey]; ok {
		var m map[string]dockerAuth
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("parse %s: %w", v1.DockerConfigKey, err)
		}
		return m, nil
	}
	return nil, errors.New("secret has neither .dockerconfigjson nor .dockercfg")
}

func normalizeRegistry(server string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return s
}
