package runtime

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testPod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		Spec: v1.PodSpec{
			NodeName: "node1",
			Containers: []v1.Container{{
				Name:  "c",
				Image: "busybox:1.36",
				Ports: []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080}, {ContainerPort: 53, Protocol: v1.ProtocolUDP}},
			}},
		},
	}
}

func TestDNSConfig(t *testing.T) {
	host := HostDNS{Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"edns0"}}
	s := DNSSettings{ClusterDNS: []string{"10.96.0.10"}, ClusterDomain: "cluster.local", Host: host}
	two := "2"
	cases := []struct {
		name   string
		mutate func(*v1.Pod)
		s      DNSSettings
		want   *runtimeapi.DNSConfig
	}{
		{
			name: "ClusterFirst uses cluster DNS and the namespace search path",
			s:    s,
			want: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}, Options: []string{"ndots:5"}},
		},
		{
			name:   "ClusterFirst on the host network falls back to the node's resolver",
			mutate: func(p *v1.Pod) { p.Spec.HostNetwork = true },
			s:      s,
			want:   &runtimeapi.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"edns0"}},
		},
		{
			name:   "ClusterFirstWithHostNet keeps cluster DNS",
			mutate: func(p *v1.Pod) { p.Spec.HostNetwork = true; p.Spec.DNSPolicy = v1.DNSClusterFirstWithHostNet },
			s:      s,
			want:   &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}, Options: []string{"ndots:5"}},
		},
		{
			name: "None with dnsConfig",
			mutate: func(p *v1.Pod) {
				p.Spec.DNSPolicy = v1.DNSNone
				p.Spec.DNSConfig = &v1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: &two}}}
			},
			s:    s,
			want: &runtimeapi.DNSConfig{Servers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []string{"ndots:2"}},
		},
		{
			name: "dnsConfig options override ClusterFirst's",
			mutate: func(p *v1.Pod) {
				p.Spec.DNSConfig = &v1.PodDNSConfig{Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: &two}}}
			},
			s:    s,
			want: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}, Options: []string{"ndots:2"}},
		},
		{
			name: "no cluster DNS configured: node resolver",
			s:    DNSSettings{Host: host},
			want: &runtimeapi.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"edns0"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPod()
			if tc.mutate != nil {
				tc.mutate(p)
			}
			got := DNSConfig(p, tc.s)
			if !reflect.DeepEqual(got.Servers, tc.want.Servers) || !reflect.DeepEqual(got.Searches, tc.want.Searches) || !reflect.DeepEqual(got.Options, tc.want.Options) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	d, err := ParseResolvConf(strings.NewReader("# c\nnameserver 1.2.3.4\nsearch a b\noptions ndots:1\nnameserver 5.6.7.8\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Servers, []string{"1.2.3.4", "5.6.7.8"}) || !reflect.DeepEqual(d.Searches, []string{"a", "b"}) || !reflect.DeepEqual(d.Options, []string{"ndots:1"}) {
		t.Fatalf("got %+v", d)
	}
}

func TestSandboxConfig(t *testing.T) {
	p := testPod()
	cfg, err := SandboxConfig(p, 2, "/kubepods/besteffort/poduid-1", NodeFacts{LogRoot: "/var/log/pods"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metadata.Attempt != 2 || cfg.Metadata.Uid != "uid-1" || cfg.Hostname != "web" {
		t.Errorf("metadata/hostname wrong: %v %q", cfg.Metadata, cfg.Hostname)
	}
	if cfg.Labels[LabelPodUID] != "uid-1" || cfg.Labels[LabelPodName] != "web" || cfg.Labels["app"] != "web" {
		t.Errorf("labels = %v", cfg.Labels)
	}
	if cfg.LogDirectory != "/var/log/pods/team_web_uid-1" {
		t.Errorf("log dir = %q", cfg.LogDirectory)
	}
	if len(cfg.PortMappings) != 1 || cfg.PortMappings[0].HostPort != 8080 || cfg.PortMappings[0].ContainerPort != 80 {
		t.Errorf("port mappings = %v, want only the hostPort one", cfg.PortMappings)
	}
	if cfg.Linux.CgroupParent != "/kubepods/besteffort/poduid-1" || cfg.Linux.SecurityContext.NamespaceOptions.Network != runtimeapi.NamespaceMode_POD {
		t.Errorf("linux = %v", cfg.Linux)
	}
	p.Spec.HostNetwork = true
	cfg, _ = SandboxConfig(p, 0, "", NodeFacts{})
	if cfg.Linux.SecurityContext.NamespaceOptions.Network != runtimeapi.NamespaceMode_NODE || len(cfg.PortMappings) != 0 || cfg.Hostname != "" {
		t.Errorf("host network sandbox = %v", cfg)
	}
}

func TestContainerConfig(t *testing.T) {
	p := testPod()
	c := &p.Spec.Containers[0]
	c.Command = []string{"sh"}
	c.Args = []string{"-c", "sleep 1"}
	c.Resources = v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m"), v1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("128Mi")},
	}
	uid, priv, ro := int64(1000), true, true
	c.SecurityContext = &v1.SecurityContext{RunAsUser: &uid, Privileged: &priv, ReadOnlyRootFilesystem: &ro, Capabilities: &v1.Capabilities{Add: []v1.Capability{"NET_ADMIN"}, Drop: []v1.Capability{"CAP_KILL"}}}
	c.VolumeMounts = []v1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "cfg", MountPath: "/etc/cfg", SubPath: "x", ReadOnly: true}}
	cfg, err := ContainerConfig(p, ContainerInput{Container: c, Attempt: 3, Volumes: map[string]string{"data": "/v/data", "cfg": "/v/cfg"}}, NodeFacts{MemoryCapacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogPath != "c/3.log" || cfg.Metadata.Attempt != 3 || cfg.Annotations[AnnotationRestartCount] != "3" || cfg.Annotations[AnnotationHash] == "" {
		t.Errorf("identity fields wrong: %v %v", cfg.LogPath, cfg.Annotations)
	}
	r := cfg.Linux.Resources
	if r.CpuShares != 256 || r.CpuQuota != 50000 || r.CpuPeriod != 100000 || r.MemoryLimitInBytes != 128<<20 {
		t.Errorf("resources = %v", r)
	}
	if r.OomScoreAdj < 3 || r.OomScoreAdj > 999 {
		t.Errorf("burstable oom_score_adj = %d, want within [3,999]", r.OomScoreAdj)
	}
	sc := cfg.Linux.SecurityContext
	if sc.RunAsUser.GetValue() != 1000 || !sc.Privileged || !sc.ReadonlyRootfs || sc.Capabilities.AddCapabilities[0] != "NET_ADMIN" || sc.Capabilities.DropCapabilities[0] != "KILL" {
		t.Errorf("security context = %v", sc)
	}
	if len(cfg.Mounts) != 2 || cfg.Mounts[1].HostPath != "/v/cfg/x" || !cfg.Mounts[1].Readonly {
		t.Errorf("mounts = %v", cfg.Mounts)
	}

	c.VolumeMounts = []v1.VolumeMount{{Name: "missing", MountPath: "/m"}}
	if _, err := ContainerConfig(p, ContainerInput{Container: c}, NodeFacts{}); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("missing volume: err = %v, want one naming the volume", err)
	}
}

type fakeObjects struct {
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
}

func (f fakeObjects) ConfigMap(_ context.Context, ns, name string) (*v1.ConfigMap, error) {
	if c, ok := f.cms[ns+"/"+name]; ok {
		return c, nil
	}
	return nil, errors.New("not found")
}

func (f fakeObjects) Secret(_ context.Context, ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, errors.New("not found")
}

func TestEnv(t *testing.T) {
	objs := fakeObjects{
		cms:     map[string]*v1.ConfigMap{"team/cfg": {Data: map[string]string{"MODE": "fast", "LEVEL": "3"}}},
		secrets: map[string]*v1.Secret{"team/sec": {Data: map[string][]byte{"password": []byte("hunter2")}}},
	}
	p := testPod()
	c := &p.Spec.Containers[0]
	c.Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}
	c.EnvFrom = []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}}
	c.Env = []v1.EnvVar{
		{Name: "PLAIN", Value: "x"},
		{Name: "EXPANDED", Value: "$(PLAIN)-$(CFG_MODE)-$(NOPE)-$$(PLAIN)"},
		{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
		{Name: "MEM", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "MODE", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "MODE"}}},
		{Name: "PW", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
	}
	kv, err := Env(context.Background(), objs, p, c, PodFacts{PodIPs: []string{"10.244.0.5"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range kv {
		got[e.Key] = string(e.Value)
	}
	want := map[string]string{
		"CFG_MODE": "fast", "CFG_LEVEL": "3", "PLAIN": "x", "EXPANDED": "x-fast-$(NOPE)-$(PLAIN)",
		"POD_NAME": "web", "POD_IP": "10.244.0.5", "APP": "web", "MEM": "64", "MODE": "fast", "PW": "hunter2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("env = %v\nwant  %v", got, want)
	}

	c.Env = []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "absent"}}}}
	c.EnvFrom = nil
	if _, err := Env(context.Background(), objs, p, c, PodFacts{}, nil); err == nil || !strings.Contains(err.Error(), `"absent"`) {
		t.Errorf("missing key: err = %v, want one naming the key", err)
	}
	opt := true
	c.Env[0].ValueFrom.ConfigMapKeyRef.Optional = &opt
	kv, err = Env(context.Background(), objs, p, c, PodFacts{}, nil)
	if err != nil || len(kv) != 0 {
		t.Errorf("optional missing key: env %v err %v, want nothing set", kv, err)
	}
}

func TestServiceEnv(t *testing.T) {
	svc := func(ns, name, ip string, ports ...v1.ServicePort) *v1.Service {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.ServiceSpec{ClusterIP: ip, Ports: ports}}
	}
	services := []*v1.Service{
		svc("default", "kubernetes", "10.96.0.1", v1.ServicePort{Name: "https", Port: 443, Protocol: v1.ProtocolTCP}),
		svc("team", "my-db", "10.96.0.7", v1.ServicePort{Port: 5432}),
		svc("team", "headless", "None", v1.ServicePort{Port: 80}),
		svc("other", "elsewhere", "10.96.0.9", v1.ServicePort{Port: 80}),
	}
	p := testPod()
	got := map[string]string{}
	for _, e := range ServiceEnv(p, services) {
		got[e.Name] = e.Value
	}
	for k, v := range map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
		"MY_DB_SERVICE_HOST": "10.96.0.7", "MY_DB_PORT_5432_TCP": "tcp://10.96.0.7:5432", "MY_DB_PORT_5432_TCP_PROTO": "tcp",
	} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["ELSEWHERE_SERVICE_HOST"]; ok {
		t.Error("a service of another namespace leaked in")
	}
	if _, ok := got["HEADLESS_SERVICE_HOST"]; ok {
		t.Error("a headless service got variables")
	}
	off := false
	p.Spec.EnableServiceLinks = &off
	got = map[string]string{}
	for _, e := range ServiceEnv(p, services) {
		got[e.Name] = e.Value
	}
	if got["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" || got["MY_DB_SERVICE_HOST"] != "" {
		t.Errorf("enableServiceLinks=false: %v", got)
	}
	// Container env can refer to service variables and override them.
	c := &p.Spec.Containers[0]
	c.Env = []v1.EnvVar{{Name: "API", Value: "https://$(KUBERNETES_SERVICE_HOST)"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}}
	kv, err := Env(context.Background(), fakeObjects{}, p, c, PodFacts{ServiceEnv: ServiceEnv(p, services)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range kv {
		env[e.Key] = string(e.Value)
	}
	if env["API"] != "https://10.96.0.1" || env["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("env = %v", env)
	}
}

func TestFieldRefResourcePath(t *testing.T) {
	p := testPod()
	p.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}
	cases := []struct{ path, want string }{
		{"resource:c:limits.memory:1Mi", "64"},
		{"resource:c:limits.memory:0", "67108864"},
		{"resource:c:limits.cpu:1", "2"}, // no limit: the node's allocatable
		{"metadata.name", "web"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			got, err := FieldRef(p, tc.path, PodFacts{}, alloc)
			if err != nil || got != tc.want {
				t.Fatalf("FieldRef(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
	if _, err := FieldRef(p, "resource:nope:limits.cpu:1", PodFacts{}, alloc); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown container: err = %v", err)
	}
}
