package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// layout names the files under the state directory.
type layout struct{ root string }

func (l layout) pidFile() string         { return filepath.Join(l.root, "supervisor.pid") }
func (l layout) readyFile() string       { return filepath.Join(l.root, "ready.json") }
func (l layout) logDir() string          { return filepath.Join(l.root, "logs") }
func (l layout) log(name string) string  { return filepath.Join(l.logDir(), name+".log") }
func (l layout) controlPlaneDir() string { return filepath.Join(l.root, "controlplane") }
func (l layout) nodeDir() string         { return filepath.Join(l.root, "node") }

// controlPlaneLog is where e2e/cluster has a detached control plane write its output.
func (l layout) controlPlaneLog() string {
	return filepath.Join(l.controlPlaneDir(), "kube-controlplane.log")
}

// readyInfo is what the supervisor writes once everything is up, and what up prints.
type readyInfo struct {
	AdminKubeconfig string   `json:"adminKubeconfig"`
	Server          string   `json:"server"`
	Registry        string   `json:"registry"`
	CRIEndpoint     string   `json:"criEndpoint"`
	LogDir          string   `json:"logDir"`
	ControlPlaneLog string   `json:"controlPlaneLog"`
	Processes       []string `json:"processes,omitempty"`
}

func (l layout) readReady() (readyInfo, error) {
	var r readyInfo
	data, err := os.ReadFile(l.readyFile())
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", l.readyFile(), err)
	}
	return r, nil
}

func (l layout) writeReady(r readyInfo) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.readyFile() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.readyFile())
}

// supervisorPID returns the running supervisor's pid, or 0. A stale pid file (the pid gone or
// reused by another program) counts as none.
func (l layout) supervisorPID() int {
	data, err := os.ReadFile(l.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if !isSupervisor(args, l.root) {
		return 0
	}
	return pid
}

// isSupervisor reports whether a command line is `kubenode-dev ... supervise ... --state-dir root`.
func isSupervisor(args []string, root string) bool {
	if len(args) == 0 || filepath.Base(args[0]) != "kubenode-dev" {
		return false
	}
	sup, state := false, false
	for i, a := range args {
		switch {
		case a == "supervise":
			sup = true
		case a == "--state-dir="+root:
			state = true
		case a == "--state-dir" && i+1 < len(args) && args[i+1] == root:
			state = true
		}
	}
	return sup && state
}

func (r readyInfo) instructions() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kubenode dev node is up.\n\n")
	fmt.Fprintf(&b, "  export KUBECONFIG=%s\n", r.AdminKubeconfig)
	fmt.Fprintf(&b, "  kubectl get ns\n\n")
	fmt.Fprintf(&b, "API server:    %s\n", r.Server)
	fmt.Fprintf(&b, "CRI endpoint:  %s   (crictl --runtime-endpoint %s ps)\n", r.CRIEndpoint, r.CRIEndpoint)
	fmt.Fprintf(&b, "Registry:      %s   (serves registry.k8s.io/pause:3.10, docker.io/library/busybox:1.36, registry.kubenode.test/echo:v1)\n", r.Registry)
	if len(r.Processes) > 0 {
		fmt.Fprintf(&b, "Node processes: %s\n", strings.Join(r.Processes, ", "))
	}
	b.WriteString(demoInstructions(r.Processes))
	fmt.Fprintf(&b, "Logs:          %s/   (supervisor.log, containerd.log, <process>.log)\n", r.LogDir)
	fmt.Fprintf(&b, "               %s\n", r.ControlPlaneLog)
	fmt.Fprintf(&b, "Stop:          make down\n")
	return b.String()
}
