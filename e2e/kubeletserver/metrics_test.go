package kubeletserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubenode/kubenode/e2e/kubeletharness"
)

// parseMetrics decodes the Prometheus text format, as metrics-server and Prometheus do.
func parseMetrics(b []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// series finds the sample of family whose labels include all of want.
func series(fams map[string]*dto.MetricFamily, family string, want map[string]string) *dto.Metric {
	f := fams[family]
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

func sampleValue(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// grantNodes binds a ClusterRole allowing get on nodes/<subresource> to a new service
// account and returns its token.
func grantNodes(t *testing.T, n *kubeletharness.Node, ns, sa, subresource string) string {
	t.Helper()
	ctx := context.Background()
	tok := saToken(t, n, ns, sa)
	name := "kubelet-" + subresource + "-" + ns
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/" + subresource}, Verbs: []string{"get"}}},
	}
	if _, err := n.Admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Admin.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}},
	}
	if _, err := n.Admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.Admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return tok
}

// TestResourceMetricsForKubectlTop scrapes what metrics-server scrapes for `kubectl top`, the
// ways an operator's cluster reaches it: through the API server's node proxy and directly with
// a service account granted nodes/metrics (metrics-server's own RBAC).
func TestResourceMetricsForKubectlTop(t *testing.T) {
	n := kubeletharness.Start(t, nil)
	ctx := context.Background()
	ns := n.Namespace(t, "top")
	// Busy a little and hold some memory, so both figures are clearly non-zero.
	n.RunPod(t, ns, "busy", "trap 'exit 0' TERM; x=$(seq 1 100000); while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.5; done")
	proxyPath := func(p ...string) *rest.Request {
		return n.Admin.CoreV1().RESTClient().Get().AbsPath(append([]string{"/api/v1/nodes", n.Name, "proxy"}, p...)...)
	}
	podLabels := map[string]string{"namespace": ns, "pod": "busy"}
	ctrLabels := map[string]string{"namespace": ns, "pod": "busy", "container": "main"}

	var firstCPU float64
	t.Run("through the API server: the running pod's usage, stamped", func(t *testing.T) {
		kubeletharness.Eventually(t, 30*time.Second, "busy's usage in /metrics/resource", func() error {
			b, err := proxyPath("metrics", "resource").DoRaw(ctx)
			if err != nil {
				return fmt.Errorf("GET nodes/%s/proxy/metrics/resource: %w", n.Name, err)
			}
			fams, err := parseMetrics(b)
			if err != nil {
				return fmt.Errorf("not the Prometheus text format: %w\n%.500s", err, b)
			}
			if e := series(fams, "resource_scrape_error", nil); e == nil || sampleValue(e) != 0 {
				return fmt.Errorf("resource_scrape_error %v, want 0", e)
			}
			cpu := series(fams, "node_cpu_usage_seconds_total", nil)
			if cpu == nil || cpu.Counter == nil || sampleValue(cpu) <= 0 || cpu.TimestampMs == nil {
				return fmt.Errorf("node_cpu_usage_seconds_total: %v, want a positive counter with a timestamp", cpu)
			}
			firstCPU = sampleValue(cpu)
			if m := series(fams, "node_memory_working_set_bytes", nil); m == nil || sampleValue(m) <= 0 {
				return fmt.Errorf("node_memory_working_set_bytes: %v", m)
			}
			mem := series(fams, "container_memory_working_set_bytes", ctrLabels)
			if mem == nil || sampleValue(mem) <= 0 || mem.TimestampMs == nil {
				return fmt.Errorf("container_memory_working_set_bytes%v: %v, want > 0 with a timestamp", ctrLabels, mem)
			}
			if c := series(fams, "container_cpu_usage_seconds_total", ctrLabels); c == nil || c.Counter == nil || sampleValue(c) <= 0 {
				return fmt.Errorf("container_cpu_usage_seconds_total%v: %v", ctrLabels, c)
			}
			start := series(fams, "container_start_time_seconds", ctrLabels)
			if start == nil || time.Since(time.Unix(int64(sampleValue(start)), 0)).Abs() > 10*time.Minute {
				return fmt.Errorf("container_start_time_seconds%v: %v, want about now", ctrLabels, start)
			}
			if p := series(fams, "pod_memory_working_set_bytes", podLabels); p == nil || sampleValue(p) < sampleValue(mem) {
				return fmt.Errorf("pod_memory_working_set_bytes%v: %v, want at least its container's %v", podLabels, p, sampleValue(mem))
			}
			if p := series(fams, "pod_cpu_usage_seconds_total", podLabels); p == nil || sampleValue(p) <= 0 {
				return fmt.Errorf("pod_cpu_usage_seconds_total%v: %v", podLabels, p)
			}
			return nil
		})
	})

	t.Run("node CPU counter grows between scrapes", func(t *testing.T) {
		kubeletharness.Eventually(t, 15*time.Second, "a larger node_cpu_usage_seconds_total", func() error {
			b, err := proxyPath("metrics", "resource").DoRaw(ctx)
			if err != nil {
				return err
			}
			fams, err := parseMetrics(b)
			if err != nil {
				return err
			}
			cpu := series(fams, "node_cpu_usage_seconds_total", nil)
			if cpu == nil || sampleValue(cpu) <= firstCPU {
				return fmt.Errorf("node_cpu_usage_seconds_total %v, first scrape %v", cpu, firstCPU)
			}
			return nil
		})
	})

	t.Run("an identity without nodes/proxy is refused by the API server", func(t *testing.T) {
		tok := saToken(t, n, ns, "no-rights")
		cfg := rest.AnonymousClientConfig(n.AdminCfg)
		cfg.BearerToken = tok
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", n.Name, "proxy", "metrics", "resource").DoRaw(ctx)
		if !apierrors.IsForbidden(err) {
			t.Fatalf("err = %v, want 403 Forbidden", err)
		}
	})

	t.Run("direct: nodes/metrics is metrics-server's grant, nodes/proxy is not enough", func(t *testing.T) {
		metricsTok := grantNodes(t, n, ns, "metrics-scraper", "metrics")
		proxyTok := grantNodes(t, n, ns, "proxy-only", "proxy")
		plain := kubeletClient(t, n, false)
		for _, tc := range []struct {
			name, token string
			want        int
		}{
			{"nodes/metrics", metricsTok, http.StatusOK},
			{"nodes/proxy only", proxyTok, http.StatusForbidden},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// RBAC changes reach the kubelet's authorization cache within seconds.
				kubeletharness.Eventually(t, 20*time.Second, "/metrics/resource", func() error {
					code, body := get(t, n, plain, "/metrics/resource", tc.token)
					if code != tc.want {
						return fmt.Errorf("status %d (%.200s), want %d", code, strings.TrimSpace(body), tc.want)
					}
					if code == http.StatusOK {
						fams, err := parseMetrics([]byte(body))
						if err != nil {
							return err
						}
						if series(fams, "container_memory_working_set_bytes", ctrLabels) == nil {
							return fmt.Errorf("no container_memory_working_set_bytes%v", ctrLabels)
						}
					}
					return nil
				})
			})
		}
	})

	t.Run("/metrics/cadvisor labels the container as cAdvisor does", func(t *testing.T) {
		b, err := proxyPath("metrics", "cadvisor").DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fams, err := parseMetrics(b)
		if err != nil {
			t.Fatal(err)
		}
		mem := series(fams, "container_memory_working_set_bytes", ctrLabels)
		if mem == nil || sampleValue(mem) <= 0 {
			t.Fatalf("container_memory_working_set_bytes%v: %v\n%.1000s", ctrLabels, mem, b)
		}
		labels := map[string]string{}
		for _, l := range mem.Label {
			labels[l.GetName()] = l.GetValue()
		}
		// id is the container's cgroup, named for its runtime ID (name).
		if labels["name"] == "" || !strings.HasSuffix(labels["id"], "/"+labels["name"]) || !strings.Contains(labels["image"], "busybox") {
			t.Errorf("cAdvisor labels %v: want id the cgroup path ending in name (the container ID) and the busybox image", labels)
		}
		if cpu := series(fams, "container_cpu_usage_seconds_total", map[string]string{"id": "/", "cpu": "total"}); cpu == nil || sampleValue(cpu) <= 0 {
			t.Errorf("root cgroup container_cpu_usage_seconds_total: %v", cpu)
		}
	})

	t.Run("/configz is the effective configuration", func(t *testing.T) {
		b, err := proxyPath("configz").DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cz struct {
			Kubeletconfig struct {
				Port          int    `json:"port"`
				ClusterDomain string `json:"clusterDomain"`
				// A default the test's configuration does not set.
				HealthzBindAddress string `json:"healthzBindAddress"`
			} `json:"kubeletconfig"`
		}
		if err := json.Unmarshal(b, &cz); err != nil {
			t.Fatalf("%v: %.300s", err, b)
		}
		if cz.Kubeletconfig.Port != n.Port || cz.Kubeletconfig.ClusterDomain != "cluster.local" || cz.Kubeletconfig.HealthzBindAddress == "" {
			t.Errorf("configz %+v: want port %d, clusterDomain cluster.local and defaults filled in", cz.Kubeletconfig, n.Port)
		}
	})
}
