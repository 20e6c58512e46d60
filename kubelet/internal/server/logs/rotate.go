package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RotatorRuntime is the part of CRI log rotation needs.
type RotatorRuntime interface {
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error)
	ReopenContainerLog(ctx context.Context, id string) error
}

// rotatedSuffix is the time format appended to a rotated file, as upstream names them
// (0.log.20260101-150405), so the names sort by age.
const rotatedSuffix = "20060102-150405"

// Rotator keeps each running container's log under a size by renaming it away and asking the
// runtime to reopen it (containerLogMaxSize), and keeps at most maxFiles files per log
// (containerLogMaxFiles, the current one included). It starts nothing; Run loops.
type Rotator struct {
	rt       RotatorRuntime
	maxSize  int64
	maxFiles int
	timeout  time.Duration
	now      func() time.Time
	log      *zap.Logger
}

// NewRotator checks its limits; timeout bounds each CRI call.
func NewRotator(rt RotatorRuntime, maxSize int64, maxFiles int, timeout time.Duration, now func() time.Time, log *zap.Logger) (*Rotator, error) {
	if maxSize <= 0 {
		return nil, fmt.Errorf("containerLogMaxSize: %d must be positive", maxSize)
	}
	if maxFiles < 2 {
		return nil, fmt.Errorf("containerLogMaxFiles: %d must be at least 2", maxFiles)
	}
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	return &Rotator{rt: rt, maxSize: maxSize, maxFiles: maxFiles, timeout: timeout, now: now, log: log}, nil
}

// Run checks the logs every interval until ctx ends.
func (r *Rotator) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.RotateOnce(ctx); err != nil {
			r.log.Warn("container log rotation", zap.Error(err))
		}
	}
}

// RotateOnce rotates every running container's log that reached the size limit.
func (r *Rotator) RotateOnce(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	cs, err := r.rt.ListContainers(cctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	cancel()
	if err != nil {
		return fmt.Errorf("CRI ListContainers: %w", err)
	}
	var errs []error
	for _, c := range cs {
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		st, err := r.rt.ContainerStatus(cctx, c.Id, false)
		cancel()
		if err != nil {
			continue // gone since the list
		}
		path := st.GetStatus().GetLogPath()
		if path == "" {
			continue
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Size() < r.maxSize {
			continue
		}
		if err := r.rotate(ctx, c.Id, path); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Id, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Rotator) rotate(ctx context.Context, id, path string) error {
	// Make room first: after the rename there is one more rotated file.
	old, err := rotatedFiles(path)
	if err != nil {
		return err
	}
	keep := r.maxFiles - 2
	for len(old) > keep {
		if err := os.Remove(old[0]); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove old log: %w", err)
		}
		old = old[1:]
	}
	dst := path + "." + r.now().Format(rotatedSuffix)
	if _, err := os.Stat(dst); err == nil {
		return nil // rotated this second already; next round
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.rt.ReopenContainerLog(cctx, id); err != nil {
		// The runtime still writes to the renamed file: put it back so readers find it.
		if rerr := os.Rename(dst, path); rerr != nil {
			return fmt.Errorf("CRI ReopenContainerLog: %w (and restoring the log: %v)", err, rerr)
		}
		return fmt.Errorf("CRI ReopenContainerLog: %w", err)
	}
	return nil
}

// rotatedFiles lists path's rotated files, oldest first.
func rotatedFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(path + ".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		suffix := strings.TrimPrefix(m, path+".")
		if _, err := time.Parse(rotatedSuffix, suffix); err == nil {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}
