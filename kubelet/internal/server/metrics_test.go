package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	kubeletv1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/kubelet/internal/stats"
)

// fakeStats returns a fixed snapshot, or an error.
type fakeStats struct {
	snap *stats.Snapshot
	err  error
}

func (f fakeStats) Snapshot(context.Context) (*stats.Snapshot, error) { return f.snap, f.err }

func u64(v uint64) *uint64 { return &v }

// Reading times of the fake snapshot; samples must carry them as their timestamps.
var (
	nodeRead = time.Unix(1_800_000_000, 0)
	ctrRead  = time.Unix(1_800_000_005, 0)
	started  = time.Unix(1_799_999_000, 500_000_000)
)

func testSnapshot() *stats.Snapshot {
	at := metav1.NewTime
	web := statsapi.ContainerStats{
		Name: "app", StartTime: at(started),
		CPU:    &statsapi.CPUStats{Time: at(ctrRead), UsageCoreNanoSeconds: u64(2_500_000_000)},
		Memory: &statsapi.MemoryStats{Time: at(ctrRead), WorkingSetBytes: u64(4096)},
	}
	side := statsapi.ContainerStats{
		Name: "side", StartTime: at(started),
		CPU:    &statsapi.CPUStats{Time: at(ctrRead), UsageCoreNanoSeconds: u64(500_000_000)},
		Memory: &statsapi.MemoryStats{Time: at(ctrRead), WorkingSetBytes: u64(1024)},
	}
	ref := statsapi.PodReference{Name: "web", Namespace: "ns", UID: "uid-1"}
	return &stats.Snapshot{
		Node: statsapi.NodeStats{
			NodeName: "node-a",
			CPU:      &statsapi.CPUStats{Time: at(nodeRead), UsageCoreNanoSeconds: u64(150_000_000_000)},
			Memory:   &statsapi.MemoryStats{Time: at(nodeRead), WorkingSetBytes: u64(1 << 30)},
			Swap:     &statsapi.SwapStats{Time: at(nodeRead), SwapUsageBytes: u64(7)},
		},
		Pods: []statsapi.PodStats{{
			PodRef:     ref,
			Containers: []statsapi.ContainerStats{web, side},
			CPU:        &statsapi.CPUStats{Time: at(ctrRead), UsageCoreNanoSeconds: u64(3_000_000_000)},
			Memory:     &statsapi.MemoryStats{Time: at(ctrRead), WorkingSetBytes: u64(5120)},
		}},
		Containers: []stats.Container{
			{Pod: ref, Stats: web, ID: "c-app", Image: "registry.example/web:1"},
			{Pod: ref, Stats: side, ID: "c-side", Image: "registry.example/side:1"},
		},
	}
}

func metricsServer(t *testing.T, st Stats, rt *fakeRuntime) *Server {
	return metricsServerDebugging(t, st, rt, true)
}

func metricsServerDebugging(t *testing.T, st Stats, rt *fakeRuntime, debugging bool) *Server {
	t.Helper()
	cert, err := LoadOrCreateSelfSigned(filepath.Join(t.TempDir(), "pki"), "node-a", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	port := int32(10250)
	s, err := New(Config{
		Addr: "127.0.0.1:0", NodeName: "node-a", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Authn: userAuthn{},
		Authz: subresourceAuthz{"scraper": {"metrics", "stats"}, "proxier": {"proxy"}, "configz-reader": {"configz"}},
		Pods:  fakePods{}, Runtime: rt, Stats: st, Log: zap.NewNop(), Debugging: debugging,
		Configz: &kubeletv1alpha1.KubeletConfiguration{Port: port, ClusterDomain: "cluster.local"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scrape GETs path as user and decodes the text exposition format.
func scrape(t *testing.T, s *Server, user, path string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("X-Test-User", user)
	req.Header.Set("Accept", "text/plain")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		return rec.Code, nil
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("%s is not the Prometheus text format: %v", path, err)
	}
	return rec.Code, fams
}

// sample is one series as a test expects it: labels as k=v sorted and joined by ",".
type sample struct {
	family string
	typ    dto.MetricType
	labels string
	value  float64
	// ts is the sample's timestamp; zero means it must have none.
	ts time.Time
}

func find(fams map[string]*dto.MetricFamily, family, labels string) (*dto.Metric, dto.MetricType, bool) {
	f := fams[family]
	if f == nil {
		return nil, 0, false
	}
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(ls)
		if strings.Join(ls, ",") == labels {
			return m, f.GetType(), true
		}
	}
	return nil, 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return m.Untyped.GetValue()
}

func TestResourceMetrics(t *testing.T) {
	ctr := "container=app,namespace=ns,pod=web"
	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	tests := []struct {
		name    string
		stats   Stats
		want    []sample
		missing []string // families that must not be served
	}{
		{
			name:  "usage of node, pods and containers",
			stats: fakeStats{snap: testSnapshot()},
			want: []sample{
				{"node_cpu_usage_seconds_total", counter, "", 150, nodeRead},
				{"node_memory_working_set_bytes", gauge, "", 1 << 30, nodeRead},
				{"node_swap_usage_bytes", gauge, "", 7, nodeRead},
				{"container_cpu_usage_seconds_total", counter, ctr, 2.5, ctrRead},
				{"container_cpu_usage_seconds_total", counter, "container=side,namespace=ns,pod=web", 0.5, ctrRead},
				{"container_memory_working_set_bytes", gauge, ctr, 4096, ctrRead},
				{"container_start_time_seconds", gauge, ctr, 1_799_999_000.5, time.Time{}},
				{"pod_cpu_usage_seconds_total", counter, "namespace=ns,pod=web", 3, ctrRead},
				{"pod_memory_working_set_bytes", gauge, "namespace=ns,pod=web", 5120, ctrRead},
				{"scrape_error", gauge, "", 0, time.Time{}},
				{"resource_scrape_error", gauge, "", 0, time.Time{}},
			},
		},
		{
			name:    "runtime down: the scrape succeeds and reports the error",
			stats:   fakeStats{err: errors.New("CRI ListPodSandbox: unavailable")},
			want:    []sample{{"scrape_error", gauge, "", 1, time.Time{}}, {"resource_scrape_error", gauge, "", 1, time.Time{}}},
			missing: []string{"node_cpu_usage_seconds_total", "container_memory_working_set_bytes"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, fams := scrape(t, metricsServer(t, tc.stats, &fakeRuntime{}), "scraper", "/metrics/resource")
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			checkSamples(t, fams, tc.want)
			for _, f := range tc.missing {
				if fams[f] != nil {
					t.Errorf("%s served after a failed read: %v", f, fams[f])
				}
			}
		})
	}
}

func checkSamples(t *testing.T, fams map[string]*dto.MetricFamily, want []sample) {
	t.Helper()
	for _, w := range want {
		m, typ, ok := find(fams, w.family, w.labels)
		if !ok {
			t.Errorf("%s{%s} missing; families %v", w.family, w.labels, keys(fams))
			continue
		}
		if typ != w.typ {
			t.Errorf("%s is a %v, want %v", w.family, typ, w.typ)
		}
		if got := value(m); got != w.value {
			t.Errorf("%s{%s} = %v, want %v", w.family, w.labels, got, w.value)
		}
		switch {
		case w.ts.IsZero() && m.TimestampMs != nil:
			t.Errorf("%s{%s} has timestamp %d, want none", w.family, w.labels, m.GetTimestampMs())
		case !w.ts.IsZero() && m.GetTimestampMs() != w.ts.UnixMilli():
			t.Errorf("%s{%s} timestamp %d, want %d (the reading's time)", w.family, w.labels, m.GetTimestampMs(), w.ts.UnixMilli())
		}
	}
}

func keys(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for k := range fams {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestCadvisorMetrics(t *testing.T) {
	rt := &fakeRuntime{cgroups: map[string]string{"c-app": "/kubepods/besteffort/poduid-1/c-app", "c-side": "/kubepods/besteffort/poduid-1/c-side"}}
	s := metricsServer(t, fakeStats{snap: testSnapshot()}, rt)
	app := "container=app,id=/kubepods/besteffort/poduid-1/c-app,image=registry.example/c-app:tag,name=c-app,namespace=ns,pod=web"
	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	want := []sample{
		{"container_cpu_usage_seconds_total", counter, "container=,cpu=total,id=/,image=,name=,namespace=,pod=", 150, nodeRead},
		{"container_memory_working_set_bytes", gauge, "container=,id=/,image=,name=,namespace=,pod=", 1 << 30, nodeRead},
		{"container_cpu_usage_seconds_total", counter, strings.Replace(app, "container=app,", "container=app,cpu=total,", 1), 2.5, ctrRead},
		{"container_memory_working_set_bytes", gauge, app, 4096, ctrRead},
		{"container_start_time_seconds", gauge, app, 1_799_999_000.5, time.Time{}},
		{"container_memory_working_set_bytes", gauge, "container=side,id=/kubepods/besteffort/poduid-1/c-side,image=registry.example/c-side:tag,name=c-side,namespace=ns,pod=web", 1024, ctrRead},
	}
	for i := range 2 {
		code, fams := scrape(t, s, "scraper", "/metrics/cadvisor")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		checkSamples(t, fams, want)
		if i == 1 && rt.verboseCalls != 2 {
			t.Errorf("%d verbose ContainerStatus calls over two scrapes of two containers, want 2 (cgroup paths are cached)", rt.verboseCalls)
		}
	}
}

func TestCadvisorMetricsWithoutRuntimeStatus(t *testing.T) {
	// The runtime cannot tell the containers' status: the series stay, with the listed image
	// and no cgroup.
	s := metricsServer(t, fakeStats{snap: testSnapshot()}, &fakeRuntime{})
	_, fams := scrape(t, s, "scraper", "/metrics/cadvisor")
	checkSamples(t, fams, []sample{{"container_memory_working_set_bytes", dto.MetricType_GAUGE,
		"container=app,id=,image=registry.example/web:1,name=c-app,namespace=ns,pod=web", 4096, ctrRead}})
}

func TestMetricsAndConfigzAuthorization(t *testing.T) {
	tests := []struct {
		user, path string
		want       int
	}{
		{"scraper", "/metrics/resource", 200},
		{"scraper", "/metrics/cadvisor", 200},
		// nodes/proxy does not grant nodes/metrics, as upstream.
		{"proxier", "/metrics/resource", 403},
		{"proxier", "/metrics/cadvisor", 403},
		{"configz-reader", "/configz", 200},
		// nodes/proxy still grants /configz (upstream's fallback for fine-grained authz).
		{"proxier", "/configz", 200},
		{"scraper", "/configz", 403},
		{"", "/metrics/resource", 401},
	}
	s := metricsServer(t, fakeStats{snap: testSnapshot()}, &fakeRuntime{})
	for _, tc := range tests {
		t.Run(tc.user+" "+tc.path, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			if tc.user != "" {
				req.Header.Set("X-Test-User", tc.user)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("status %d (%s), want %d", rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
			}
		})
	}
}

func TestConfigz(t *testing.T) {
	s := metricsServer(t, nil, &fakeRuntime{})
	req := httptest.NewRequest("GET", "/configz", nil)
	req.Header.Set("X-Test-User", "configz-reader")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var got struct {
		Kubeletconfig map[string]any `json:"kubeletconfig"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body.String())
	}
	if got.Kubeletconfig["port"] != float64(10250) || got.Kubeletconfig["clusterDomain"] != "cluster.local" {
		t.Errorf("kubeletconfig %v, want the configuration's port and clusterDomain", got.Kubeletconfig)
	}
	t.Run("debugging handlers off: 404, metrics stay", func(t *testing.T) {
		s := metricsServerDebugging(t, fakeStats{snap: testSnapshot()}, &fakeRuntime{}, false)
		for p, want := range map[string]int{"/configz": 404, "/metrics/resource": 200} {
			req := httptest.NewRequest("GET", p, nil)
			req.Header.Set("X-Test-User", "proxier")
			if p != "/configz" {
				req.Header.Set("X-Test-User", "scraper")
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != want {
				t.Errorf("%s: status %d, want %d", p, rec.Code, want)
			}
		}
	})
	t.Run("no stats source: metrics endpoints are 404", func(t *testing.T) {
		for _, p := range []string{"/metrics/resource", "/metrics/cadvisor", "/stats/summary"} {
			req := httptest.NewRequest("GET", p, nil)
			req.Header.Set("X-Test-User", "scraper")
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != 404 {
				t.Errorf("%s: status %d, want 404", p, rec.Code)
			}
		}
	})
}
