package podsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
)

// allocation is what the kubelet accepted for one pod and what it applied, checkpointed so a
// restarted kubelet neither forgets an accepted resize nor re-applies a finished one (upstream
// keeps allocated_pods_state and actuated_pods_state for the same reason).
type allocation struct {
	// Allocated is the accepted resources by container name.
	Allocated plan.Resources `json:"allocated"`
	// Actual is the resources applied to each container instance, by container ID.
	Actual map[string]v1.ResourceRequirements `json:"actual,omitempty"`
}

func (a *allocation) clone() *allocation {
	out := &allocation{Allocated: plan.Resources{}, Actual: map[string]v1.ResourceRequirements{}}
	for k, v := range a.Allocated {
		out.Allocated[k] = *v.DeepCopy()
	}
	for k, v := range a.Actual {
		out.Actual[k] = *v.DeepCopy()
	}
	return out
}

// allocations keeps one JSON file per pod in dir (none when dir is empty), written atomically.
type allocations struct {
	dir string
	mu  sync.Mutex
	m   map[types.UID]*allocation
}

func newAllocations(dir string) *allocations {
	return &allocations{dir: dir, m: map[types.UID]*allocation{}}
}

func (a *allocations) path(uid types.UID) string {
	return filepath.Join(a.dir, string(uid)+".json")
}

// get returns a copy of the pod's record, reading its checkpoint the first time.
func (a *allocations) get(uid types.UID) (*allocation, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, ok := a.m[uid]; ok {
		return st.clone(), true, nil
	}
	if a.dir == "" {
		return nil, false, nil
	}
	b, err := os.ReadFile(a.path(uid))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read allocation checkpoint: %w", err)
	}
	st := &allocation{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, false, fmt.Errorf("allocation checkpoint %s: %w", a.path(uid), err)
	}
	a.m[uid] = st
	return st.clone(), true, nil
}

// set records the pod's state and writes its checkpoint (temporary file, rename). No fsync: it
// would sit on every container start, and a checkpoint lost to a power cut reads as the spec.
func (a *allocations) set(uid types.UID, st *allocation) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[uid] = st.clone()
	if a.dir == "" {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return fmt.Errorf("allocation checkpoint dir: %w", err)
	}
	tmp, err := os.CreateTemp(a.dir, ".tmp-"+string(uid)+"-")
	if err != nil {
		return fmt.Errorf("allocation checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write allocation checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close allocation checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), a.path(uid)); err != nil {
		return fmt.Errorf("replace allocation checkpoint: %w", err)
	}
	return nil
}

// remove forgets a pod that is gone.
func (a *allocations) remove(uid types.UID) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, uid)
	if a.dir == "" {
		return nil
	}
	if err := os.Remove(a.path(uid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove allocation checkpoint: %w", err)
	}
	return nil
}

// cached returns the in-memory record without reading a checkpoint (for the other pods'
// accounting, which only needs pods this kubelet has synced).
func (a *allocations) cached(uid types.UID) (plan.Resources, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, ok := a.m[uid]
	if !ok {
		return nil, false
	}
	return st.clone().Allocated, true
}
