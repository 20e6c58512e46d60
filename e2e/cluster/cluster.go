// Package cluster starts, finds and stops the local control plane that
// kubenode's end-to-end tests and `make up` run against: the
// kube-controlplane program (e2e/controlplane, built by `make controlplane`)
// as a child process, with its state under one directory.
//
// It never imports k8s.io/kubernetes; it talks to the program through its
// state directory (pidfile, ready marker, certificates, kubeconfigs) and to
// the cluster through client-go.
//
// In a test binary, start one per TestMain:
//
//	c, err := cluster.Start(ctx, cluster.Options{StateDir: dir}) // binary from $KUBENODE_CONTROLPLANE_BIN
//	defer c.Stop()
//	kubeletKubeconfig, err := c.NodeKubeconfig("node-1")        // system:node:node-1
//	proxyKubeconfig := c.KubeProxyKubeconfig()                   // system:kube-proxy
//
// For a long-lived dev cluster, Start with Detach, later Attach(dir) to it
// and KillAll(dir) to tear it down.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// BinaryEnv names the environment variable that holds the path of the
// kube-controlplane binary; `make controlplane` prints it and
// `make test-controlplane` sets it.
const BinaryEnv = "KUBENODE_CONTROLPLANE_BIN"

// Files in the state directory, shared with e2e/controlplane.
const (
	pidFile   = "kube-controlplane.pid"
	readyFile = "ready"
	logFile   = "kube-controlplane.log"
	pkiDir    = "pki"
)

const (
	defaultReadyTimeout = 3 * time.Minute
	// SIGTERM grace: the program stops controllers, then the apiserver,
	// then etcd, each within 10 s.
	stopGrace = 45 * time.Second
)

// Options configures Start.
type Options struct {
	// Binary is the kube-controlplane program; default $KUBENODE_CONTROLPLANE_BIN.
	Binary string
	// StateDir holds certificates, kubeconfigs, etcd data and the markers. Required.
	// Reusing a directory keeps the cluster's data and credentials.
	StateDir string
	// Log receives the program's output; nil writes StateDir/kube-controlplane.log.
	// Ignored with Detach, which always writes that file.
	Log io.Writer
	// APIServerPort fixes the kube-apiserver port; 0 picks a free one.
	APIServerPort int
	// Detach starts the program in its own session so that it outlives the
	// caller (for `make up`); find it again with Attach and stop it with
	// Stop or KillAll.
	Detach bool
	// ReadyTimeout bounds the wait for the ready marker; default 3 minutes.
	ReadyTimeout time.Duration
	// Args are extra flags for kube-controlplane (see its -help).
	Args []string
}

// Cluster is a running control plane.
type Cluster struct {
	stateDir string
	server   string
	pid      int
	// Set only when this process started the program and waits for it.
	exited  chan struct{}
	exitErr error
	logFile *os.File
}

// Start runs kube-controlplane and returns once it reports ready. ctx
// bounds only that wait; the program runs until Stop or KillAll. On a
// failed start it is stopped again and the error points at its log.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Binary == "" {
		o.Binary = os.Getenv(BinaryEnv)
	}
	if o.Binary == "" {
		return nil, fmt.Errorf("no kube-controlplane binary: set Options.Binary or %s (make controlplane builds it)", BinaryEnv)
	}
	if _, err := os.Stat(o.Binary); err != nil {
		return nil, fmt.Errorf("kube-controlplane binary: %w", err)
	}
	if o.StateDir == "" {
		return nil, errors.New("Options.StateDir is required")
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = defaultReadyTimeout
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir %q: %w", o.StateDir, err)
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if pid, ok := runningPID(stateDir); ok {
		return nil, fmt.Errorf("a control plane from %s is already running (pid %d): Attach to it or KillAll it", stateDir, pid)
	}
	// Whatever an earlier, killed run left must not look ready.
	_ = os.Remove(filepath.Join(stateDir, readyFile))

	args := []string{
		"--state-dir=" + stateDir,
		"--apiserver-port=" + strconv.Itoa(o.APIServerPort),
	}
	if !o.Detach {
		// A test binary killed by its timeout must not leak a control plane.
		args = append(args, "--exit-with-parent")
	}
	args = append(args, o.Args...)
	cmd := exec.Command(o.Binary, args...)
	// Own process group, so Stop can signal everything the program runs;
	// with Detach, own session, so a terminal's hangup does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: !o.Detach, Setsid: o.Detach}
	c := &Cluster{stateDir: stateDir, exited: make(chan struct{})}
	if o.Detach || o.Log == nil {
		f, err := os.OpenFile(filepath.Join(stateDir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open control plane log: %w", err)
		}
		c.logFile = f
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
	}
	if err := cmd.Start(); err != nil {
		c.closeLog()
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	c.pid = cmd.Process.Pid
	go func() {
		c.exitErr = cmd.Wait()
		c.closeLog()
		close(c.exited)
	}()

	if err := c.waitReady(ctx, o.ReadyTimeout); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if server, err := readReady(c.stateDir); err == nil {
			c.server = server
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("kube-controlplane exited before it was ready (%v); see its log (%s)", c.exitErr, c.logHint())
		case <-ctx.Done():
			return fmt.Errorf("kube-controlplane not ready: %w; see its log (%s)", ctx.Err(), c.logHint())
		case <-tick.C:
		}
	}
}

func (c *Cluster) logHint() string {
	if c.logFile != nil {
		return c.logFile.Name()
	}
	return "Options.Log"
}

func (c *Cluster) closeLog() {
	if c.logFile != nil {
		_ = c.logFile.Close()
	}
}

// Attach returns the control plane already running from stateDir, e.g.
// one that `make up` started detached.
func Attach(stateDir string) (*Cluster, error) {
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	pid, ok := runningPID(stateDir)
	if !ok {
		return nil, fmt.Errorf("no control plane is running from %s", stateDir)
	}
	server, err := readReady(stateDir)
	if err != nil {
		return nil, fmt.Errorf("control plane pid %d from %s is not ready: %w", pid, stateDir, err)
	}
	return &Cluster{stateDir: stateDir, server: server, pid: pid}, nil
}

// KillAll stops a control plane left running from stateDir, found through
// its pidfile: SIGTERM, then SIGKILL if it does not stop in time. It is a
// no-op when none runs.
func KillAll(stateDir string) error {
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	pid, ok := runningPID(stateDir)
	if !ok {
		_ = os.Remove(filepath.Join(stateDir, pidFile))
		_ = os.Remove(filepath.Join(stateDir, readyFile))
		return nil
	}
	c := &Cluster{stateDir: stateDir, pid: pid}
	return c.Stop()
}

// Stop sends SIGTERM, waits for a clean exit, and sends SIGKILL to the
// process group if that takes longer than 45 s. It reports an unclean exit.
func (c *Cluster) Stop() error {
	if c.exited != nil {
		select {
		case <-c.exited:
			return c.exitResult()
		default:
		}
		if err := syscall.Kill(c.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal kube-controlplane: %w", err)
		}
		select {
		case <-c.exited:
			return c.exitResult()
		case <-time.After(stopGrace):
			_ = syscall.Kill(-c.pid, syscall.SIGKILL)
			<-c.exited
			return fmt.Errorf("kube-controlplane (pid %d) ignored SIGTERM for %s and was killed", c.pid, stopGrace)
		}
	}
	// Not our child: we cannot wait for it, only watch for it to disappear.
	if err := syscall.Kill(c.pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("signal kube-controlplane: %w", err)
	}
	deadline := time.Now().Add(stopGrace)
	for time.Now().Before(deadline) {
		if !isControlPlane(c.pid) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Detached: the program leads its own session and process group.
	_ = syscall.Kill(-c.pid, syscall.SIGKILL)
	_ = syscall.Kill(c.pid, syscall.SIGKILL)
	_ = os.Remove(filepath.Join(c.stateDir, pidFile))
	_ = os.Remove(filepath.Join(c.stateDir, readyFile))
	return fmt.Errorf("kube-controlplane (pid %d) ignored SIGTERM for %s and was killed", c.pid, stopGrace)
}

func (c *Cluster) exitResult() error {
	if c.exitErr != nil {
		return fmt.Errorf("kube-controlplane (pid %d) exited uncleanly: %w", c.pid, c.exitErr)
	}
	return nil
}

// StateDir is the directory the control plane keeps its state in.
func (c *Cluster) StateDir() string { return c.stateDir }

// PID is the kube-controlplane process.
func (c *Cluster) PID() int { return c.pid }

// Server is the kube-apiserver URL, https://127.0.0.1:PORT.
func (c *Cluster) Server() string { return c.server }

// CACertFile is the cluster CA; it signs the apiserver's serving
// certificate and every client certificate.
func (c *Cluster) CACertFile() string { return filepath.Join(c.stateDir, pkiDir, "ca.crt") }

// AdminKubeconfig is a kubeconfig for a system:masters user.
func (c *Cluster) AdminKubeconfig() string { return filepath.Join(c.stateDir, "admin.kubeconfig") }

// KubeProxyKubeconfig is a kubeconfig for user system:kube-proxy, which
// bootstrap RBAC binds to the system:node-proxier role.
func (c *Cluster) KubeProxyKubeconfig() string {
	return filepath.Join(c.stateDir, "kube-proxy.kubeconfig")
}

// Client builds a clientset and its rest.Config from a kubeconfig file.
func (c *Cluster) Client(kubeconfig string) (kubernetes.Interface, *rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("client from %s: %w", kubeconfig, err)
	}
	return cs, cfg, nil
}

// runningPID reads the pidfile and reports whether that process is still
// a kube-controlplane (the pid may have been reused after a crash).
func runningPID(stateDir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(stateDir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, isControlPlane(pid)
}

// isControlPlane reports whether pid is a live kube-controlplane process.
func isControlPlane(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie has exited; only its parent's wait is missing.
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return filepath.Base(string(argv0)) == "kube-controlplane"
}

func readReady(stateDir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, readyFile))
	if err != nil {
		return "", err
	}
	server := strings.TrimSpace(string(data))
	if !strings.HasPrefix(server, "https://") {
		return "", fmt.Errorf("ready marker %s holds %q, not a server URL", filepath.Join(stateDir, readyFile), server)
	}
	return server, nil
}
