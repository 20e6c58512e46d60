package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// down stops the supervisor (which stops the node processes, pods, containerd and the control
// plane in order), then removes whatever a crash may have left: a leftover control plane, and
// everything of the node environment. Running it with nothing up does nothing and succeeds.
func down(ctx context.Context, o options, out io.Writer) error {
	l := layout{root: o.stateDir}
	if pid := l.supervisorPID(); pid > 0 {
		fmt.Fprintf(out, "kubenode-dev: stopping supervisor (pid %d)\n", pid)
		if err := stopProcess(pid, 90*time.Second); err != nil {
			fmt.Fprintf(out, "kubenode-dev: %v\n", err)
		}
	}
	log, err := newLogger()
	if err != nil {
		return err
	}
	var errs []error
	if err := cleanupNode(ctx, o, log); err != nil {
		errs = append(errs, err)
	}
	if _, err := os.Stat(l.controlPlaneDir()); err == nil {
		if err := cluster.KillAll(l.controlPlaneDir()); err != nil {
			errs = append(errs, fmt.Errorf("control plane: %w", err))
		} else if err := keepLog(l.controlPlaneLog(), l.log("controlplane")); err != nil {
			errs = append(errs, err)
		} else if err := os.RemoveAll(l.controlPlaneDir()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := nodeenv.Teardown(ctx, l.nodeDir(), log); err != nil {
		errs = append(errs, fmt.Errorf("node environment: %w", err))
	}
	for _, f := range []string{l.pidFile(), l.readyFile()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(out, "kubenode-dev: down (logs of the last run stay in %s)\n", l.logDir())
	return nil
}

// keepLog copies a log that is about to be removed with its directory into logs/.
func keepLog(from, to string) error {
	data, err := os.ReadFile(from)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// running reports whether pid exists and is not a zombie (the supervisor's parent, once up has
// exited, is whatever init this machine has, which may be slow to reap).
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// stopProcess sends SIGTERM and waits for pid to go, then SIGKILLs it.
func stopProcess(pid int, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !running(pid) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("supervisor %d did not stop within %s; killed it", pid, grace)
}
