package imagegc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Images is the part of the CRI image service image GC uses.
type Images interface {
	ListImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error)
	RemoveImage(ctx context.Context, image *runtimeapi.ImageSpec) error
	ImageFsInfo(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error)
}

// Containers lists the runtime's containers (every state).
type Containers interface {
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
}

// FsStat returns a filesystem's capacity and available bytes (statfs in production).
type FsStat func(path string) (capacity, available uint64, err error)

// Config configures a Manager.
type Config struct {
	Policy Policy
	// SandboxImage is the runtime's pause image, never removed (containerd 1.6 does not pin it).
	SandboxImage string
	// Period is how often usage is checked and images are detected. Default: 10s.
	Period time.Duration
}

// warnEvery is how often a collection that keeps failing is logged as a warning.
const warnEvery = 5 * time.Minute

// Manager tracks when images were first seen and last used, and removes unused ones.
type Manager struct {
	cfg        Config
	images     Images
	containers Containers
	stat       FsStat
	now        func() time.Time
	log        *zap.Logger

	mu      sync.Mutex
	records map[string]*record // by image ID
}

type record struct {
	firstDetected, lastUsed time.Time
}

// New returns a manager; Run collects periodically.
func New(cfg Config, images Images, containers Containers, stat FsStat, now func() time.Time, log *zap.Logger) (*Manager, error) {
	switch {
	case images == nil:
		return nil, errors.New("imagegc: Images is required")
	case containers == nil:
		return nil, errors.New("imagegc: Containers is required")
	case stat == nil:
		return nil, errors.New("imagegc: FsStat is required")
	case cfg.Policy.LowPercent >= cfg.Policy.HighPercent && cfg.Policy.HighPercent < 100:
		return nil, fmt.Errorf("imagegc: imageGCLowThresholdPercent (%d) must be below imageGCHighThresholdPercent (%d)", cfg.Policy.LowPercent, cfg.Policy.HighPercent)
	}
	if cfg.Period <= 0 {
		cfg.Period = 10 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Manager{cfg: cfg, images: images, containers: containers, stat: stat, now: now, log: log, records: map[string]*record{}}, nil
}

// Run detects images and collects when usage is above the high threshold, every period, until
// ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Period)
	defer t.Stop()
	var lastWarn time.Time
	for {
		if err := m.GarbageCollect(ctx); err != nil && ctx.Err() == nil {
			// A disk that stays full fails every pass: say so every few minutes, not every 10 s.
			if now := m.now(); now.Sub(lastWarn) >= warnEvery {
				m.log.Warn("image garbage collection failed", zap.Error(err))
				lastWarn = now
			} else {
				m.log.Debug("image garbage collection failed", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ImageFs returns the image filesystem's mount point as the runtime reports it.
func (m *Manager) ImageFs(ctx context.Context) (string, error) {
	resp, err := m.images.ImageFsInfo(ctx)
	if err != nil {
		return "", fmt.Errorf("CRI ImageFsInfo: %w", err)
	}
	for _, fs := range resp.GetImageFilesystems() {
		if mp := fs.GetFsId().GetMountpoint(); mp != "" {
			return mp, nil
		}
	}
	return "", errors.New("CRI ImageFsInfo reported no image filesystem")
}

// GarbageCollect updates the image records and, when the image filesystem's usage is above the
// high threshold, removes unused images until it is down to the low one.
func (m *Manager) GarbageCollect(ctx context.Context) error {
	now := m.now()
	unused, err := m.detect(ctx, now)
	if err != nil {
		return err
	}
	if m.cfg.Policy.HighPercent >= 100 {
		return nil
	}
	mp, err := m.ImageFs(ctx)
	if err != nil {
		return err
	}
	capacity, available, err := m.stat(mp)
	if err != nil {
		return fmt.Errorf("image filesystem %s: %w", mp, err)
	}
	want := BytesToFree(capacity, available, m.cfg.Policy)
	if want == 0 {
		return nil
	}
	m.log.Debug("image filesystem above imageGCHighThresholdPercent; removing unused images",
		zap.Int("highPercent", m.cfg.Policy.HighPercent), zap.Int("lowPercent", m.cfg.Policy.LowPercent), zap.Uint64("bytesToFree", want))
	freed, err := m.remove(ctx, Select(unused, now, m.cfg.Policy.MinAge, want))
	if err != nil {
		return err
	}
	if freed < want {
		return fmt.Errorf("wanted to free %d bytes of images, but only %d bytes were eligible", want, freed)
	}
	return nil
}

// DeleteUnused removes every unused image old enough (disk pressure reclaim) and returns the
// bytes freed.
func (m *Manager) DeleteUnused(ctx context.Context) (uint64, error) {
	now := m.now()
	unused, err := m.detect(ctx, now)
	if err != nil {
		return 0, err
	}
	return m.remove(ctx, Select(unused, now, m.cfg.Policy.MinAge, math.MaxUint64))
}

func (m *Manager) remove(ctx context.Context, victims []Candidate) (uint64, error) {
	var freed uint64
	var errs []error
	for _, c := range victims {
		if err := m.images.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: c.ID}); err != nil {
			errs = append(errs, fmt.Errorf("remove image %s %v: %w", c.ID, c.Tags, err))
			continue
		}
		m.log.Info("removed unused image", zap.String("image", c.ID), zap.Strings("tags", c.Tags), zap.Uint64("size", c.Size))
		freed += c.Size
		m.mu.Lock()
		delete(m.records, c.ID)
		m.mu.Unlock()
	}
	return freed, errors.Join(errs...)
}

// detect lists images and containers, records first-seen and last-used times, and returns the
// images nothing uses that may be removed.
func (m *Manager) detect(ctx context.Context, now time.Time) ([]Candidate, error) {
	imgs, err := m.images.ListImages(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("CRI ListImages: %w", err)
	}
	// Containers are listed after images: an image pulled in between is new, so young.
	cs, err := m.containers.ListContainers(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("CRI ListContainers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range cs {
		used[c.GetImageRef()] = true
		used[c.GetImage().GetImage()] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	var out []Candidate
	for _, img := range imgs {
		id := img.GetId()
		seen[id] = true
		r := m.records[id]
		if r == nil {
			r = &record{firstDetected: now}
			m.records[id] = r
		}
		inUse := used[id] || img.GetPinned()
		for _, ref := range append(append([]string(nil), img.GetRepoTags()...), img.GetRepoDigests()...) {
			if used[ref] || (m.cfg.SandboxImage != "" && ref == m.cfg.SandboxImage) {
				inUse = true
			}
		}
		if inUse {
			r.lastUsed = now
			continue
		}
		out = append(out, Candidate{ID: id, Tags: img.GetRepoTags(), Size: img.GetSize(), FirstDetected: r.firstDetected, LastUsed: r.lastUsed})
	}
	for id := range m.records {
		if !seen[id] {
			delete(m.records, id)
		}
	}
	return out, nil
}

// SandboxImage asks the runtime for its pause image: containerd's CRI status (verbose) carries
// its configuration with sandboxImage. "" when the runtime does not say.
func SandboxImage(ctx context.Context, status func(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error)) string {
	resp, err := status(ctx, true)
	if err != nil {
		return ""
	}
	var cfg struct {
		SandboxImage string `json:"sandboxImage"`
	}
	if json.Unmarshal([]byte(resp.GetInfo()["config"]), &cfg) != nil {
		return ""
	}
	return cfg.SandboxImage
}
