package charts

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	kubeletv1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/common/config"
	"github.com/kubenode/kubenode/e2e/images"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const chartAppVersion = "v0.1.0"

// rendered is one `helm template` output, by kind.
type rendered struct {
	daemonSets   []*appsv1.DaemonSet
	configMaps   []*corev1.ConfigMap
	accounts     []*corev1.ServiceAccount
	roles        []*rbacv1.ClusterRole
	bindings     []*rbacv1.ClusterRoleBinding
	kinds        []string
	releaseSpace string
}

func render(t *testing.T, h helmRunner, chart string, args ...string) rendered {
	t.Helper()
	out := h.mustRun(t, append([]string{"template", "rel", chartDir(t, chart), "--namespace", "kube-system"}, args...)...)
	r := rendered{releaseSpace: "kube-system"}
	for _, obj := range decodeManifests(t, out) {
		switch o := obj.(type) {
		case *appsv1.DaemonSet:
			r.daemonSets = append(r.daemonSets, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.ServiceAccount:
			r.accounts = append(r.accounts, o)
		case *rbacv1.ClusterRole:
			r.roles = append(r.roles, o)
		case *rbacv1.ClusterRoleBinding:
			r.bindings = append(r.bindings, o)
		default:
			t.Errorf("unexpected object %T rendered", obj)
		}
		r.kinds = append(r.kinds, kindOf(obj))
	}
	sort.Strings(r.kinds)
	return r
}

func kindOf(obj runtime.Object) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", obj), "*")
}

// grants flattens RBAC rules into "group/resource:verb" entries.
func grants(rules []rbacv1.PolicyRule) []string {
	var g []string
	for _, r := range rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			g = append(g, "restricted-rule")
		}
		for _, grp := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					g = append(g, grp+"/"+res+":"+v)
				}
			}
		}
	}
	sort.Strings(g)
	return g
}

// loadProxyConfig runs the rendered file through the loading path of kube-proxy's --config for
// kubenode's format: strict decode (unknown, duplicate, mistyped fields), defaults, validation.
func loadProxyConfig(t *testing.T, data string) *proxyv1alpha1.KubeProxyConfiguration {
	t.Helper()
	f, err := config.Parse("config.yaml", []byte(data))
	if err != nil {
		t.Fatalf("parse rendered kube-proxy config: %v\n%s", err, data)
	}
	if api, kind := f.TypeMeta(); api != proxyv1alpha1.APIVersion || kind != proxyv1alpha1.Kind {
		t.Fatalf("rendered kube-proxy config is %s %s", api, kind)
	}
	var c proxyv1alpha1.KubeProxyConfiguration
	problems := f.Decode(&c)
	proxyv1alpha1.SetDefaults(&c)
	problems = append(problems, f.FieldProblems(proxyv1alpha1.Validate(&c), problems)...)
	if err := config.NewError("config.yaml", problems); err != nil {
		t.Fatalf("rendered kube-proxy config does not load: %v\n%s", err, data)
	}
	return &c
}

func loadKubeletConfig(t *testing.T, data string) *kubeletv1alpha1.KubeletConfiguration {
	t.Helper()
	f, err := config.Parse("kubelet.yaml", []byte(data))
	if err != nil {
		t.Fatalf("parse rendered kubelet config: %v\n%s", err, data)
	}
	if api, kind := f.TypeMeta(); api != kubeletv1alpha1.APIVersion || kind != kubeletv1alpha1.Kind {
		t.Fatalf("rendered kubelet config is %s %s", api, kind)
	}
	var c kubeletv1alpha1.KubeletConfiguration
	problems := f.Decode(&c)
	kubeletv1alpha1.SetDefaults(&c)
	problems = append(problems, f.FieldProblems(kubeletv1alpha1.Validate(&c), problems)...)
	if err := config.NewError("kubelet.yaml", problems); err != nil {
		t.Fatalf("rendered kubelet config does not load: %v\n%s", err, data)
	}
	return &c
}

func TestLint(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		chart string
		args  []string
	}{
		{"kube-proxy", nil},
		{"kube-proxy", []string{"--set", "config.mode=ipvs,config.ipvs.scheduler=wrr,apiServer.host=10.0.0.1,image.tag=v9.9.9"}},
		{"kubelet", nil},
		{"kubelet", []string{"--set", "installer.enabled=true,rbac.apiServerKubeletClient.create=false"}},
	} {
		t.Run(tc.chart+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			out := h.mustRun(t, append([]string{"lint", "--strict", chartDir(t, tc.chart)}, tc.args...)...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint output:\n%s", out)
			}
		})
	}
}

func TestKubeProxyTemplate(t *testing.T) {
	h := newHelm(t)
	wantGrants := []string{
		"/nodes:get", "/nodes:list", "/nodes:watch",
		"/services:list", "/services:watch",
		"discovery.k8s.io/endpointslices:list", "discovery.k8s.io/endpointslices:watch",
	}
	for _, tc := range []struct {
		name      string
		args      []string
		image     string
		mode      proxyv1alpha1.ProxyMode
		cidr      string
		scheduler string
		healthz   int32
		apiServer string
		noRBAC    bool
	}{
		{name: "defaults", image: "kubenode/kube-proxy:" + chartAppVersion, mode: "nftables", scheduler: "rr", healthz: 10256},
		{
			name: "ipvs, own tag, api server, healthz port",
			args: []string{"--set", "config.mode=ipvs,config.ipvs.scheduler=sh,image.repository=registry.example/kp,image.tag=v0.2.0-rc.1,apiServer.host=192.0.2.10,apiServer.port=443,healthz.port=10356",
				"--set-string", "config.clusterCIDR=10.244.0.0/16\\,fd00:10:244::/56"},
			image: "registry.example/kp:v0.2.0-rc.1", mode: "ipvs", cidr: "10.244.0.0/16,fd00:10:244::/56", scheduler: "sh", healthz: 10356, apiServer: "192.0.2.10",
		},
		{name: "no rbac, existing account", args: []string{"--set", "rbac.create=false,serviceAccount.create=false,serviceAccount.name=kube-proxy"},
			image: "kubenode/kube-proxy:" + chartAppVersion, mode: "nftables", scheduler: "rr", healthz: 10256, noRBAC: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, h, "kube-proxy", tc.args...)
			if len(r.daemonSets) != 1 || len(r.configMaps) != 1 {
				t.Fatalf("want one DaemonSet and one ConfigMap, got %v", r.kinds)
			}
			ds, cm := r.daemonSets[0], r.configMaps[0]
			pod := ds.Spec.Template.Spec

			cfg := loadProxyConfig(t, cm.Data["config.yaml"])
			if cfg.Mode != tc.mode || cfg.ClusterCIDR != tc.cidr || cfg.IPVS.Scheduler != tc.scheduler {
				t.Errorf("config mode %q clusterCIDR %q scheduler %q, want %q %q %q", cfg.Mode, cfg.ClusterCIDR, cfg.IPVS.Scheduler, tc.mode, tc.cidr, tc.scheduler)
			}
			if want := fmt.Sprintf("0.0.0.0:%d", tc.healthz); cfg.HealthzBindAddress != want {
				t.Errorf("healthzBindAddress %q, want %q", cfg.HealthzBindAddress, want)
			}

			if !pod.HostNetwork {
				t.Error("pod is not hostNetwork: kube-proxy must program the node's own network namespace")
			}
			if pod.PriorityClassName != "system-node-critical" {
				t.Errorf("priorityClassName %q", pod.PriorityClassName)
			}
			if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
				t.Errorf("tolerations %+v, want one that tolerates every taint", pod.Tolerations)
			}
			if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
				t.Errorf("updateStrategy %q", ds.Spec.UpdateStrategy.Type)
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("containers: %d", len(pod.Containers))
			}
			c := pod.Containers[0]
			if c.Image != tc.image {
				t.Errorf("image %q, want %q", c.Image, tc.image)
			}
			if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
				t.Error("container is not privileged: conntrack sysctls need a writable /proc/sys")
			}
			if len(c.Command) == 0 || c.Command[0] != images.KubeProxyPath {
				t.Errorf("command %v does not run %s (the binary's place in the image)", c.Command, images.KubeProxyPath)
			}
			probe := c.LivenessProbe
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != "/healthz" || probe.HTTPGet.Port.IntVal != tc.healthz {
				t.Errorf("liveness probe %+v, want GET /healthz on %d", probe, tc.healthz)
			}
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m
			}
			if m, ok := mounts["/lib/modules"]; !ok || !m.ReadOnly {
				t.Errorf("/lib/modules not mounted read-only: %+v", c.VolumeMounts)
			}
			cfgMount, ok := mounts["/etc/kube-proxy"]
			if !ok || !hasArg(c.Command, "--config=/etc/kube-proxy/config.yaml") {
				t.Errorf("config not mounted at /etc/kube-proxy or not passed: %v %+v", c.Command, c.VolumeMounts)
			}
			for _, v := range pod.Volumes {
				if v.Name == cfgMount.Name && (v.ConfigMap == nil || v.ConfigMap.Name != cm.Name) {
					t.Errorf("config volume %+v is not ConfigMap %s", v, cm.Name)
				}
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if env["KUBERNETES_SERVICE_HOST"] != tc.apiServer {
				t.Errorf("KUBERNETES_SERVICE_HOST %q, want %q", env["KUBERNETES_SERVICE_HOST"], tc.apiServer)
			}

			if tc.noRBAC {
				if len(r.roles)+len(r.bindings)+len(r.accounts) != 0 {
					t.Errorf("rbac.create=false, serviceAccount.create=false rendered %v", r.kinds)
				}
				if pod.ServiceAccountName != "kube-proxy" {
					t.Errorf("serviceAccountName %q", pod.ServiceAccountName)
				}
				return
			}
			if len(r.roles) != 1 || len(r.bindings) != 1 || len(r.accounts) != 1 {
				t.Fatalf("want one ClusterRole, ClusterRoleBinding and ServiceAccount, got %v", r.kinds)
			}
			if got := grants(r.roles[0].Rules); !reflect.DeepEqual(got, wantGrants) {
				t.Errorf("ClusterRole grants\n%v\nwant exactly\n%v", got, wantGrants)
			}
			b, sa := r.bindings[0], r.accounts[0]
			if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != r.roles[0].Name {
				t.Errorf("binding refers to %+v, not the chart's ClusterRole %s", b.RoleRef, r.roles[0].Name)
			}
			want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: r.releaseSpace}}
			if !reflect.DeepEqual(b.Subjects, want) || pod.ServiceAccountName != sa.Name {
				t.Errorf("binding subjects %+v, pod account %q; want %+v", b.Subjects, pod.ServiceAccountName, want)
			}
		})
	}
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}

// A configuration change must roll the pods, since kube-proxy reads its file only at start.
func TestKubeProxyConfigChangeRollsPods(t *testing.T) {
	h := newHelm(t)
	checksum := func(args ...string) string {
		r := render(t, h, "kube-proxy", args...)
		return r.daemonSets[0].Spec.Template.Annotations["checksum/config"]
	}
	a, b, c := checksum(), checksum("--set", "config.nftables.masqueradeAll=true"), checksum("--set", "image.tag=v0.1.1")
	if a == "" || a == b {
		t.Errorf("pod template annotation checksum/config %q did not change with the config (%q)", a, b)
	}
	if a != c {
		t.Errorf("checksum/config changed with the image tag alone: %q -> %q", a, c)
	}
}

func TestKubeletTemplate(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name       string
		args       []string
		subject    *rbacv1.Subject
		readers    []rbacv1.Subject
		installer  string
		hostPath   string
		maxPods    int32
		driver     string
		clusterDNS []string
		eviction   map[string]string
	}{
		{
			name:    "defaults",
			subject: &rbacv1.Subject{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "kube-apiserver-kubelet-client"},
			maxPods: 110, driver: "cgroupfs", eviction: kubeletv1alpha1.DefaultEvictionHard(),
		},
		{
			name: "group identity, readers, installer, config",
			args: []string{"--set", "rbac.apiServerKubeletClient.kind=Group,rbac.apiServerKubeletClient.name=apiserver-clients," +
				"rbac.metricsReaders[0].kind=ServiceAccount,rbac.metricsReaders[0].name=metrics-server,rbac.metricsReaders[0].namespace=kube-system," +
				"installer.enabled=true,installer.image.tag=v0.3.0,installer.hostPath=/opt/kubenode/bin," +
				"config.maxPods=250,config.cgroupDriver=cgroupfs,config.clusterDNS={10.96.0.10}",
				"--set-string", "config.evictionHard.memory\\.available=500Mi"},
			subject:   &rbacv1.Subject{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "apiserver-clients"},
			readers:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "metrics-server", Namespace: "kube-system"}},
			installer: "kubenode/kubelet:v0.3.0", hostPath: "/opt/kubenode/bin",
			maxPods: 250, driver: "cgroupfs", clusterDNS: []string{"10.96.0.10"}, eviction: map[string]string{"memory.available": "500Mi"},
		},
		{
			name:    "no binding",
			args:    []string{"--set", "rbac.apiServerKubeletClient.create=false"},
			maxPods: 110, driver: "cgroupfs", eviction: kubeletv1alpha1.DefaultEvictionHard(),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, h, "kubelet", tc.args...)
			if len(r.configMaps) != 1 {
				t.Fatalf("want one ConfigMap, got %v", r.kinds)
			}
			cfg := loadKubeletConfig(t, r.configMaps[0].Data["kubelet.yaml"])
			if cfg.MaxPods != tc.maxPods || cfg.CgroupDriver != tc.driver || !reflect.DeepEqual(cfg.ClusterDNS, tc.clusterDNS) || !reflect.DeepEqual(cfg.EvictionHard, tc.eviction) {
				t.Errorf("config maxPods %d cgroupDriver %q clusterDNS %v evictionHard %v; want %d %q %v %v",
					cfg.MaxPods, cfg.CgroupDriver, cfg.ClusterDNS, cfg.EvictionHard, tc.maxPods, tc.driver, tc.clusterDNS, tc.eviction)
			}
			if cfg.Authentication.Anonymous.Enabled == nil || *cfg.Authentication.Anonymous.Enabled || cfg.Authorization.Mode != "Webhook" {
				t.Errorf("kubelet API must default to no anonymous access and webhook authorization: %+v %+v", cfg.Authentication.Anonymous, cfg.Authorization)
			}

			var apiClient, readerBinding *rbacv1.ClusterRoleBinding
			for _, b := range r.bindings {
				switch b.RoleRef.Name {
				case "system:kubelet-api-admin":
					apiClient = b
				default:
					readerBinding = b
				}
			}
			switch {
			case tc.subject == nil && apiClient != nil:
				t.Errorf("binding to system:kubelet-api-admin rendered although disabled: %+v", apiClient)
			case tc.subject != nil && (apiClient == nil || !reflect.DeepEqual(apiClient.Subjects, []rbacv1.Subject{*tc.subject})):
				t.Errorf("system:kubelet-api-admin binding %+v, want subject %+v", apiClient, *tc.subject)
			}
			if tc.readers == nil {
				if readerBinding != nil || len(r.roles) != 0 {
					t.Errorf("metrics reader RBAC rendered without readers: %v", r.kinds)
				}
			} else {
				if len(r.roles) != 1 || readerBinding == nil || readerBinding.RoleRef.Name != r.roles[0].Name {
					t.Fatalf("metrics reader role and binding: %v", r.kinds)
				}
				if got, want := grants(r.roles[0].Rules), []string{"/nodes/metrics:get", "/nodes/stats:get"}; !reflect.DeepEqual(got, want) {
					t.Errorf("metrics reader grants %v, want exactly %v", got, want)
				}
				if !reflect.DeepEqual(readerBinding.Subjects, tc.readers) {
					t.Errorf("metrics reader subjects %+v, want %+v", readerBinding.Subjects, tc.readers)
				}
			}

			if tc.installer == "" {
				if len(r.daemonSets) != 0 {
					t.Errorf("installer DaemonSet rendered while installer.enabled=false")
				}
				return
			}
			if len(r.daemonSets) != 1 {
				t.Fatalf("want the installer DaemonSet, got %v", r.kinds)
			}
			pod := r.daemonSets[0].Spec.Template.Spec
			if len(pod.InitContainers) != 1 || pod.InitContainers[0].Image != tc.installer {
				t.Fatalf("installer init container %+v, want image %s", pod.InitContainers, tc.installer)
			}
			install := pod.InitContainers[0]
			script := strings.Join(install.Command, " ")
			if !strings.Contains(script, "cp "+images.KubeletPath+" ") {
				t.Errorf("installer command %q does not copy %s (the binary's place in the image)", script, images.KubeletPath)
			}
			var host *corev1.HostPathVolumeSource
			for _, v := range pod.Volumes {
				if v.HostPath != nil {
					host = v.HostPath
				}
			}
			if host == nil || host.Path != tc.hostPath {
				t.Errorf("installer host path %+v, want %s", host, tc.hostPath)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("installer pod mounts an API token it does not need")
			}
		})
	}
}

// Bad values fail before anything is rendered, with a message naming the value.
func TestSchemaRejectsBadValues(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		chart string
		set   string
		want  []string
	}{
		{"kube-proxy", "config.mode=iptables", []string{"/config/mode", "nftables"}},
		{"kube-proxy", "config.nftables.masqueradeBit=32", []string{"/config/nftables/masqueradeBit"}},
		{"kube-proxy", "config.ipvs.scheduler=random", []string{"/config/ipvs/scheduler"}},
		{"kube-proxy", "config.ipvs.syncPeriod=30", []string{"/config/ipvs/syncPeriod"}},
		{"kube-proxy", "healthz.port=0", []string{"/healthz/port"}},
		{"kube-proxy", "image.tga=v1", []string{"tga"}},
		{"kube-proxy", "config.logging.format=xml", []string{"/config/logging/format"}},
		{"kubelet", "config.cgroupDriver=cgroupsv2", []string{"/config/cgroupDriver"}},
		{"kubelet", "config.cgroupDriver=systemd", []string{"/config/cgroupDriver"}},
		{"kubelet", "config.evictionHard.memory\\.free=1Gi", []string{"memory.free"}},
		{"kubelet", "installer.hostPath=usr/local/bin", []string{"/installer/hostPath"}},
		{"kubelet", "rbac.apiServerKubeletClient.kind=ServiceAccount", []string{"/rbac/apiServerKubeletClient/kind"}},
		{"kubelet", "rbac.apiServerKubeletClient.name=", []string{"/rbac/apiServerKubeletClient/name"}},
	} {
		t.Run(tc.chart+" "+tc.set, func(t *testing.T) {
			for _, cmd := range [][]string{
				{"lint", "--strict", chartDir(t, tc.chart), "--set", tc.set},
				{"template", "rel", chartDir(t, tc.chart), "--set", tc.set},
			} {
				_, err := h.run(cmd...)
				if err == nil {
					t.Fatalf("helm %s accepted %s", cmd[0], tc.set)
				}
				msg := err.Error()
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("helm %s error does not name %q:\n%s", cmd[0], w, msg)
					}
				}
			}
		})
	}
}
