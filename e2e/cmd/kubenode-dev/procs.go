package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// procSpec is one node process the supervisor keeps running.
type procSpec struct {
	Name string
	Path string
	Args []string
	Env  []string // added to the supervisor's environment
}

// runner keeps processes running: one that exits is restarted after a back-off that doubles
// up to maxBackoff (and resets after a minute of good running); when ctx ends each process group
// gets SIGTERM, then SIGKILL after grace.
type runner struct {
	minBackoff, maxBackoff, grace time.Duration
	output                        func(name string) (io.WriteCloser, error)
	log                           *zap.Logger
}

// run blocks until ctx ends and every process has stopped.
func (r runner) run(ctx context.Context, specs []procSpec) {
	var wg sync.WaitGroup
	for _, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.keep(ctx, s)
		}()
	}
	wg.Wait()
}

func (r runner) keep(ctx context.Context, s procSpec) {
	log := r.log.With(zap.String("process", s.Name))
	out, err := r.output(s.Name)
	if err != nil {
		log.Error("no log file, not starting", zap.Error(err))
		return
	}
	defer out.Close()
	backoff := r.minBackoff
	for ctx.Err() == nil {
		started := time.Now()
		if stopped := r.once(ctx, s, out, log); stopped {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = r.minBackoff
		}
		log.Info("restarting", zap.Duration("after", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.maxBackoff)
	}
}

// once runs the process until it exits (false) or ctx ends and it was stopped (true).
func (r runner) once(ctx context.Context, s procSpec, out io.Writer, log *zap.Logger) bool {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own group, so stopping it reaches the children it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Error("start failed", zap.Error(err))
		return false
	}
	log.Info("started", zap.Int("pid", cmd.Process.Pid), zap.Strings("args", s.Args))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		log.Warn("exited", zap.Error(err))
		return false
	case <-ctx.Done():
	}
	pgid := -cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(r.grace):
		log.Warn("ignored SIGTERM, killing")
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-done
	}
	log.Info("stopped")
	return true
}
