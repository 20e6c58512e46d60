package runtime

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Objects reads the ConfigMaps and Secrets a pod refers to (from the API, through the node's
// client; the node authorizer allows exactly those).
type Objects interface {
	ConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*v1.Secret, error)
}

// PodFacts are the runtime values fieldRef can read.
type PodFacts struct {
	PodIPs   []string
	HostIPs  []string
	NodeName string
	// ServiceEnv comes first in every container's environment (see ServiceEnv).
	ServiceEnv []EnvVar
}

// Env computes a container's environment: envFrom first, then env (later wins), with $(VAR)
// references expanded against what came before, as upstream does.
func Env(ctx context.Context, objs Objects, pod *v1.Pod, c *v1.Container, facts PodFacts, nodeAllocatable v1.ResourceList) ([]*runtimeapi.KeyValue, error) {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, e := range facts.ServiceEnv {
		set(e.Name, e.Value)
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := objs.ConfigMap(ctx, pod.Namespace, ef.ConfigMapRef.Name)
			if err != nil {
				if optional(ef.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom configMap %q: %w", ef.ConfigMapRef.Name, err)
			}
			for k, v := range cm.Data {
				set(ef.Prefix+k, v)
			}
		case ef.SecretRef != nil:
			s, err := objs.Secret(ctx, pod.Namespace, ef.SecretRef.Name)
			if err != nil {
				if optional(ef.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %q: %w", ef.SecretRef.Name, err)
			}
			for k, v := range s.Data {
				set(ef.Prefix+k, string(v))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vals))
			continue
		}
		v, skip, err := valueFrom(ctx, objs, pod, c, e, facts, nodeAllocatable)
		if err != nil {
			return nil, fmt.Errorf("env %q: %w", e.Name, err)
		}
		if !skip {
			set(e.Name, v)
		}
	}
	out := make([]*runtimeapi.KeyValue, 0, len(order))
	for _, k := range order {
		out = append(out, &runtimeapi.KeyValue{Key: k, Value: []byte(vals[k])})
	}
	return out, nil
}

func optional(b *bool) bool { return b != nil && *b }

func valueFrom(ctx context.Context, objs Objects, pod *v1.Pod, c *v1.Container, e v1.EnvVar, facts PodFacts, alloc v1.ResourceList) (string, bool, error) {
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		v, err := fieldRef(pod, vf.FieldRef.FieldPath, facts)
		return v, false, err
	case vf.ResourceFieldRef != nil:
		v, err := resourceFieldRef(pod, c, vf.ResourceFieldRef, alloc)
		return v, false, err
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		cm, err := objs.ConfigMap(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configMap %q: %w", ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configMap %q has no key %q", ref.Name, ref.Key)
		}
		return v, false, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		s, err := objs.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %q: %w", ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %q has no key %q", ref.Name, ref.Key)
		}
		return string(v), false, nil
	}
	return "", false, fmt.Errorf("valueFrom names no source")
}

// FieldRef resolves a downward-API field path of a pod.
func fieldRef(pod *v1.Pod, path string, facts PodFacts) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		if pod.Spec.NodeName != "" {
			return pod.Spec.NodeName, nil
		}
		return facts.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		if len(facts.PodIPs) > 0 {
			return facts.PodIPs[0], nil
		}
		return "", nil
	case "status.podIPs":
		return strings.Join(facts.PodIPs, ","), nil
	case "status.hostIP":
		if len(facts.HostIPs) > 0 {
			return facts.HostIPs[0], nil
		}
		return "", nil
	case "status.hostIPs":
		return strings.Join(facts.HostIPs, ","), nil
	}
	if key, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// FieldRef is the exported form for the downward API volume. Paths of the form
// "resource:<container>:<resource>:<divisor>" read a container's requests or limits.
func FieldRef(pod *v1.Pod, path string, facts PodFacts, alloc v1.ResourceList) (string, error) {
	if rest, ok := strings.CutPrefix(path, "resource:"); ok {
		parts := strings.SplitN(rest, ":", 3)
		if len(parts) != 3 || parts[0] == "" {
			return "", fmt.Errorf("resourceFieldRef %q: containerName is required in a volume", rest)
		}
		c, found := FindContainer(pod, parts[0])
		if !found {
			return "", fmt.Errorf("resourceFieldRef: no container %q", parts[0])
		}
		sel := &v1.ResourceFieldSelector{ContainerName: parts[0], Resource: parts[1]}
		if parts[2] != "" && parts[2] != "0" {
			d, err := resource.ParseQuantity(parts[2])
			if err != nil {
				return "", fmt.Errorf("resourceFieldRef divisor %q: %w", parts[2], err)
			}
			sel.Divisor = d
		}
		return resourceFieldRef(pod, c, sel, alloc)
	}
	return fieldRef(pod, path, facts)
}

func subscript(path, prefix string) (string, bool) {
	if !strings.HasPrefix(path, prefix+"['") || !strings.HasSuffix(path, "']") {
		return "", false
	}
	return path[len(prefix)+2 : len(path)-2], true
}

// resourceFieldRef resolves requests.*/limits.* of a container; an unset limit reads as the
// node's allocatable, as upstream does.
func resourceFieldRef(pod *v1.Pod, c *v1.Container, ref *v1.ResourceFieldSelector, alloc v1.ResourceList) (string, error) {
	target := c
	if ref.ContainerName != "" {
		t, ok := FindContainer(pod, ref.ContainerName)
		if !ok {
			return "", fmt.Errorf("resourceFieldRef: no container %q", ref.ContainerName)
		}
		target = t
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	parts := strings.SplitN(ref.Resource, ".", 2)
	if len(parts) != 2 {
		return "", fmt.Errorf("resourceFieldRef: unsupported resource %q", ref.Resource)
	}
	name := v1.ResourceName(parts[1])
	var q resource.Quantity
	var ok bool
	switch parts[0] {
	case "limits":
		q, ok = target.Resources.Limits[name]
		if !ok {
			q, ok = alloc[name]
		}
	case "requests":
		q, ok = target.Resources.Requests[name]
	default:
		return "", fmt.Errorf("resourceFieldRef: unsupported resource %q", ref.Resource)
	}
	if !ok {
		return "0", nil
	}
	if name == v1.ResourceCPU {
		// Round up to whole divisor units (1 core for 250m with divisor 1), like upstream.
		m := q.MilliValue()
		d := divisor.MilliValue()
		return fmt.Sprint((m + d - 1) / d), nil
	}
	v := q.Value()
	d := divisor.Value()
	return fmt.Sprint((v + d - 1) / d), nil
}

// expand replaces $(VAR) with earlier values; $$(VAR) escapes; unknown references stay as they
// are, like upstream.
func expand(s string, vals map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vals[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// ServiceEnv returns the Docker-links style variables upstream gives every container for the
// services of its namespace (when enableServiceLinks is not false) and always for the API
// server's "kubernetes" service, so in-cluster clients find the API. services holds the pod's
// namespace's services plus default/kubernetes; the order is by service name.
func ServiceEnv(pod *v1.Pod, services []*v1.Service) []EnvVar {
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	var picked []*v1.Service
	for _, s := range services {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == v1.ClusterIPNone {
			continue
		}
		master := s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes"
		if master || (links && s.Namespace == pod.Namespace) {
			picked = append(picked, s)
		}
	}
	sort.Slice(picked, func(i, j int) bool { return picked[i].Name < picked[j].Name })
	var out []EnvVar
	seen := map[string]bool{}
	add := func(k, v string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, EnvVar{Name: k, Value: v})
		}
	}
	for _, s := range picked {
		if len(s.Spec.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		ip := s.Spec.ClusterIP
		add(name+"_SERVICE_HOST", ip)
		add(name+"_SERVICE_PORT", fmt.Sprint(s.Spec.Ports[0].Port))
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				add(name+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), fmt.Sprint(p.Port))
			}
		}
		first := s.Spec.Ports[0]
		add(name+"_PORT", fmt.Sprintf("%s://%s", strings.ToLower(string(protoOrTCP(first.Protocol))), net.JoinHostPort(ip, fmt.Sprint(first.Port))))
		for _, p := range s.Spec.Ports {
			proto := protoOrTCP(p.Protocol)
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(string(proto)))
			add(prefix, fmt.Sprintf("%s://%s", strings.ToLower(string(proto)), net.JoinHostPort(ip, fmt.Sprint(p.Port))))
			add(prefix+"_PROTO", strings.ToLower(string(proto)))
			add(prefix+"_PORT", fmt.Sprint(p.Port))
			add(prefix+"_ADDR", ip)
		}
	}
	return out
}

// EnvVar is one plain name=value variable.
type EnvVar struct{ Name, Value string }

func protoOrTCP(p v1.Protocol) v1.Protocol {
	if p == "" {
		return v1.ProtocolTCP
	}
	return p
}
