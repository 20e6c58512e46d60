package kubeletbench

import (
	"context"
	"errors"
	"math"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestUsageCores(t *testing.T) {
	tests := []struct {
		name  string
		ticks uint64
		wall  time.Duration
		want  float64
	}{
		{"one core for a minute", 6000, time.Minute, 1},
		{"3 ticks over 60 s", 3, time.Minute, 0.0005},
		{"idle", 0, time.Minute, 0},
		{"no time passed", 10, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := usageCores(tc.ticks, tc.wall); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMeasureIdle(t *testing.T) {
	t.Run("counts the CPU the process uses", func(t *testing.T) {
		// A busy goroutine, so the process surely uses CPU in the window.
		var stop atomic.Bool
		defer stop.Store(true)
		go func() {
			for !stop.Load() {
			}
		}()
		u, err := measureIdle(context.Background(), os.Getpid(), 7, 1500*time.Millisecond, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if u.Pods != 7 || u.Cores <= 0 || u.RSSBytes <= 0 || u.Window < 1500*time.Millisecond {
			t.Fatalf("usage of a busy process: %+v", u)
		}
	})
	t.Run("stops when the process died", func(t *testing.T) {
		dead := errors.New("the kubelet exited")
		_, err := measureIdle(context.Background(), os.Getpid(), 0, time.Minute, func() error { return dead })
		if !errors.Is(err, dead) {
			t.Fatalf("err = %v, want %v", err, dead)
		}
	})
}
