package logs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type fakeRotRuntime struct {
	path      string
	reopenErr error
	reopened  int
}

func (f *fakeRotRuntime) ListContainers(context.Context, *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	return []*runtimeapi.Container{{Id: "c1", State: runtimeapi.ContainerState_CONTAINER_RUNNING}}, nil
}

func (f *fakeRotRuntime) ContainerStatus(context.Context, string, bool) (*runtimeapi.ContainerStatusResponse, error) {
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: "c1", LogPath: f.path}}, nil
}

// ReopenContainerLog does what a runtime does: a new file at the log path.
func (f *fakeRotRuntime) ReopenContainerLog(context.Context, string) error {
	if f.reopenErr != nil {
		return f.reopenErr
	}
	f.reopened++
	return os.WriteFile(f.path, nil, 0o644)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	rt := &fakeRotRuntime{path: path}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r, err := NewRotator(rt, 100, 3, time.Second, func() time.Time { return clock }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	write := func(n int) {
		if err := os.WriteFile(path, []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		size int
		want []string
	}{
		{"under the limit: untouched", 99, []string{"0.log"}},
		{"at the limit: rotated", 100, []string{"0.log", "0.log.20260101-000100"}},
		{"second rotation", 150, []string{"0.log", "0.log.20260101-000100", "0.log.20260101-000200"}},
		{"third drops the oldest (3 files in all)", 150, []string{"0.log", "0.log.20260101-000200", "0.log.20260101-000300"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			write(s.size)
			if err := r.RotateOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := names(t, dir); !slices.Equal(got, s.want) {
				t.Errorf("files %v, want %v", got, s.want)
			}
			clock = clock.Add(time.Minute)
		})
	}
	t.Run("reopen failure puts the log back", func(t *testing.T) {
		rt.reopenErr = errors.New("runtime says no")
		write(200)
		if err := r.RotateOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "ReopenContainerLog") {
			t.Fatalf("err = %v", err)
		}
		if b, err := os.ReadFile(path); err != nil || len(b) != 200 {
			t.Errorf("log not restored: %d bytes, %v", len(b), err)
		}
	})
	t.Run("limits are checked", func(t *testing.T) {
		if _, err := NewRotator(rt, 0, 3, time.Second, time.Now, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "containerLogMaxSize") {
			t.Errorf("size 0: %v", err)
		}
		if _, err := NewRotator(rt, 10, 1, time.Second, time.Now, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "containerLogMaxFiles") {
			t.Errorf("files 1: %v", err)
		}
	})
}
