package eviction

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/status"
)

// Observer reads the eviction signals.
type Observer interface {
	Observe(ctx context.Context) (Observations, error)
}

// Reclaimer frees disk without evicting pods (unused images).
type Reclaimer interface {
	DeleteUnused(ctx context.Context) (uint64, error)
}

// DiskUsager measures pods' local ephemeral storage (LocalDisk).
type DiskUsager interface {
	Usage(ctx context.Context, pods []*v1.Pod) (map[types.UID]DiskUsage, error)
}

// Killer stops an evicted pod through the pod workers (Evictions).
type Killer interface {
	// Evict kills the pod with the grace (seconds) and fails it with the message; disruption
	// adds the DisruptionTarget condition (node pressure), which upstream leaves off when a pod
	// only outgrew its own limits.
	Evict(pod *v1.Pod, grace int64, message string, disruption bool)
	// Forget drops what it keeps about pods that are gone.
	Forget()
}

// Config configures the manager.
type Config struct {
	Thresholds []Threshold
	// TransitionPeriod keeps a condition on after its threshold was last crossed (5m).
	TransitionPeriod time.Duration
	// Interval is the housekeeping period (10s, upstream's).
	Interval time.Duration
	// MaxPodGracePeriod caps, in seconds, the kill grace of a pod evicted for a soft threshold
	// (evictionMaxPodGracePeriod); see KillGrace.
	MaxPodGracePeriod int64
}

// Deps are the manager's collaborators.
type Deps struct {
	Observer Observer
	Stats    ContainerStats
	// ActivePods returns the admitted pods that have not finished and are not being deleted.
	ActivePods func() []*v1.Pod
	Reclaimer  Reclaimer // optional
	// LocalStorage (optional) enables local ephemeral storage eviction: emptyDir sizeLimit and
	// ephemeral-storage limits, checked on every pass.
	LocalStorage DiskUsager
	Killer       Killer
	Recorder     record.EventRecorder
	// ConditionsChanged is called (optional) when the pressure conditions change.
	ConditionsChanged func()
	Now               func() time.Time
	Log               *zap.Logger
}

// Manager runs the eviction loop.
type Manager struct {
	cfg Config
	d   Deps

	mu         sync.Mutex
	state      State
	conditions []v1.NodeConditionType
	lastWarn   time.Time // Synchronize runs on one goroutine
	// lastDiskWarn is lastWarn for local storage measurements.
	lastDiskWarn time.Time
}

// New returns a manager; Run starts the loop.
func New(cfg Config, d Deps) (*Manager, error) {
	switch {
	case d.Observer == nil:
		return nil, errors.New("eviction: Observer is required")
	case d.Stats == nil:
		return nil, errors.New("eviction: Stats is required")
	case d.ActivePods == nil:
		return nil, errors.New("eviction: ActivePods is required")
	case d.Killer == nil:
		return nil, errors.New("eviction: Killer is required")
	case d.Log == nil:
		return nil, errors.New("eviction: Log is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.TransitionPeriod < 0 {
		cfg.TransitionPeriod = 0
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Recorder == nil {
		d.Recorder = &record.FakeRecorder{}
	}
	return &Manager{cfg: cfg, d: d, state: NewState()}, nil
}

// Run synchronizes every interval until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Synchronize(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Conditions returns the pressure conditions that are on.
func (m *Manager) Conditions() []v1.NodeConditionType {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]v1.NodeConditionType(nil), m.conditions...)
}

// Admit rejects a pod the node cannot take under its current pressure.
func (m *Manager) Admit(pod *v1.Pod) *status.Rejection {
	return Admit(pod, m.Conditions())
}

// Synchronize is one pass: observe, update the conditions, evict every pod over its local
// storage limits or else, under pressure, reclaim or evict one pod. It returns the (first)
// evicted pod, if any.
func (m *Manager) Synchronize(ctx context.Context) *v1.Pod {
	m.d.Killer.Forget()
	obs, err := m.d.Observer.Observe(ctx)
	now := m.d.Now()
	if err != nil {
		// An unreadable signal stays unreadable: warn every few minutes, not every pass.
		if now.Sub(m.lastWarn) >= 5*time.Minute {
			m.d.Log.Warn("eviction signals", zap.Error(err))
			m.lastWarn = now
		} else {
			m.d.Log.Debug("eviction signals", zap.Error(err))
		}
	}
	m.mu.Lock()
	dec := Decide(m.cfg.Thresholds, obs, m.state, now, m.cfg.TransitionPeriod)
	conds := dec.Conditions
	changed := !equalConditions(conds, m.conditions)
	m.conditions = conds
	m.mu.Unlock()
	if changed {
		m.d.Log.Info("node pressure conditions changed", zap.Any("conditions", conds))
		if m.d.ConditionsChanged != nil {
			m.d.ConditionsChanged()
		}
	}
	for _, t := range dec.Newly {
		if !t.Hard() {
			m.d.Log.Info("soft eviction threshold crossed; evicting if it stays crossed for its grace period",
				zap.String("threshold", t.String()), zap.Int64("available", obs[t.Signal].Available))
		}
	}
	// As upstream, pods over their own storage limits go first, whatever the pressure, and a
	// pass that evicted any leaves node pressure to the next pass.
	if evicted := m.localStorageEviction(ctx); evicted != nil {
		return evicted
	}
	if dec.Threshold == nil {
		return nil
	}
	t := *dec.Threshold
	o := obs[t.Signal]
	log := m.d.Log.With(zap.String("threshold", t.String()), zap.Int64("available", o.Available), zap.Int64("capacity", o.Capacity))
	if dec.Reclaim && m.d.Reclaimer != nil {
		freed, err := m.d.Reclaimer.DeleteUnused(ctx)
		if err != nil {
			log.Warn("reclaiming unused images failed", zap.Error(err))
		}
		if freed > 0 {
			// Upstream re-observes after reclaiming; the freed bytes count toward the signal.
			after, err := m.d.Observer.Observe(ctx)
			if err == nil || len(after) > 0 {
				if len(Met([]Threshold{t}, after)) == 0 {
					log.Info("reclaimed disk without evicting pods", zap.Uint64("freedBytes", freed))
					return nil
				}
				o = after[t.Signal]
			}
		}
	}
	pods := m.d.ActivePods()
	if len(pods) == 0 {
		log.Info("eviction threshold met, but no pods are active to evict")
		return nil
	}
	stats, err := m.d.Stats.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
	if err != nil {
		// Without stats every pod ranks as "no stats": priority still orders them.
		log.Warn("container stats for eviction ranking", zap.Error(err))
	}
	ranked := Rank(t.Signal, PodUsages(pods, stats))
	if len(ranked) == 0 {
		log.Info("eviction threshold met, but only critical pods are running")
		return nil
	}
	victim := ranked[0]
	msg := Message(t, o, victim)
	log.Info("evicting pod", zap.String("pod", victim.Pod.Namespace+"/"+victim.Pod.Name), zap.Int64("gracePeriodSeconds", KillGrace(t, victim.Pod, m.cfg.MaxPodGracePeriod)), zap.String("message", msg))
	m.d.Recorder.Event(victim.Pod, v1.EventTypeWarning, Reason, msg)
	m.d.Killer.Evict(victim.Pod, KillGrace(t, victim.Pod, m.cfg.MaxPodGracePeriod), msg, true)
	return victim.Pod
}

func equalConditions(a, b []v1.NodeConditionType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// localStorageEviction evicts every active pod over one of its local storage limits and
// returns the first, if any.
func (m *Manager) localStorageEviction(ctx context.Context) *v1.Pod {
	if m.d.LocalStorage == nil {
		return nil
	}
	var pods []*v1.Pod
	for _, p := range m.d.ActivePods() {
		if NeedsDiskUsage(p) {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return nil
	}
	usage, err := m.d.LocalStorage.Usage(ctx, pods)
	if err != nil {
		// What was measured still counts: partial figures only undercount. A lasting failure
		// warns every few minutes, not every pass.
		if now := m.d.Now(); now.Sub(m.lastDiskWarn) >= 5*time.Minute {
			m.d.Log.Warn("local storage usage not fully measured", zap.Error(err))
			m.lastDiskWarn = now
		} else {
			m.d.Log.Debug("local storage usage not fully measured", zap.Error(err))
		}
	}
	var first *v1.Pod
	for _, e := range LocalStorage(pods, usage) {
		m.d.Log.Info("evicting pod", zap.String("pod", e.Pod.Namespace+"/"+e.Pod.Name),
			zap.Int64("gracePeriodSeconds", LocalStorageGrace), zap.String("message", e.Message))
		m.d.Recorder.Event(e.Pod, v1.EventTypeWarning, Reason, e.Message)
		m.d.Killer.Evict(e.Pod, LocalStorageGrace, e.Message, false)
		if first == nil {
			first = e.Pod
		}
	}
	return first
}
