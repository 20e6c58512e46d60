package app

import (
	"bytes"
	"context"
	"maps"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/zap"

	kubeletv1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/common/commandtest"
)

// execute runs the command in-process with a runner that records what run would get.
func execute(t *testing.T, args ...string) (*Options, *kubeletv1alpha1.KubeletConfiguration, string, error) {
	t.Helper()
	var (
		gotOpts *Options
		gotCfg  *kubeletv1alpha1.KubeletConfiguration
	)
	cmd := newCommand(func(_ context.Context, o *Options, cfg *kubeletv1alpha1.KubeletConfiguration, _ *zap.Logger) error {
		gotOpts, gotCfg = o, cfg
		return nil
	})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return gotOpts, gotCfg, out.String(), err
}

func writeConfig(t *testing.T, data string) string {
	t.Helper()
	return commandtest.WriteFile(t, "kubelet.yaml", data)
}

const badConfig = `apiVersion: kubelet.config.kubenode.io/v1alpha1
kind: KubeletConfiguration
authentication:
  webhook:
    cacheTtl: 2m
maxPods: -1
cgroupDriver: systemd
`

func TestBadConfigListsEveryProblem(t *testing.T) {
	path := writeConfig(t, badConfig)
	_, cfg, _, err := execute(t, "--config", path)
	if err == nil || cfg != nil {
		t.Fatalf("a bad config must fail before run: err=%v", err)
	}
	commandtest.ContainsAll(t, "error", err.Error(),
		path+": 2 problems:",
		"line 5: authentication.webhook.cacheTtl: unknown field",
		"line 6: maxPods: Invalid value: -1: must be at least 1",
	)
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	path := writeConfig(t, `apiVersion: kubelet.config.kubenode.io/v1alpha1
kind: KubeletConfiguration
maxPods: 50
cgroupDriver: systemd
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
failSwapOn: true
`)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o *Options, c *kubeletv1alpha1.KubeletConfiguration)
	}{
		{"file values without flags", nil, func(t *testing.T, _ *Options, c *kubeletv1alpha1.KubeletConfiguration) {
			if c.MaxPods != 50 || c.CgroupDriver != "systemd" || c.Port != 10250 {
				t.Fatalf("got maxPods %d cgroupDriver %q port %d", c.MaxPods, c.CgroupDriver, c.Port)
			}
		}},
		{"explicit flags win", []string{"--max-pods=20", "--cluster-dns=10.0.0.10,fd00::a", "--fail-swap-on=false", "--healthz-port=0"}, func(t *testing.T, _ *Options, c *kubeletv1alpha1.KubeletConfiguration) {
			if c.MaxPods != 20 || strings.Join(c.ClusterDNS, ",") != "10.0.0.10,fd00::a" || *c.FailSwapOn || *c.HealthzPort != 0 {
				t.Fatalf("flags did not override: maxPods %d dns %v failSwapOn %v healthz %d", c.MaxPods, c.ClusterDNS, *c.FailSwapOn, *c.HealthzPort)
			}
			if c.CgroupDriver != "systemd" || c.ClusterDomain != "cluster.local" {
				t.Fatalf("unset flags must keep file values: cgroupDriver %q domain %q", c.CgroupDriver, c.ClusterDomain)
			}
		}},
		{"node flags", []string{"--node-labels=a=b,example.com/c=d", "--register-with-taints=dedicated=gpu:NoSchedule,edge:NoExecute", "--pod-manifest-path=/etc/kubernetes/manifests"}, func(t *testing.T, _ *Options, c *kubeletv1alpha1.KubeletConfiguration) {
			if c.NodeLabels["example.com/c"] != "d" || len(c.RegisterWithTaints) != 2 || c.StaticPodPath != "/etc/kubernetes/manifests" {
				t.Fatalf("got labels %v taints %v staticPodPath %q", c.NodeLabels, c.RegisterWithTaints, c.StaticPodPath)
			}
			want := kubeletv1alpha1.Taint{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}
			if c.RegisterWithTaints[0] != want || c.RegisterWithTaints[1].Key != "edge" {
				t.Fatalf("taints = %+v", c.RegisterWithTaints)
			}
		}},
		{"eviction and image GC flags", []string{"--eviction-hard=memory.available<200Mi,nodefs.available<0%", "--image-gc-high-threshold=100", "--image-gc-low-threshold=90"}, func(t *testing.T, _ *Options, c *kubeletv1alpha1.KubeletConfiguration) {
			want := map[string]string{"memory.available": "200Mi", "nodefs.available": "0%"}
			if !maps.Equal(c.EvictionHard, want) || *c.ImageGCHighThresholdPercent != 100 || *c.ImageGCLowThresholdPercent != 90 {
				t.Fatalf("got evictionHard %v imageGC %d/%d", c.EvictionHard, *c.ImageGCHighThresholdPercent, *c.ImageGCLowThresholdPercent)
			}
		}},
		{"soft eviction flags", []string{"--eviction-soft=memory.available<500Mi", "--eviction-soft-grace-period=memory.available=1m30s", "--eviction-max-pod-grace-period=60"}, func(t *testing.T, _ *Options, c *kubeletv1alpha1.KubeletConfiguration) {
			if c.EvictionSoft["memory.available"] != "500Mi" || c.EvictionSoftGracePeriod["memory.available"] != "1m30s" || c.EvictionMaxPodGracePeriod != 60 {
				t.Fatalf("got evictionSoft %v grace %v max %d", c.EvictionSoft, c.EvictionSoftGracePeriod, c.EvictionMaxPodGracePeriod)
			}
		}},
		{"options", []string{"--kubeconfig=/etc/kubernetes/kubelet.conf", "--hostname-override=Node-1", "--node-ip=10.0.0.5,fd00::5", "--root-dir=/tmp/kl"}, func(t *testing.T, o *Options, _ *kubeletv1alpha1.KubeletConfiguration) {
			name, err := o.NodeName()
			if err != nil || name != "node-1" || o.Kubeconfig != "/etc/kubernetes/kubelet.conf" || len(o.NodeIPs) != 2 || o.RootDir != "/tmp/kl" {
				t.Fatalf("options = %+v name %q", o, name)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, c, _, err := execute(t, append([]string{"--config", path}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o, c)
		})
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"invalid flag value is validated", []string{"--cgroup-driver=upstart"}, `kubelet configuration from flags: cgroupDriver: Unsupported value: "upstart"`},
		{"node ip", []string{"--node-ip=10.0.0.1,10.0.0.2"}, "invalid --node-ip"},
		{"eviction syntax", []string{"--eviction-hard=memory.available=1Gi"}, "invalid --eviction-hard"},
		{"eviction signal twice", []string{"--eviction-hard=memory.available<1Gi,memory.available<2Gi"}, "memory.available given twice"},
		{"eviction value is validated", []string{"--eviction-hard=memory.available<lots"}, "evictionHard[memory.available]"},
		{"soft eviction without grace period", []string{"--eviction-soft=memory.available<500Mi"}, "evictionSoftGracePeriod[memory.available]"},
		{"soft grace period syntax", []string{"--eviction-soft-grace-period=memory.available<1m"}, "invalid --eviction-soft-grace-period"},
		{"taint syntax", []string{"--register-with-taints=novalue"}, "invalid --register-with-taints"},
		{"taint effect", []string{"--register-with-taints=a=b:Sometimes"}, "registerWithTaints[0].effect"},
		{"log level", []string{"--log-level=loud"}, "--log-level"},
		{"unknown flag", []string{"--iptables-sync-period=1s"}, "unknown flag"},
		{"arguments", []string{"extra"}, "unknown command"},
		{"missing file", []string{"--config=/nonexistent/kubelet.yaml"}, "/nonexistent/kubelet.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg, _, err := execute(t, tc.args...)
			if err == nil || cfg != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestUpstreamKubeadmConfig(t *testing.T) {
	_, c, _, err := execute(t, "--config", "../kubeletconfig/testdata/kubeadm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CgroupDriver != "systemd" || c.StaticPodPath != "/etc/kubernetes/manifests" {
		t.Fatalf("kubeadm config not applied: %+v", c)
	}
	_, _, _, err = execute(t, "--config", "../kubeletconfig/testdata/upstream-unsupported.yaml")
	if err == nil || !strings.Contains(err.Error(), "cpuManagerPolicy") || !strings.Contains(err.Error(), "readOnlyPort") {
		t.Fatalf("set-but-unsupported fields must be named: %v", err)
	}
}

func TestVersionAndHelp(t *testing.T) {
	_, cfg, out, err := execute(t, "--version")
	if err != nil || cfg != nil || !strings.HasPrefix(out, "kubelet v") || !strings.Contains(out, "commit ") {
		t.Fatalf("--version printed %q (err %v)", out, err)
	}
	_, _, out, err = execute(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	commandtest.ContainsAll(t, "--help", out, "Config flags:", "Node flags:", "Runtime flags:", "Networking flags:", "Server flags:", "Logging flags:", "General flags:", "--pod-manifest-path", "--log-level")
}

// TestBinary builds the real binary with the Makefile's version stamping and checks what a user sees.
func TestBinary(t *testing.T) {
	bin := commandtest.Build(t, "github.com/kubenode/kubenode/kubelet/cmd/kubelet")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kubelet "+commandtest.Version+" (commit "+commandtest.Commit) {
		t.Fatalf("--version: %v: %s", err, out)
	}
	commandtest.ExpectExit(t, bin, []string{"--config", writeConfig(t, badConfig)}, 1, "authentication.webhook.cacheTtl: unknown field", "maxPods: Invalid value")
}
