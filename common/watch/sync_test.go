package watch

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type fakeSyncer struct {
	name   string
	synced atomic.Bool
}

func (f *fakeSyncer) Name() string    { return f.name }
func (f *fakeSyncer) HasSynced() bool { return f.synced.Load() }

func syncer(name string, synced bool) *fakeSyncer {
	f := &fakeSyncer{name: name}
	f.synced.Store(synced)
	return f
}

func TestWaitForSync(t *testing.T) {
	tests := []struct {
		name       string
		syncers    func() []Syncer
		cancel     bool
		timeout    time.Duration
		wantErr    []string // substrings
		notInErr   []string
		wantTarget error
	}{
		{name: "all synced", syncers: func() []Syncer { return []Syncer{syncer("pods", true), syncer("node", true)} }, timeout: time.Second},
		{
			name: "named funcs",
			syncers: func() []Syncer {
				return []Syncer{SyncedFunc("handler", func() bool { return true }), SyncedFunc("other handler", func() bool { return false })}
			},
			timeout: 100 * time.Millisecond, wantErr: []string{"within 100ms: other handler"}, notInErr: []string{"handler,"},
			wantTarget: context.DeadlineExceeded,
		},
		{name: "nothing to wait for", syncers: func() []Syncer { return nil }, timeout: time.Second},
		{
			name: "syncs later",
			syncers: func() []Syncer {
				late := syncer("services", false)
				time.AfterFunc(150*time.Millisecond, func() { late.synced.Store(true) })
				return []Syncer{syncer("pods", true), late}
			},
			timeout: 5 * time.Second,
		},
		{
			name: "timeout names the unsynced caches only",
			syncers: func() []Syncer {
				return []Syncer{syncer("pods", true), syncer("services", false), syncer("endpointslices", false)}
			},
			timeout:    200 * time.Millisecond,
			wantErr:    []string{"caches not synced within 200ms: services, endpointslices"},
			notInErr:   []string{"pods"},
			wantTarget: context.DeadlineExceeded,
		},
		{
			name:       "cancelled",
			syncers:    func() []Syncer { return []Syncer{syncer("node n1", false)} },
			cancel:     true,
			wantErr:    []string{"caches not synced: node n1"},
			wantTarget: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			err := WaitForSync(ctx, tt.timeout, tt.syncers()...)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("WaitForSync = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("WaitForSync = nil, want an error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			for _, s := range tt.notInErr {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q names %q, which synced", err, s)
				}
			}
			if !errors.Is(err, tt.wantTarget) {
				t.Errorf("error %q does not wrap %v", err, tt.wantTarget)
			}
		})
	}
}
