package kubeletbench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profiler fetches pprof profiles from a kubelet built with the pprof overlay
// (testdata/pprof.go.overlay) into dir. A nil profiler does nothing.
type profiler struct {
	addr string
	dir  string
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

// fetch saves /debug/pprof/<what> to dir/<file>; cpu profiles block for their seconds, so they
// run in the background until wait.
func (p *profiler) fetch(ctx context.Context, what, file string) {
	if p == nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.get(ctx, what, file); err != nil {
			p.mu.Lock()
			p.errs = append(p.errs, err)
			p.mu.Unlock()
		}
	}()
}

func (p *profiler) get(ctx context.Context, what, file string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	url := "http://" + p.addr + "/debug/pprof/" + what
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("pprof %s (is the kubelet built with the pprof overlay?): %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", url, resp.Status)
	}
	f, err := os.Create(filepath.Join(p.dir, file))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("pprof %s: %w", url, err)
	}
	return f.Close()
}

// wait waits for background fetches and returns their first error.
func (p *profiler) wait() error {
	if p == nil {
		return nil
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		return p.errs[0]
	}
	return nil
}
