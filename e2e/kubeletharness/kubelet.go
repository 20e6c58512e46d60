package kubeletharness

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Kubelet is one bin/kubelet process started by StartKubelet. The e2e suites and the benchmark
// start it the same way; only its configuration differs.
type Kubelet struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error
}

// KubeletArgs are the flags every node passes: the config file, the root dir, the node's name
// and address, and the kubeconfig (none when kubeconfig is empty: standalone).
func KubeletArgs(configFile, rootDir, name, nodeIP, kubeconfig string) []string {
	args := []string{"--config=" + configFile, "--root-dir=" + rootDir, "--hostname-override=" + name, "--node-ip=" + nodeIP}
	if kubeconfig != "" {
		args = append(args, "--kubeconfig="+kubeconfig)
	}
	return args
}

// StartKubelet starts bin with args in a process group of its own (so Stop can kill what it
// forked), appending its output to logPath and adding env to its environment.
func StartKubelet(bin string, args []string, logPath string, env ...string) (*Kubelet, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubelet log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	k := &Kubelet{cmd: cmd, log: f, exited: make(chan struct{})}
	go func() { k.err = cmd.Wait(); close(k.exited) }()
	return k, nil
}

// Pid is the kubelet's process id.
func (k *Kubelet) Pid() int { return k.cmd.Process.Pid }

// Exited is closed once the process has exited; Err then says how.
func (k *Kubelet) Exited() <-chan struct{} { return k.exited }

// Err is the process's exit error; only meaningful after Exited is closed.
func (k *Kubelet) Err() error { return k.err }

// Stop stops the kubelet (SIGTERM, then SIGKILL of its group after 15 s) and closes its log.
// Its pods keep running: tearing them down is containerd's part.
func (k *Kubelet) Stop() {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.exited
	}
	k.log.Close()
}

// BaseConfig is the kubelet configuration (JSON field names) every test and benchmark node
// shares; callers add their own periods, ports and paths.
func BaseConfig(runtimeEndpoint, cgroupRoot string) map[string]any {
	return map[string]any{
		"apiVersion":               "kubelet.config.kubenode.io/v1alpha1",
		"kind":                     "KubeletConfiguration",
		"containerRuntimeEndpoint": runtimeEndpoint,
		"clusterDNS":               []string{"10.96.0.10"},
		"clusterDomain":            "cluster.local",
		"cgroupRoot":               cgroupRoot,
		"failSwapOn":               false,
		// Like kind: a shared dev disk's free space must not put test nodes under disk pressure or
		// let image GC remove the images the suites imported (the eviction suite sets its own).
		"evictionHard":                map[string]string{"memory.available": "100Mi"},
		"imageGCHighThresholdPercent": 100,
	}
}

// WriteConfig writes cfg as indented JSON to path.
func WriteConfig(path string, cfg map[string]any) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("kubelet config: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("kubelet config: %w", err)
	}
	return nil
}

// LogTail returns the last lines of the file at path (or the read error's text).
func LogTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ImageCacheDir is where the test images are cached: $KUBENODE_CACHE/images, or
// ~/.cache/kubenode/images.
func ImageCacheDir() string {
	if c := os.Getenv("KUBENODE_CACHE"); c != "" {
		return filepath.Join(c, "images")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "kubenode", "images")
}
