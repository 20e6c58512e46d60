package kubeletconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/common/config"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
)

func TestLoadKubeadmConfig(t *testing.T) {
	c, warnings, err := Load("testdata/kubeadm.yaml")
	if err != nil {
		t.Fatalf("kubeadm's KubeletConfiguration must load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"cgroupDriver", c.CgroupDriver, "systemd"},
		{"clusterDNS", strings.Join(c.ClusterDNS, ","), "10.96.0.10"},
		{"clusterDomain", c.ClusterDomain, "cluster.local"},
		{"staticPodPath", c.StaticPodPath, "/etc/kubernetes/manifests"},
		{"clientCAFile", c.Authentication.X509.ClientCAFile, "/etc/kubernetes/pki/ca.crt"},
		{"anonymous", *c.Authentication.Anonymous.Enabled, false},
		{"webhook authn", *c.Authentication.Webhook.Enabled, true},
		{"authorization", c.Authorization.Mode, "Webhook"},
		{"resolvConf", *c.ResolverConfig, "/run/systemd/resolve/resolv.conf"},
		{"zero durations take defaults", c.SyncFrequency.Duration, time.Minute},
		{"cacheTTL default", c.Authentication.Webhook.CacheTTL.Duration, 2 * time.Minute},
		{"runtime endpoint default", c.ContainerRuntimeEndpoint, v1alpha1.DefaultContainerRuntimeEndpoint},
		{"healthz", *c.HealthzPort, int32(10248)},
		{"converted to kubenode's apiVersion", c.APIVersion, v1alpha1.APIVersion},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "rotateCertificates is ignored") {
		t.Fatalf("warnings = %q, want only rotateCertificates", warnings)
	}
}

func TestLoadUpstreamUnsupportedFields(t *testing.T) {
	_, warnings, err := Load("testdata/upstream-unsupported.yaml")
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *config.Error", err)
	}
	want := map[string]int{"cpuManagerPolicy": 5, "readOnlyPort": 7, "evictionMinimumReclaim": 8}
	if len(ce.Problems) != len(want) {
		t.Fatalf("problems = %v, want exactly %v", ce.Problems, want)
	}
	for _, p := range ce.Problems {
		if line, ok := want[p.Field]; !ok || line != p.Line || !strings.Contains(p.Message, "not supported") {
			t.Errorf("unexpected problem %+v", p)
		}
	}
	joined := strings.Join(warnings, "\n")
	for _, w := range []string{"featureGates", "kubeAPIQPS", "rotateCertificates"} {
		if !strings.Contains(joined, w+" is ignored") {
			t.Errorf("warnings %q do not name %s", warnings, w)
		}
	}
	for _, accepted := range []string{"topologyManagerPolicy", "seccompDefault", "enforceNodeAllocatable"} {
		if strings.Contains(joined+err.Error(), accepted) {
			t.Errorf("%s is set to the value kubenode implements and must not be reported", accepted)
		}
	}
}

func TestLoadNative(t *testing.T) {
	c, warnings, err := Load("testdata/native.yaml")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("err = %v, warnings = %v", err, warnings)
	}
	if c.MaxPods != 50 || c.NodeLabels["example.com/pool"] != "edge" || c.CrashLoopBackOff.InitialContainerRestartPeriod.Duration != 2*time.Second {
		t.Fatalf("values not loaded: %+v", c)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	_, _, err := Load("testdata/invalid.yaml")
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{
		"testdata/invalid.yaml: 3 problems:",
		"line 6: authentication.webhook.cacheTtl: unknown field",
		"line 7: maxPods: Invalid value: -4",
		`line 8: cgroupDriver: Unsupported value: "systemD"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
}

func TestLoadDispatch(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"kube-proxy kind", "apiVersion: kubelet.config.kubenode.io/v1alpha1\nkind: KubeProxyConfiguration\n", `line 1: apiVersion: apiVersion "kubelet.config.kubenode.io/v1alpha1" with kind "KubeProxyConfiguration" is not a kubelet configuration`},
		{"unknown version", "apiVersion: kubelet.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n", "is not a kubelet configuration"},
		{"missing type", "maxPods: 5\n", "apiVersion and kind are required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadWithOverrides(t *testing.T) {
	override := func(c *v1alpha1.KubeletConfiguration) error { c.MaxPods = 7; return nil }
	c, _, err := LoadWithOverrides("testdata/native.yaml", override)
	if err != nil || c.MaxPods != 7 || c.ClusterDomain != "cluster.local" {
		t.Fatalf("override must win over the file and keep the rest: %v %+v", err, c)
	}
	bad := func(c *v1alpha1.KubeletConfiguration) error { c.Port = 99999; return nil }
	if _, _, err := LoadWithOverrides("", bad); err == nil || !strings.Contains(err.Error(), "kubelet configuration from flags: port") {
		t.Fatalf("overridden values must be validated: %v", err)
	}
	_, _, err = LoadWithOverrides("testdata/native.yaml", func(c *v1alpha1.KubeletConfiguration) error { c.MaxPods = -1; return nil })
	if err == nil || !strings.Contains(err.Error(), "testdata/native.yaml: maxPods: Invalid value: -1: must be at least 1 (set on the command line)") {
		t.Fatalf("a bad flag value must be blamed on the command line, not on the file's line: %v", err)
	}
	c, _, err = LoadWithOverrides("", nil)
	if err != nil || c.Port != 10250 {
		t.Fatalf("no file means defaults: %v", err)
	}
}

func TestUpstreamTableIsComplete(t *testing.T) {
	if missing := config.UnclassifiedFields(&kubeletv1beta1.KubeletConfiguration{}, UpstreamFields()); len(missing) != 0 {
		t.Fatalf("upstream fields with no entry in UpstreamFields: %v", missing)
	}
}

func TestLoadUpstreamPullAndPodSettings(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		check   func(c *v1alpha1.KubeletConfiguration) bool
		wantErr string
	}{
		{"parallel pulls carried over", "serializeImagePulls: false\nmaxParallelImagePulls: 3\n", func(c *v1alpha1.KubeletConfiguration) bool {
			return !*c.SerializeImagePulls && *c.MaxParallelImagePulls == 3
		}, ""},
		{"serialized by default, no cap", "", func(c *v1alpha1.KubeletConfiguration) bool {
			return *c.SerializeImagePulls && c.MaxParallelImagePulls == nil
		}, ""},
		{"parallel cap with serialized pulls is refused", "maxParallelImagePulls: 5\n", nil, "maxParallelImagePulls: Invalid value: 5"},
		{"soft eviction carried over", "evictionSoft:\n  memory.available: 500Mi\nevictionSoftGracePeriod:\n  memory.available: 1m30s\nevictionMaxPodGracePeriod: 60\n",
			func(c *v1alpha1.KubeletConfiguration) bool {
				return c.EvictionSoft["memory.available"] == "500Mi" && c.EvictionSoftGracePeriod["memory.available"] == "1m30s" && c.EvictionMaxPodGracePeriod == 60
			}, ""},
		{"negative max pod grace period means what 0 means", "evictionMaxPodGracePeriod: -1\n", func(c *v1alpha1.KubeletConfiguration) bool {
			return c.EvictionMaxPodGracePeriod == 0
		}, ""},
		{"soft threshold without a grace period is refused", "evictionSoft:\n  memory.available: 500Mi\n", nil, "evictionSoftGracePeriod[memory.available]: Required value"},
		{"pids limit and swap check carried over", "podPidsLimit: 1024\nfailSwapOn: false\n", func(c *v1alpha1.KubeletConfiguration) bool {
			return *c.PodPidsLimit == 1024 && !*c.FailSwapOn
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			data := "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" + tc.data
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			c, warnings, err := Load(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(warnings) != 0 {
				t.Fatalf("err = %v, warnings = %v", err, warnings)
			}
			if !tc.check(c) {
				t.Fatalf("values not carried over: %+v", c)
			}
		})
	}
}
