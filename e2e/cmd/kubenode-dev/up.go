package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// upTimeout bounds waiting for the supervisor: images, control plane start and containerd.
const upTimeout = 5 * time.Minute

// up starts the supervisor detached (its own session, logs in files) and waits for it to report
// ready. A leftover of a crashed run is cleaned up first.
func up(ctx context.Context, o options, out io.Writer) error {
	l := layout{root: o.stateDir}
	if os.Geteuid() != 0 {
		return errors.New("needs root (containerd, CNI, cgroups): run make up as root")
	}
	if pid := l.supervisorPID(); pid > 0 {
		info, err := l.readReady()
		if err != nil {
			return fmt.Errorf("a supervisor (pid %d) is already running but not ready yet; wait, or run make down", pid)
		}
		fmt.Fprintf(out, "kubenode-dev: already up (supervisor pid %d).\n\n%s", pid, info.instructions())
		return nil
	}
	if leftovers(l) {
		fmt.Fprintln(out, "kubenode-dev: cleaning up after an earlier run that did not shut down")
		if err := down(ctx, o, out); err != nil {
			return fmt.Errorf("clean up earlier run: %w", err)
		}
	}
	if o.controlPlaneBin == "" {
		return errors.New("KUBENODE_CONTROLPLANE_BIN not set (or --controlplane-bin): run through make up, which builds the control plane")
	}
	if err := os.MkdirAll(l.logDir(), 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	supLog, err := os.OpenFile(l.log("supervisor"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer supLog.Close()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	cmd := exec.Command(self, "supervise",
		"--state-dir="+l.root, "--cache-dir="+abs(o.cacheDir), "--controlplane-bin="+abs(o.controlPlaneBin),
		"--bin-dir="+abs(o.binDir), "--pod-cidr="+o.podCIDR, "--cgroup-root="+o.cgroupRoot)
	cmd.Stdout, cmd.Stderr = supLog, supLog
	// A session of its own: it outlives make, and the terminal's ^C does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(out, "kubenode-dev: starting (supervisor pid %d, log %s)\n", cmd.Process.Pid, l.log("supervisor"))

	deadline := time.After(upTimeout)
	for {
		if info, err := l.readReady(); err == nil {
			fmt.Fprintf(out, "kubenode-dev: ready in %.1fs\n\n%s", time.Since(start).Seconds(), info.instructions())
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("supervisor exited (%v) before the node was ready; last lines of %s:\n%s", err, l.log("supervisor"), tailFile(l.log("supervisor"), 30))
		case <-deadline:
			return fmt.Errorf("not ready after %s; the supervisor keeps trying, see %s (make down stops it)", upTimeout, l.log("supervisor"))
		case <-ctx.Done():
			return fmt.Errorf("interrupted while starting; make down stops what started")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// leftovers reports whether an earlier run left state behind.
func leftovers(l layout) bool {
	for _, p := range []string{l.nodeDir(), l.controlPlaneDir(), l.pidFile(), l.readyFile()} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
