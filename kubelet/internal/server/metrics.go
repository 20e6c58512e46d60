package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/kubenode/kubenode/kubelet/internal/stats"
)

// The /metrics/resource families: upstream's names, help, labels and units (seconds, bytes),
// which metrics-server decodes for `kubectl top`.
var (
	containerLabels = []string{"container", "pod", "namespace"}
	podLabels       = []string{"pod", "namespace"}

	nodeCPUDesc       = prometheus.NewDesc("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", nil, nil)
	nodeMemoryDesc    = prometheus.NewDesc("node_memory_working_set_bytes", "Current working set of the node in bytes", nil, nil)
	nodeSwapDesc      = prometheus.NewDesc("node_swap_usage_bytes", "Current swap usage of the node in bytes. Reported only on non-windows systems", nil, nil)
	containerStart    = prometheus.NewDesc("container_start_time_seconds", "Start time of the container since unix epoch in seconds", containerLabels, nil)
	containerCPUDesc  = prometheus.NewDesc("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", containerLabels, nil)
	containerMemDesc  = prometheus.NewDesc("container_memory_working_set_bytes", "Current working set of the container in bytes", containerLabels, nil)
	containerSwapDesc = prometheus.NewDesc("container_swap_usage_bytes", "Current amount of the container swap usage in bytes. Reported only on non-windows systems", containerLabels, nil)
	podCPUDesc        = prometheus.NewDesc("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", podLabels, nil)
	podMemDesc        = prometheus.NewDesc("pod_memory_working_set_bytes", "Current working set of the pod in bytes", podLabels, nil)
	podSwapDesc       = prometheus.NewDesc("pod_swap_usage_bytes", "Current amount of the pod swap usage in bytes. Reported only on non-windows systems", podLabels, nil)
	// scrape_error is upstream's deprecated name (1.29) for resource_scrape_error; both are served.
	scrapeErrorDesc         = prometheus.NewDesc("scrape_error", "[DEPRECATED] 1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
	resourceScrapeErrorDesc = prometheus.NewDesc("resource_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

// The /metrics/cadvisor subset: cAdvisor's names and label set as the kubelet serves them.
var (
	cadvisorLabels      = []string{"container", "id", "image", "name", "namespace", "pod"}
	cadvisorCPUDesc     = prometheus.NewDesc("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", append(append([]string{}, cadvisorLabels...), "cpu"), nil)
	cadvisorMemDesc     = prometheus.NewDesc("container_memory_working_set_bytes", "Current working set in bytes.", cadvisorLabels, nil)
	cadvisorStartDesc   = prometheus.NewDesc("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", cadvisorLabels, nil)
	cadvisorScrapeError = prometheus.NewDesc("container_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

// stamped is a sample carrying the time its value was read, as upstream serves resource
// metrics: metrics-server computes CPU rates between two stamps, not two scrapes.
func stamped(t time.Time, desc *prometheus.Desc, vt prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m := prometheus.MustNewConstMetric(desc, vt, v, labels...)
	if t.IsZero() {
		return m
	}
	return prometheus.NewMetricWithTimestamp(t, m)
}

func seconds(ns uint64) float64 { return float64(ns) / float64(time.Second) }

// resourceMetrics turns a snapshot into the /metrics/resource samples (pure). A nil snapshot
// is a failed read: only the scrape error gauges, set to 1.
func resourceMetrics(snap *stats.Snapshot) []prometheus.Metric {
	failed := 0.0
	if snap == nil {
		failed = 1
	}
	out := []prometheus.Metric{
		prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, failed),
		prometheus.MustNewConstMetric(resourceScrapeErrorDesc, prometheus.GaugeValue, failed),
	}
	if snap == nil {
		return out
	}
	n := snap.Node
	if n.CPU != nil && n.CPU.UsageCoreNanoSeconds != nil {
		out = append(out, stamped(n.CPU.Time.Time, nodeCPUDesc, prometheus.CounterValue, seconds(*n.CPU.UsageCoreNanoSeconds)))
	}
	if n.Memory != nil && n.Memory.WorkingSetBytes != nil {
		out = append(out, stamped(n.Memory.Time.Time, nodeMemoryDesc, prometheus.GaugeValue, float64(*n.Memory.WorkingSetBytes)))
	}
	if n.Swap != nil && n.Swap.SwapUsageBytes != nil {
		out = append(out, stamped(n.Swap.Time.Time, nodeSwapDesc, prometheus.GaugeValue, float64(*n.Swap.SwapUsageBytes)))
	}
	for _, p := range snap.Pods {
		ns, name := p.PodRef.Namespace, p.PodRef.Name
		for _, c := range p.Containers {
			if c.StartTime.Unix() > 0 {
				out = append(out, prometheus.MustNewConstMetric(containerStart, prometheus.GaugeValue, float64(c.StartTime.UnixNano())/float64(time.Second), c.Name, name, ns))
			}
			out = append(out, usage(c.CPU, c.Memory, c.Swap, containerCPUDesc, containerMemDesc, containerSwapDesc, c.Name, name, ns)...)
		}
		out = append(out, usage(p.CPU, p.Memory, p.Swap, podCPUDesc, podMemDesc, podSwapDesc, name, ns)...)
	}
	return out
}

// usage is the CPU, memory and swap samples of one container or pod.
func usage(cpu *statsapi.CPUStats, mem *statsapi.MemoryStats, swap *statsapi.SwapStats, cpuDesc, memDesc, swapDesc *prometheus.Desc, labels ...string) []prometheus.Metric {
	var out []prometheus.Metric
	if cpu != nil && cpu.UsageCoreNanoSeconds != nil {
		out = append(out, stamped(cpu.Time.Time, cpuDesc, prometheus.CounterValue, seconds(*cpu.UsageCoreNanoSeconds), labels...))
	}
	if mem != nil && mem.WorkingSetBytes != nil {
		out = append(out, stamped(mem.Time.Time, memDesc, prometheus.GaugeValue, float64(*mem.WorkingSetBytes), labels...))
	}
	if swap != nil && swap.SwapUsageBytes != nil {
		out = append(out, stamped(swap.Time.Time, swapDesc, prometheus.GaugeValue, float64(*swap.SwapUsageBytes), labels...))
	}
	return out
}

// cadvisorMetrics turns a snapshot into the /metrics/cadvisor subset (pure): the root cgroup
// ("/", the node) and each running container, labelled as cAdvisor does (id the cgroup path,
// name the runtime's container ID). idents maps container IDs to what the runtime's status
// says of them; a container missing from it has an empty id and the snapshot's image. A nil
// snapshot is a failed read.
func cadvisorMetrics(snap *stats.Snapshot, idents map[string]runtimeIdentity) []prometheus.Metric {
	failed := 0.0
	if snap == nil {
		failed = 1
	}
	out := []prometheus.Metric{prometheus.MustNewConstMetric(cadvisorScrapeError, prometheus.GaugeValue, failed)}
	if snap == nil {
		return out
	}
	root := []string{"", "/", "", "", "", ""}
	if n := snap.Node; n.CPU != nil && n.CPU.UsageCoreNanoSeconds != nil {
		out = append(out, stamped(n.CPU.Time.Time, cadvisorCPUDesc, prometheus.CounterValue, seconds(*n.CPU.UsageCoreNanoSeconds), append(root, "total")...))
	}
	if n := snap.Node; n.Memory != nil && n.Memory.WorkingSetBytes != nil {
		out = append(out, stamped(n.Memory.Time.Time, cadvisorMemDesc, prometheus.GaugeValue, float64(*n.Memory.WorkingSetBytes), root...))
	}
	for _, c := range snap.Containers {
		ident := idents[c.ID]
		image := ident.image
		if image == "" {
			image = c.Image
		}
		labels := []string{c.Stats.Name, ident.cgroup, image, c.ID, c.Pod.Namespace, c.Pod.Name}
		if cpu := c.Stats.CPU; cpu != nil && cpu.UsageCoreNanoSeconds != nil {
			out = append(out, stamped(cpu.Time.Time, cadvisorCPUDesc, prometheus.CounterValue, seconds(*cpu.UsageCoreNanoSeconds), append(labels, "total")...))
		}
		if mem := c.Stats.Memory; mem != nil && mem.WorkingSetBytes != nil {
			out = append(out, stamped(mem.Time.Time, cadvisorMemDesc, prometheus.GaugeValue, float64(*mem.WorkingSetBytes), labels...))
		}
		if c.Stats.StartTime.Unix() > 0 {
			out = append(out, prometheus.MustNewConstMetric(cadvisorStartDesc, prometheus.GaugeValue, float64(c.Stats.StartTime.UnixNano())/float64(time.Second), labels...))
		}
	}
	return out
}

// constCollector hands a fixed set of samples to a registry built for one scrape. It describes
// nothing, so the registry accepts it unchecked.
type constCollector []prometheus.Metric

func (constCollector) Describe(chan<- *prometheus.Desc) {}

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- m
	}
}

// serveMetrics writes samples in the exposition format the client asked for. A registry per
// scrape, because the samples are read under the request's context and deadline.
func serveMetrics(w http.ResponseWriter, r *http.Request, samples []prometheus.Metric, log *zap.Logger) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(constCollector(samples)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: zap.NewStdLog(log)}).ServeHTTP(w, r)
}

// snapshot reads stats under the request's context; nil on failure, which is logged.
func (s *Server) snapshot(r *http.Request) *stats.Snapshot {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	defer cancel()
	snap, err := s.cfg.Stats.Snapshot(ctx)
	if err != nil {
		s.cfg.Log.Warn("stats for metrics", zap.String("path", r.URL.Path), zap.Error(err))
		return nil
	}
	return snap
}

func (s *Server) resourceMetrics(w http.ResponseWriter, r *http.Request) {
	serveMetrics(w, r, resourceMetrics(s.snapshot(r)), s.cfg.Log)
}

func (s *Server) cadvisorMetrics(w http.ResponseWriter, r *http.Request) {
	snap := s.snapshot(r)
	var idents map[string]runtimeIdentity
	if snap != nil {
		idents = s.idents.resolve(r.Context(), snap.Containers, s.cfg.RuntimeTimeout)
	}
	serveMetrics(w, r, cadvisorMetrics(snap, idents), s.cfg.Log)
}

// ContainerStatuser is the CRI call that tells a container's cgroup (verbose info) and its
// image by name.
type ContainerStatuser interface {
	ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error)
}

// runtimeIdentity is what cAdvisor labels a container by that only the runtime's status tells.
type runtimeIdentity struct {
	cgroup string
	// image is the image by name (containerd lists containers by image ID only).
	image string
}

// identityCache remembers each container's identity, which never changes for a container ID,
// so a scrape asks the runtime only about containers it has not seen.
type identityCache struct {
	rt  ContainerStatuser
	log *zap.Logger

	mu    sync.Mutex
	known map[string]runtimeIdentity
}

// resolve returns the identities of the containers and forgets containers that are gone.
func (c *identityCache) resolve(ctx context.Context, cs []stats.Container, timeout time.Duration) map[string]runtimeIdentity {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[string]runtimeIdentity, len(cs))
	for _, ct := range cs {
		if id, ok := c.known[ct.ID]; ok {
			next[ct.ID] = id
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := c.rt.ContainerStatus(cctx, ct.ID, true)
		cancel()
		if err != nil {
			c.log.Debug("container identity", zap.String("container", ct.ID), zap.Error(err))
			continue
		}
		id := runtimeIdentity{cgroup: cgroupFromInfo(st.GetInfo())}
		img := st.GetStatus().GetImage()
		switch {
		case img.GetUserSpecifiedImage() != "":
			id.image = img.GetUserSpecifiedImage()
		case img.GetImage() != "" && !strings.HasPrefix(img.GetImage(), "sha256:"):
			id.image = img.GetImage()
		}
		next[ct.ID] = id
	}
	c.known = next
	return next
}

// cgroupFromInfo reads the cgroup path from containerd's verbose container info (the OCI
// runtime spec's linux.cgroupsPath). "" when it is not there.
func cgroupFromInfo(info map[string]string) string {
	var v struct {
		RuntimeSpec struct {
			Linux struct {
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil {
		return ""
	}
	return v.RuntimeSpec.Linux.CgroupsPath
}
