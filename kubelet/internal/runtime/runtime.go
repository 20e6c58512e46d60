package runtime

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
)

// PodState is what the runtime holds for one pod.
type PodState struct {
	UID       types.UID
	Name      string
	Namespace string
	Observed  plan.Observed
	// IPs of the newest ready sandbox.
	IPs []string
	// Containers carry what the status shows besides plan's view, keyed by container ID.
	Details map[string]ContainerDetail
}

// ContainerDetail is the status-only part of a container.
type ContainerDetail struct {
	Image    string
	ImageRef string
	Message  string
	Init     string // "", "init" or "sidecar"
	PreStop  string // the preStop handler as JSON, when the pod had one
	Grace    int64  // the pod's termination grace when the container was made; -1 unknown
}

// Runtime talks CRI. Every call has the client's own timeout, so a hung runtime cannot stall
// a caller forever.
type Runtime struct {
	rs      internalapi.RuntimeService
	is      internalapi.ImageManagerService
	log     *zap.Logger
	timeout time.Duration

	mu sync.Mutex
	// Exited containers never change, and a running one changes only by exiting: cache their
	// statuses by ID and state so a relist costs one List call per kind in the steady state.
	statusCache map[string]*runtimeapi.ContainerStatus
	ipCache     map[string][]string
}

// New returns a Runtime over CRI services. timeout bounds each call.
func New(rs internalapi.RuntimeService, is internalapi.ImageManagerService, timeout time.Duration, log *zap.Logger) *Runtime {
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	return &Runtime{rs: rs, is: is, log: log, timeout: timeout, statusCache: map[string]*runtimeapi.ContainerStatus{}, ipCache: map[string][]string{}}
}

// Images returns the image service.
func (r *Runtime) Images() internalapi.ImageManagerService { return r.is }

func (r *Runtime) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// Version returns the runtime's name and version ("containerd", "1.6.20").
func (r *Runtime) Version(ctx context.Context) (string, string, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	v, err := r.rs.Version(ctx, "v1")
	if err != nil {
		return "", "", fmt.Errorf("CRI Version: %w", err)
	}
	return v.RuntimeName, v.RuntimeVersion, nil
}

// Ready reports whether the runtime and its network are ready.
func (r *Runtime) Ready(ctx context.Context) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	st, err := r.rs.Status(ctx, false)
	if err != nil {
		return fmt.Errorf("CRI Status: %w", err)
	}
	for _, c := range st.GetStatus().GetConditions() {
		if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && !c.Status {
			return fmt.Errorf("container runtime condition %s is false: %s: %s", c.Type, c.Reason, c.Message)
		}
	}
	return nil
}

// Relist reads every sandbox and container the kubelet made, grouped by pod UID.
func (r *Runtime) Relist(ctx context.Context) (map[types.UID]*PodState, error) {
	return r.list(ctx, nil, nil, true)
}

// PodState reads one pod's sandboxes and containers (nil when the runtime has none).
func (r *Runtime) PodState(ctx context.Context, uid types.UID) (*PodState, error) {
	sel := map[string]string{LabelPodUID: string(uid)}
	pods, err := r.list(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel}, &runtimeapi.ContainerFilter{LabelSelector: sel}, false)
	if err != nil {
		return nil, err
	}
	return pods[uid], nil
}

func (r *Runtime) list(ctx context.Context, sbFilter *runtimeapi.PodSandboxFilter, cFilter *runtimeapi.ContainerFilter, all bool) (map[types.UID]*PodState, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	sbs, err := r.rs.ListPodSandbox(ctx, sbFilter)
	if err != nil {
		return nil, fmt.Errorf("CRI ListPodSandbox: %w", err)
	}
	cs, err := r.rs.ListContainers(ctx, cFilter)
	if err != nil {
		return nil, fmt.Errorf("CRI ListContainers: %w", err)
	}
	pods := map[types.UID]*PodState{}
	sbUID := map[string]types.UID{}
	for _, s := range sbs {
		uid := types.UID(s.Labels[LabelPodUID])
		if uid == "" {
			continue // not ours
		}
		ps := pods[uid]
		if ps == nil {
			ps = &PodState{UID: uid, Name: s.Metadata.GetName(), Namespace: s.Metadata.GetNamespace(), Details: map[string]ContainerDetail{}}
			pods[uid] = ps
		}
		sb := plan.Sandbox{
			ID:          s.Id,
			Ready:       s.State == runtimeapi.PodSandboxState_SANDBOX_READY,
			Attempt:     s.Metadata.GetAttempt(),
			CreatedAt:   time.Unix(0, s.CreatedAt),
			HostNetwork: s.Annotations[AnnotationHostNetwork] == "true",
		}
		sbUID[s.Id] = uid
		if sb.Ready {
			sb.IP = r.sandboxIPs(ctx, s.Id)[0]
		}
		ps.Observed.Sandboxes = append(ps.Observed.Sandboxes, sb)
	}
	seen := map[string]bool{}
	for _, c := range cs {
		uid, ok := sbUID[c.PodSandboxId]
		if !ok {
			uid = types.UID(c.Labels[LabelPodUID])
		}
		if uid == "" {
			continue
		}
		ps := pods[uid]
		if ps == nil {
			ps = &PodState{UID: uid, Name: c.Labels[LabelPodName], Namespace: c.Labels[LabelPodNamespace], Details: map[string]ContainerDetail{}}
			pods[uid] = ps
		}
		seen[c.Id] = true
		st := r.containerStatus(ctx, c)
		oc := plan.Container{
			ID:        c.Id,
			SandboxID: c.PodSandboxId,
			Name:      c.Metadata.GetName(),
			State:     state(c.State),
			Attempt:   c.Metadata.GetAttempt(),
			Hash:      c.Annotations[AnnotationHash],
			CreatedAt: time.Unix(0, c.CreatedAt),
		}
		d := ContainerDetail{Image: c.Image.GetUserSpecifiedImage(), ImageRef: c.ImageRef, Init: c.Annotations[AnnotationInit], PreStop: c.Annotations[AnnotationPreStop], Grace: -1}
		if g, err := strconv.ParseInt(c.Annotations[AnnotationGrace], 10, 64); err == nil {
			d.Grace = g
		}
		if d.Image == "" {
			d.Image = c.Image.GetImage()
		}
		if st != nil {
			oc.ExitCode = st.ExitCode
			oc.Reason = st.Reason
			if st.StartedAt > 0 {
				oc.StartedAt = time.Unix(0, st.StartedAt)
			}
			if st.FinishedAt > 0 {
				oc.FinishedAt = time.Unix(0, st.FinishedAt)
			}
			if st.ImageRef != "" {
				d.ImageRef = st.ImageRef
			}
			d.Message = st.Message
		}
		ps.Observed.Containers = append(ps.Observed.Containers, oc)
		ps.Details[c.Id] = d
	}
	for _, ps := range pods {
		sort.Slice(ps.Observed.Sandboxes, func(i, j int) bool {
			return ps.Observed.Sandboxes[i].Attempt > ps.Observed.Sandboxes[j].Attempt
		})
		for _, s := range ps.Observed.Sandboxes {
			if s.Ready {
				ps.IPs = r.sandboxIPs(ctx, s.ID)
				break
			}
		}
	}
	if all {
		r.forget(seen, sbUID)
	}
	return pods, nil
}

func state(s runtimeapi.ContainerState) plan.ContainerState {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return plan.StateCreated
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return plan.StateRunning
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return plan.StateExited
	}
	return plan.StateUnknown
}

// containerStatus returns the cached status when the container is still in the cached state.
func (r *Runtime) containerStatus(ctx context.Context, c *runtimeapi.Container) *runtimeapi.ContainerStatus {
	r.mu.Lock()
	st, ok := r.statusCache[c.Id]
	r.mu.Unlock()
	if ok && st.State == c.State {
		return st
	}
	resp, err := r.rs.ContainerStatus(ctx, c.Id, false)
	if err != nil || resp.GetStatus() == nil {
		r.log.Debug("container status", zap.String("container", c.Id), zap.Error(err))
		return nil
	}
	// Read once per exit: the cached exited status keeps the message.
	AddTerminationMessage(resp.Status)
	r.mu.Lock()
	r.statusCache[c.Id] = resp.Status
	r.mu.Unlock()
	return resp.Status
}

// sandboxIPs returns the sandbox's IPs (never an empty slice: "" when it has none).
func (r *Runtime) sandboxIPs(ctx context.Context, id string) []string {
	r.mu.Lock()
	ips, ok := r.ipCache[id]
	r.mu.Unlock()
	if ok {
		return ips
	}
	resp, err := r.rs.PodSandboxStatus(ctx, id, false)
	if err != nil {
		return []string{""}
	}
	n := resp.GetStatus().GetNetwork()
	ips = []string{n.GetIp()}
	for _, a := range n.GetAdditionalIps() {
		ips = append(ips, a.GetIp())
	}
	r.mu.Lock()
	r.ipCache[id] = ips
	r.mu.Unlock()
	return ips
}

func (r *Runtime) forget(containers map[string]bool, sandboxes map[string]types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.statusCache {
		if !containers[id] {
			delete(r.statusCache, id)
		}
	}
	for id := range r.ipCache {
		if _, ok := sandboxes[id]; !ok {
			delete(r.ipCache, id)
		}
	}
}

// RunSandbox runs a sandbox and returns its ID and IPs.
func (r *Runtime) RunSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) (string, []string, error) {
	// RunPodSandbox sets up networking; the client gives it twice the usual timeout.
	ctx2, cancel := context.WithTimeout(ctx, 2*r.timeout)
	defer cancel()
	id, err := r.rs.RunPodSandbox(ctx2, cfg, "")
	if err != nil {
		return "", nil, fmt.Errorf("CRI RunPodSandbox: %w", err)
	}
	ctx3, cancel3 := r.ctx(ctx)
	defer cancel3()
	return id, r.sandboxIPs(ctx3, id), nil
}

// CreateContainer creates a container in a sandbox.
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig, sb *runtimeapi.PodSandboxConfig) (string, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	id, err := r.rs.CreateContainer(ctx, sandboxID, cfg, sb)
	if err != nil {
		return "", fmt.Errorf("CRI CreateContainer %s: %w", cfg.Metadata.GetName(), err)
	}
	return id, nil
}

// StartContainer starts a created container.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if err := r.rs.StartContainer(ctx, id); err != nil {
		return fmt.Errorf("CRI StartContainer %s: %w", id, err)
	}
	return nil
}

// StopContainer stops a container, giving it grace seconds after SIGTERM.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace int64) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout+time.Duration(grace)*time.Second)
	defer cancel()
	if err := r.rs.StopContainer(ctx, id, grace); err != nil {
		return fmt.Errorf("CRI StopContainer %s: %w", id, err)
	}
	return nil
}

// RemoveContainer deletes a container.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if err := r.rs.RemoveContainer(ctx, id); err != nil {
		return fmt.Errorf("CRI RemoveContainer %s: %w", id, err)
	}
	return nil
}

// StopSandbox stops a sandbox (and whatever still runs in it) and tears its network down.
func (r *Runtime) StopSandbox(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if err := r.rs.StopPodSandbox(ctx, id); err != nil {
		return fmt.Errorf("CRI StopPodSandbox %s: %w", id, err)
	}
	return nil
}

// RemoveSandbox deletes a sandbox and its containers.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if err := r.rs.RemovePodSandbox(ctx, id); err != nil {
		return fmt.Errorf("CRI RemovePodSandbox %s: %w", id, err)
	}
	return nil
}

// ExecSync runs a command in a container (hooks, exec probes).
func (r *Runtime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, error) {
	return r.rs.ExecSync(ctx, id, cmd, timeout)
}

// UpdateContainerResources changes a running container's cgroup limits in place (an in-place
// pod resize). The runtime applies them synchronously; a memory limit below the container's
// current usage fails in the kernel and comes back as an error.
func (r *Runtime) UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if err := r.rs.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{Linux: res}); err != nil {
		return fmt.Errorf("CRI UpdateContainerResources %s: %w", id, err)
	}
	return nil
}
