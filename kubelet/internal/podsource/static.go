package podsource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ReadManifests reads every pod manifest (YAML or JSON) in dir, skipping dot-files. A file that
// does not parse is reported in errs and left out; the others still run.
func ReadManifests(dir, nodeName string) (pods []*v1.Pod, errs []error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("read static pod dir %s: %w", dir, err)}
	}
	seen := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("static pod %s: %w", path, err))
			continue
		}
		p, err := DecodeStatic(b, path, nodeName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key := p.Namespace + "/" + p.Name
		if other, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("static pod %s: pod %s is already defined by %s", path, key, other))
			continue
		}
		seen[key] = path
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, errs
}

// DecodeStatic parses one manifest and fills in what the API server would (name suffix,
// namespace, node, defaults) plus the static pod's UID: a hash of the manifest and the node, so
// it is stable across kubelet restarts and changes when the file changes.
func DecodeStatic(b []byte, path, nodeName string) (*v1.Pod, error) {
	var p v1.Pod
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	if err := dec.Decode(&p); err != nil && err != io.EOF {
		return nil, fmt.Errorf("static pod %s: parse: %w", path, err)
	}
	if p.Kind != "" && p.Kind != "Pod" {
		return nil, fmt.Errorf("static pod %s: kind is %q, want Pod", path, p.Kind)
	}
	if p.Name == "" {
		return nil, fmt.Errorf("static pod %s: metadata.name is required", path)
	}
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("static pod %s: spec.containers must not be empty", path)
	}
	for i, c := range p.Spec.Containers {
		if c.Name == "" || c.Image == "" {
			return nil, fmt.Errorf("static pod %s: spec.containers[%d]: name and image are required", path, i)
		}
	}
	sum := sha256.Sum256(append(append([]byte{}, b...), []byte("\x00"+nodeName)...))
	hash := hex.EncodeToString(sum[:16])
	p.UID = types.UID(hash)
	p.Name = p.Name + "-" + nodeName
	if p.Namespace == "" {
		p.Namespace = metav1.NamespaceDefault
	}
	p.Spec.NodeName = nodeName
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[AnnotationHash] = hash
	p.Annotations[AnnotationSource] = "file"
	applyDefaults(&p)
	return &p, nil
}

func applyDefaults(p *v1.Pod) {
	s := &p.Spec
	if s.RestartPolicy == "" {
		s.RestartPolicy = v1.RestartPolicyAlways
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = v1.DNSClusterFirst
	}
	if s.TerminationGracePeriodSeconds == nil {
		g := int64(30)
		s.TerminationGracePeriodSeconds = &g
	}
	if s.SchedulerName == "" {
		s.SchedulerName = v1.DefaultSchedulerName
	}
	for _, list := range [][]v1.Container{s.InitContainers, s.Containers} {
		for i := range list {
			c := &list[i]
			if c.TerminationMessagePath == "" {
				c.TerminationMessagePath = v1.TerminationMessagePathDefault
			}
			if c.TerminationMessagePolicy == "" {
				c.TerminationMessagePolicy = v1.TerminationMessageReadFile
			}
			if c.ImagePullPolicy == "" {
				c.ImagePullPolicy = v1.PullIfNotPresent
				if !strings.Contains(c.Image[strings.LastIndex(c.Image, "/")+1:], ":") || strings.HasSuffix(c.Image, ":latest") {
					c.ImagePullPolicy = v1.PullAlways
				}
			}
			for j := range c.Ports {
				if c.Ports[j].Protocol == "" {
					c.Ports[j].Protocol = v1.ProtocolTCP
				}
			}
		}
	}
}

// StaticSource re-reads the manifest dir every period.
type StaticSource struct {
	dir      string
	nodeName string
	period   time.Duration
	pods     *Manager
	log      *zap.Logger
	lastErrs map[string]bool
}

// NewStaticSource returns a static pod source.
func NewStaticSource(dir, nodeName string, period time.Duration, pods *Manager, log *zap.Logger) *StaticSource {
	if period <= 0 || period > 20*time.Second {
		period = 20 * time.Second
	}
	return &StaticSource{dir: dir, nodeName: nodeName, period: period, pods: pods, log: log, lastErrs: map[string]bool{}}
}

// Run reads the dir now and then every period until ctx ends.
func (s *StaticSource) Run(ctx context.Context) {
	t := time.NewTicker(s.period)
	defer t.Stop()
	for {
		s.Once()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once reads the dir once.
func (s *StaticSource) Once() {
	pods, errs := ReadManifests(s.dir, s.nodeName)
	now := map[string]bool{}
	for _, err := range errs {
		now[err.Error()] = true
		if !s.lastErrs[err.Error()] {
			s.log.Warn("static pod manifest skipped", zap.Error(err))
		}
	}
	s.lastErrs = now
	s.pods.SetStatic(pods)
}
