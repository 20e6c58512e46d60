// Package podsync is one sync of one pod: it reads the desired pod and the runtime's view,
// asks plan what to do, does it through the runtime (volumes and cgroups first, lifecycle hooks
// around starts and stops), and reports the resulting status. The pod workers call it.
package podsync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/podworkers"
	"github.com/kubenode/kubenode/kubelet/internal/probe"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
	"github.com/kubenode/kubenode/kubelet/internal/status"
)

// Pods is the desired set of pods.
type Pods interface {
	// Get returns the pod to run and the API object that represents it (for a static pod, its
	// mirror pod; nil while there is none).
	Get(uid types.UID) (pod *v1.Pod, apiPod *v1.Pod, ok bool)
}

// Runtime is the part of the CRI adapter a sync uses.
type Runtime interface {
	PodState(ctx context.Context, uid types.UID) (*runtime.PodState, error)
	RunSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) (string, []string, error)
	CreateContainer(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig, sb *runtimeapi.PodSandboxConfig) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, grace int64) error
	RemoveContainer(ctx context.Context, id string) error
	StopSandbox(ctx context.Context, id string) error
	RemoveSandbox(ctx context.Context, id string) error
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, error)
}

// Images makes images present.
type Images interface {
	// EnsureImageNotify calls pulling (when not nil) just before it pulls; an image already
	// present is not pulled.
	EnsureImageNotify(ctx context.Context, pod *v1.Pod, c *v1.Container, sandbox *runtimeapi.PodSandboxConfig, pulling func()) (string, error)
}

// Volumes sets up and tears down pod volumes.
type Volumes interface {
	Setup(ctx context.Context, pod *v1.Pod) (map[string]string, error)
	Teardown(uid types.UID) error
}

// Cgroups manages pod-level cgroups.
type Cgroups interface {
	EnsurePod(pod *v1.Pod) (parent string, err error)
	RemovePod(uid types.UID) error
}

// PodCache holds the runtime state the PLEG and the syncs observed, with when they did.
type PodCache interface {
	// Get returns the pod's state (nil: nothing in the runtime) if observed at or after
	// notBefore; ok is false when no observation is that recent.
	Get(uid types.UID, notBefore time.Time) (st *runtime.PodState, ok bool)
	// Set records a state observed from at on.
	Set(uid types.UID, st *runtime.PodState, at time.Time)
}

// Admitter decides whether a new pod may run here.
type Admitter interface {
	Admit(pod *v1.Pod) *status.Rejection
}

// Statuses receives pod statuses.
type Statuses interface {
	Set(uid types.UID, apiPod *v1.Pod, st v1.PodStatus)
	Forget(uid types.UID)
}

// PodDeleter removes a pod object once it is fully stopped.
type PodDeleter interface {
	DeletePod(ctx context.Context, namespace, name string, uid types.UID) error
}

// Services lists the services whose variables containers get: the pod's namespace's and
// default/kubernetes.
type Services interface {
	ForPod(namespace string) []*v1.Service
}

// Probes runs container probes and reports their results.
type Probes interface {
	Sync(ctx context.Context, uid types.UID, targets []probe.Target)
	RemovePod(uid types.UID)
	Ready(containerID string) (ready, probed bool)
	Started(containerID string) bool
	LivenessFailed(containerID string) bool
}

// Node holds the node facts a sync needs.
type Node struct {
	Name        string
	HostIPs     []string
	Allocatable v1.ResourceList
	Facts       runtime.NodeFacts
	RuntimeName string
	Backoff     plan.BackoffConfig
}

// Deps are the syncer's collaborators.
type Deps struct {
	Pods     Pods
	Runtime  Runtime
	Cache    PodCache // optional: without it every sync lists the pod in the runtime
	Images   Images
	Objects  runtime.Objects
	Volumes  Volumes
	Cgroups  Cgroups  // optional
	Services Services // optional: no service variables without it
	Probes   Probes   // optional: no probes without it
	Admit    Admitter
	Status   Statuses
	Deleter  PodDeleter
	Recorder record.EventRecorder
	Node     Node
	Now      func() time.Time
	Log      *zap.Logger

	// RuntimeClasses resolves spec.runtimeClassName (optional: without it such a pod fails to
	// start with a clear event; pods without one run with the runtime's default handler).
	RuntimeClasses runtime.RuntimeClassGetter
	// StartSlots caps the pod-starting runtime calls in flight (optional: no cap).
	StartSlots StartSlots
	// AllocationDir keeps each pod's accepted and applied resources across restarts (in-place
	// resize); "" keeps them in memory only.
	AllocationDir string
}

// StartSlots hands out slots for RunPodSandbox and for CreateContainer+StartContainer, lowest
// ticket first (startqueue.Queue). A sync takes one ticket and uses it for all its calls, so a
// pod that asked earlier goes on before later pods' sandboxes.
type StartSlots interface {
	Ticket() uint64
	Acquire(ctx context.Context, ticket uint64) (release func(), err error)
}

// Syncer implements podworkers.Syncer.
type Syncer struct {
	d Deps

	mu       sync.Mutex
	backoff  map[types.UID]map[string]plan.BackoffEntry
	errs     map[types.UID]map[string]plan.Waiting // start errors shown until a start succeeds
	admitted map[types.UID]bool
	rejected map[types.UID]*status.Rejection
	// acted is when the pod's last runtime action returned: a sync never plans from a state
	// observed before it.
	acted map[types.UID]time.Time
	// mountRetry is the next retry delay after a failed volume setup.
	mountRetry map[types.UID]time.Duration

	allocs *allocations
	// resizeSeen is the last resize outcome and message per pod (events on change only).
	resizeSeen map[types.UID]string
	// resizeErr is why the pod's last resize failed to apply.
	resizeErr map[types.UID]string
}

var _ podworkers.Syncer = (*Syncer)(nil)

// New returns a syncer.
func New(d Deps) (*Syncer, error) {
	switch {
	case d.Pods == nil:
		return nil, errors.New("podsync: Pods is required")
	case d.Runtime == nil:
		return nil, errors.New("podsync: Runtime is required")
	case d.Images == nil:
		return nil, errors.New("podsync: Images is required")
	case d.Volumes == nil:
		return nil, errors.New("podsync: Volumes is required")
	case d.Status == nil:
		return nil, errors.New("podsync: Status is required")
	case d.Log == nil:
		return nil, errors.New("podsync: Log is required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Recorder == nil {
		d.Recorder = &record.FakeRecorder{}
	}
	return &Syncer{d: d, backoff: map[types.UID]map[string]plan.BackoffEntry{}, errs: map[types.UID]map[string]plan.Waiting{}, admitted: map[types.UID]bool{}, rejected: map[types.UID]*status.Rejection{}, acted: map[types.UID]time.Time{}, mountRetry: map[types.UID]time.Duration{},
		allocs: newAllocations(d.AllocationDir), resizeSeen: map[types.UID]string{}, resizeErr: map[types.UID]string{}}, nil
}

// MarkAdmitted records pods that were already running when the kubelet started, so a restart
// never rejects a running pod.
func (s *Syncer) MarkAdmitted(uid types.UID) {
	s.mu.Lock()
	s.admitted[uid] = true
	s.mu.Unlock()
}

// Admitted reports whether a pod was admitted (for the admitter's own accounting).
func (s *Syncer) Admitted(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admitted[uid]
}

func (s *Syncer) log(pod *v1.Pod) *zap.Logger {
	return s.d.Log.With(zap.String("pod", pod.Namespace+"/"+pod.Name), zap.String("podUID", string(pod.UID)))
}

// Sync runs one sync of a pod.
func (s *Syncer) Sync(ctx context.Context, uid types.UID) (podworkers.Result, error) {
	pod, apiPod, ok := s.d.Pods.Get(uid)
	rs, err := s.podState(ctx, uid)
	if err != nil {
		return podworkers.Result{}, err
	}
	if !ok {
		return s.cleanupOrphan(ctx, uid, rs)
	}
	log := s.log(pod)
	ref := pod
	if apiPod != nil {
		ref = apiPod
	}

	// Admission, once per pod.
	s.mu.Lock()
	rej := s.rejected[uid]
	admitted := s.admitted[uid]
	s.mu.Unlock()
	if !admitted && rej == nil && (rs == nil || len(rs.Observed.Sandboxes) == 0) && !terminal(apiPod) && pod.DeletionTimestamp == nil && s.d.Admit != nil {
		rej = s.d.Admit.Admit(pod)
		s.mu.Lock()
		if rej != nil {
			s.rejected[uid] = rej
		} else {
			s.admitted[uid] = true
		}
		s.mu.Unlock()
		if rej != nil {
			log.Info("pod rejected", zap.String("reason", rej.Reason), zap.String("message", rej.Message))
			s.d.Recorder.Event(ref, v1.EventTypeWarning, rej.Reason, rej.Message)
		}
	} else if !admitted && rej == nil {
		s.MarkAdmitted(uid)
	}
	if rej != nil {
		st := status.Build(status.Input{Pod: withStatus(pod, apiPod), Rejected: rej, HostIPs: s.d.Node.HostIPs, Now: s.d.Now()})
		s.d.Status.Set(uid, apiPod, st)
		return s.finishIfGone(ctx, pod, apiPod, rs, true)
	}

	terminate := pod.DeletionTimestamp != nil || terminal(apiPod)
	var vols *pendingVolumes
	cgroupParent := ""
	// The pod runs with its allocated resources; the spec's only once a resize is accepted.
	allocPod := pod
	var rz *resizeState
	if !terminate {
		rz, err = s.allocate(pod, ref, log)
		if err != nil {
			return podworkers.Result{}, fmt.Errorf("pod allocation: %w", err)
		}
		allocPod = plan.WithResources(pod, rz.alloc.Allocated)
	}
	if !terminate {
		if hasReadySandbox(rs) {
			vols = s.setupVolumes(ctx, pod)
			if _, err := vols.wait(); err != nil {
				return s.mountFailed(log, ref, pod, apiPod, rs, err), nil
			}
		} else {
			// Only containers need the volumes: set them up (TokenRequest, ConfigMaps) while
			// the runtime makes the sandbox, the longest step of a pod start. The executor
			// waits for them before anything but the sandbox.
			vols = s.setupVolumesAsync(ctx, pod)
			defer vols.wait() // the sync never returns while its setup still runs
		}
		if s.d.Cgroups != nil {
			// The pod cgroup holds what its containers were given; a resize changes it in step.
			cgroupParent, err = s.d.Cgroups.EnsurePod(actualPod(allocPod, rs, rz.alloc))
			if err != nil {
				return podworkers.Result{}, fmt.Errorf("pod cgroup: %w", err)
			}
		}
	}

	s.mu.Lock()
	bo := s.backoff[uid]
	s.mu.Unlock()
	obs := plan.Observed{}
	if rs != nil {
		obs = rs.Observed
	}
	liveness, startup := s.probeState(obs)
	res := plan.Compute(plan.Input{Pod: allocPod, Observed: obs, Backoff: bo, Terminate: terminate, LivenessFailed: liveness, StartupPending: startup, Now: s.d.Now(), Config: s.d.Node.Backoff})
	s.mu.Lock()
	s.backoff[uid] = res.Backoff
	s.mu.Unlock()
	if len(res.Actions) > 0 {
		log.Debug("sync", zap.Stringers("actions", res.Actions))
	}

	ex := executor{s: s, pod: allocPod, ref: ref, rs: rs, vols: vols, cgroupParent: cgroupParent, log: log}
	rs2 := rs
	var execErr error
	if len(res.Actions) > 0 {
		execErr = ex.run(ctx, res.Actions)
		s.markActed(uid)
		// Report what the runtime has now; the next sync starts from this listing too.
		if st, err := s.listPod(ctx, uid); err == nil {
			rs2 = st
		}
	} else if rz != nil && hasReadySandbox(rs) {
		// A steady pod: apply an accepted resize to its running containers.
		if cur, ok, _ := s.allocs.get(uid); ok {
			steps := plan.Resize(plan.ResizeInput{Pod: allocPod, Observed: rs.Observed, Allocated: cur.Allocated, Actual: cur.Actual})
			if len(steps) > 0 {
				log.Info("resizing", zap.Any("steps", steps))
				err := ex.runResize(ctx, steps, actualPod(allocPod, rs, cur))
				s.markActed(uid)
				s.mu.Lock()
				prevErr := s.resizeErr[uid]
				if err != nil {
					s.resizeErr[uid] = err.Error()
				} else {
					delete(s.resizeErr, uid)
				}
				s.mu.Unlock()
				if err != nil {
					log.Warn("resize failed; will retry", zap.Error(err))
					if err.Error() != prevErr {
						// Retried every few seconds: announce each new error once.
						ex.event(v1.EventTypeWarning, "ResizeError", err.Error())
					}
					ex.retry = true
				}
				if st, err := s.listPod(ctx, uid); err == nil {
					rs2 = st
				}
			}
		}
	}
	if execErr == nil && vols != nil {
		if _, err := vols.wait(); err != nil {
			// Nothing past the sandbox ran: as if this sync had not planned, back-off included.
			s.mu.Lock()
			s.backoff[uid] = bo
			s.mu.Unlock()
			return s.mountFailed(log, ref, pod, apiPod, rs2, err), nil
		}
	}
	s.syncProbes(ctx, pod, rs2, terminate)
	var rzStatus *status.Resize
	if rz != nil {
		s.pruneActual(uid, rs2)
		rzStatus = s.resizeStatus(uid, allocPod, rs2, rz)
	}
	s.report(uid, pod, apiPod, rs2, res, ex.waiting, rzStatus)
	if execErr != nil {
		return podworkers.Result{}, execErr
	}
	if terminate && res.Done {
		return s.finishIfGone(ctx, pod, apiPod, rs2, false)
	}
	out := podworkers.Result{RequeueAfter: res.RequeueAfter}
	if ex.retry && (out.RequeueAfter == 0 || out.RequeueAfter > 2*time.Second) {
		out.RequeueAfter = 2 * time.Second
	}
	if rz != nil && rz.pending == plan.ResizeDeferred && (out.RequeueAfter == 0 || out.RequeueAfter > DeferredResizeRetry) {
		out.RequeueAfter = DeferredResizeRetry
	}
	if len(res.Actions) > 0 && out.RequeueAfter == 0 {
		// Check soon what the actions led to; the PLEG would tell too, within a second.
		out.RequeueAfter = time.Second
	}
	return out, nil
}

func terminal(apiPod *v1.Pod) bool {
	return apiPod != nil && (apiPod.Status.Phase == v1.PodSucceeded || apiPod.Status.Phase == v1.PodFailed)
}

// withStatus returns pod with the API's status (a static pod's status lives on its mirror).
func withStatus(pod, apiPod *v1.Pod) *v1.Pod {
	if apiPod == nil || apiPod == pod {
		return pod
	}
	p := pod.DeepCopy()
	p.Status = apiPod.Status
	return p
}

func (s *Syncer) report(uid types.UID, pod, apiPod *v1.Pod, rs *runtime.PodState, res plan.Result, startErrs map[string]plan.Waiting, rz *status.Resize) {
	s.mu.Lock()
	errs := s.errs[uid]
	if errs == nil {
		errs = map[string]plan.Waiting{}
		s.errs[uid] = errs
	}
	for k, v := range startErrs {
		if v.Reason == "" {
			delete(errs, k)
		} else {
			errs[k] = v
		}
	}
	waiting := map[string]plan.Waiting{}
	for k, v := range res.Waiting {
		waiting[k] = v
	}
	for k, v := range errs {
		if w, ok := waiting[k]; !ok || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
			waiting[k] = v
		}
	}
	s.mu.Unlock()
	in := status.Input{
		Pod: withStatus(pod, apiPod), Runtime: rs, Waiting: waiting, Done: res.Done, InitFailed: res.InitFailed,
		HostIPs: s.d.Node.HostIPs, RuntimeName: s.d.Node.RuntimeName, Now: s.d.Now(), Resize: rz,
	}
	if s.d.Probes != nil {
		in.Probes = s.d.Probes
	}
	st := status.Build(in)
	s.d.Status.Set(uid, apiPod, st)
}

// finishIfGone cleans up a stopped pod: removes its containers, sandboxes, volumes and cgroup,
// deletes the API object of a deleted pod, and ends the worker once the pod is gone.
func (s *Syncer) finishIfGone(ctx context.Context, pod, apiPod *v1.Pod, rs *runtime.PodState, rejected bool) (podworkers.Result, error) {
	if rs != nil && anyRunning(rs) {
		return podworkers.Result{RequeueAfter: time.Second}, nil
	}
	if pod.DeletionTimestamp == nil {
		// A finished pod stays (with its exited containers for logs) until it is deleted.
		if !rejected && s.d.Cgroups != nil {
			_ = s.d.Cgroups.RemovePod(pod.UID)
		}
		return podworkers.Result{}, nil
	}
	err := s.removeAll(ctx, pod.UID, rs)
	s.markActed(pod.UID)
	if err != nil {
		return podworkers.Result{}, err
	}
	if apiPod != nil && apiPod.UID == pod.UID && s.d.Deleter != nil {
		// The final delete: the pod's containers are gone, so the API may forget it.
		if err := s.d.Deleter.DeletePod(ctx, pod.Namespace, pod.Name, pod.UID); err != nil {
			return podworkers.Result{}, fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return podworkers.Result{RequeueAfter: time.Second}, nil
}

func anyRunning(rs *runtime.PodState) bool {
	for _, c := range rs.Observed.Containers {
		if c.State != plan.StateExited {
			return true
		}
	}
	for _, sb := range rs.Observed.Sandboxes {
		if sb.Ready {
			return true
		}
	}
	return false
}

// removeAll deletes a stopped pod's runtime objects, volumes and cgroup.
func (s *Syncer) removeAll(ctx context.Context, uid types.UID, rs *runtime.PodState) error {
	if rs != nil {
		for _, sb := range rs.Observed.Sandboxes {
			if err := s.d.Runtime.RemoveSandbox(ctx, sb.ID); err != nil {
				return err
			}
		}
	}
	if err := s.d.Volumes.Teardown(uid); err != nil {
		return err
	}
	if s.d.Cgroups != nil {
		if err := s.d.Cgroups.RemovePod(uid); err != nil {
			return err
		}
	}
	return nil
}

// cleanupOrphan handles a pod that is no longer desired (deleted from the API, static manifest
// removed): stop what runs with the grace recorded on its containers, remove it all, forget it.
func (s *Syncer) cleanupOrphan(ctx context.Context, uid types.UID, rs *runtime.PodState) (podworkers.Result, error) {
	if rs != nil && anyRunning(rs) {
		s.d.Log.Info("stopping pod that is no longer assigned here", zap.String("pod", rs.Namespace+"/"+rs.Name), zap.String("podUID", string(uid)))
		ex := executor{s: s, pod: &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: rs.Name, Namespace: rs.Namespace, UID: uid}}, rs: rs, log: s.d.Log}
		err := ex.killPod(ctx, -1)
		s.markActed(uid)
		if err != nil {
			return podworkers.Result{}, err
		}
		rs, err = s.listPod(ctx, uid)
		if err != nil {
			return podworkers.Result{}, err
		}
	}
	err := s.removeAll(ctx, uid, rs)
	s.markActed(uid)
	if err != nil {
		return podworkers.Result{}, err
	}
	if s.d.Cache != nil {
		// Everything is removed: a pod of this UID that comes back starts from nothing.
		s.d.Cache.Set(uid, nil, s.d.Now())
	}
	s.d.Status.Forget(uid)
	if s.d.Probes != nil {
		s.d.Probes.RemovePod(uid)
	}
	s.mu.Lock()
	delete(s.backoff, uid)
	delete(s.errs, uid)
	delete(s.admitted, uid)
	delete(s.rejected, uid)
	delete(s.acted, uid)
	delete(s.mountRetry, uid)
	delete(s.resizeSeen, uid)
	delete(s.resizeErr, uid)
	s.mu.Unlock()
	if err := s.allocs.remove(uid); err != nil {
		s.d.Log.Warn("forget pod allocation", zap.String("podUID", string(uid)), zap.Error(err))
	}
	return podworkers.Result{Finished: true}, nil
}

// pendingVolumes is a volume setup that may still run.
type pendingVolumes struct {
	done  chan struct{}
	paths map[string]string
	err   error
}

// wait returns the setup's host paths by volume name once it finished.
func (p *pendingVolumes) wait() (map[string]string, error) {
	<-p.done
	return p.paths, p.err
}

func (s *Syncer) setupVolumes(ctx context.Context, pod *v1.Pod) *pendingVolumes {
	p := &pendingVolumes{done: make(chan struct{})}
	p.paths, p.err = s.d.Volumes.Setup(ctx, pod)
	close(p.done)
	s.volumesDone(pod.UID, p.err)
	return p
}

func (s *Syncer) setupVolumesAsync(ctx context.Context, pod *v1.Pod) *pendingVolumes {
	p := &pendingVolumes{done: make(chan struct{})}
	go func() {
		p.paths, p.err = s.d.Volumes.Setup(ctx, pod)
		s.volumesDone(pod.UID, p.err)
		close(p.done)
	}()
	return p
}

func (s *Syncer) volumesDone(uid types.UID, err error) {
	if err == nil {
		s.mu.Lock()
		delete(s.mountRetry, uid)
		s.mu.Unlock()
	}
}

// mountFailed reports a failed volume setup and asks for a retry.
func (s *Syncer) mountFailed(log *zap.Logger, ref, pod, apiPod *v1.Pod, rs *runtime.PodState, err error) podworkers.Result {
	log.Warn("volume setup failed", zap.Error(err))
	s.d.Recorder.Event(ref, v1.EventTypeWarning, "FailedMount", err.Error())
	s.report(pod.UID, pod, apiPod, rs, plan.Result{}, nil, nil)
	return podworkers.Result{RequeueAfter: s.nextMountRetry(pod.UID)}
}

func hasReadySandbox(rs *runtime.PodState) bool {
	if rs == nil {
		return false
	}
	for _, sb := range rs.Observed.Sandboxes {
		if sb.Ready {
			return true
		}
	}
	return false
}

// MaxCacheAge is the oldest cached runtime state a sync plans from. The relist refreshes every
// pod each second; an older entry means relisting stalls, and the sync lists the pod itself.
const MaxCacheAge = 5 * time.Second

// podState returns the pod's runtime state from the cache when it was observed after the pod's
// last action (and within MaxCacheAge), and lists the runtime otherwise.
func (s *Syncer) podState(ctx context.Context, uid types.UID) (*runtime.PodState, error) {
	if s.d.Cache != nil {
		s.mu.Lock()
		since := s.acted[uid]
		s.mu.Unlock()
		if oldest := s.d.Now().Add(-MaxCacheAge); since.Before(oldest) {
			since = oldest
		}
		if st, ok := s.d.Cache.Get(uid, since); ok {
			return st, nil
		}
	}
	return s.listPod(ctx, uid)
}

// listPod lists the pod in the runtime and keeps the result in the cache.
func (s *Syncer) listPod(ctx context.Context, uid types.UID) (*runtime.PodState, error) {
	at := s.d.Now()
	st, err := s.d.Runtime.PodState(ctx, uid)
	if err != nil {
		return nil, err
	}
	if s.d.Cache != nil {
		s.d.Cache.Set(uid, st, at)
	}
	return st, nil
}

// markActed records that the pod's runtime state may have changed just now.
func (s *Syncer) markActed(uid types.UID) {
	now := s.d.Now()
	s.mu.Lock()
	s.acted[uid] = now
	s.mu.Unlock()
}

// nextMountRetry returns how long to wait before retrying a failed volume setup: soon at first,
// as the usual cause right after a pod is bound is the API server's node authorizer not having
// seen the binding yet (TokenRequest forbidden for a moment), then backing off to 2s.
func (s *Syncer) nextMountRetry(uid types.UID) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.mountRetry[uid]
	if d == 0 {
		d = 200 * time.Millisecond
	}
	s.mountRetry[uid] = min(2*d, 2*time.Second)
	return d
}

// probeState returns the containers the probes want restarted and those not started yet.
func (s *Syncer) probeState(obs plan.Observed) (liveness, startup map[string]bool) {
	if s.d.Probes == nil {
		return nil, nil
	}
	liveness, startup = map[string]bool{}, map[string]bool{}
	for _, c := range obs.Containers {
		if c.State != plan.StateRunning {
			continue
		}
		if s.d.Probes.LivenessFailed(c.ID) {
			liveness[c.ID] = true
		}
		if !s.d.Probes.Started(c.ID) {
			startup[c.ID] = true
		}
	}
	return liveness, startup
}

// syncProbes points the probe workers at the pod's running containers.
func (s *Syncer) syncProbes(ctx context.Context, pod *v1.Pod, rs *runtime.PodState, terminate bool) {
	if s.d.Probes == nil {
		return
	}
	var targets []probe.Target
	if rs != nil && !terminate {
		ip := ""
		if len(rs.IPs) > 0 {
			ip = rs.IPs[0]
		}
		if pod.Spec.HostNetwork && len(s.d.Node.HostIPs) > 0 {
			ip = s.d.Node.HostIPs[0]
		}
		for _, c := range rs.Observed.Containers {
			if c.State != plan.StateRunning {
				continue
			}
			spec, ok := runtime.FindContainer(pod, c.Name)
			if !ok || spec.Name == "" {
				continue
			}
			targets = append(targets, probe.Target{PodUID: pod.UID, ContainerID: c.ID, Container: spec, PodIP: ip})
		}
	}
	s.d.Probes.Sync(ctx, pod.UID, targets)
}
