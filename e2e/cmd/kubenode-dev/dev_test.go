package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// TestUpDown drives the built kubenode-dev as make up / make down do: up brings an API server
// and a CRI endpoint that answer, a second up says it is already up, and after everything is
// SIGKILLed (supervisor, containerd, control plane) down removes it all, twice without error.
func TestUpDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (containerd, CNI, cgroups)")
	}
	cpBin := os.Getenv("KUBENODE_CONTROLPLANE_BIN")
	if cpBin == "" {
		t.Skip("KUBENODE_CONTROLPLANE_BIN not set: run through make test-nodeenv")
	}
	bin := filepath.Join(t.TempDir(), "kubenode-dev")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sd, err := os.MkdirTemp("", "kubenode-test-dev-")
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	octet, _ := rand.Int(rand.Reader, big.NewInt(256))
	args := []string{
		"--state-dir=" + sd, "--controlplane-bin=" + cpBin,
		fmt.Sprintf("--pod-cidr=10.247.%d.0/24", octet.Int64()),
		"--cgroup-root=/kubenode-test-" + hex.EncodeToString(id),
	}
	if c := os.Getenv("KUBENODE_CACHE"); c != "" {
		args = append(args, "--cache-dir="+c)
	}
	run := func(sub string) (string, error) {
		cmd := exec.Command(bin, append([]string{sub}, args...)...)
		cmd.Dir = "." // inside the workspace: images.Build finds its sources with go list
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	t.Cleanup(func() {
		if out, err := run("down"); err != nil {
			t.Errorf("cleanup down: %v\n%s", err, out)
		}
		_ = os.RemoveAll(sd)
	})

	out, err := run("up")
	if err != nil {
		t.Fatalf("up: %v\n%s\nsupervisor log:\n%s", err, out, tailFile(filepath.Join(sd, "logs", "supervisor.log"), 30))
	}
	l := layout{root: sd}
	info, err := l.readReady()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "export KUBECONFIG="+info.AdminKubeconfig) || !strings.Contains(out, "kubectl get ns") {
		t.Errorf("up did not print ready-to-paste commands:\n%s", out)
	}

	// The printed kubeconfig reaches the API server.
	cfg, err := clientcmd.BuildConfigFromFlags("", info.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("API server from the printed kubeconfig: %v", err)
	}
	// And the CRI endpoint answers.
	rs, err := nodeenv.Dial(ctx, info.CRIEndpoint, 10*time.Second)
	if err != nil {
		t.Fatalf("CRI endpoint %s: %v", info.CRIEndpoint, err)
	}
	_ = rs.Close(ctx)

	if out, err := run("up"); err != nil || !strings.Contains(out, "already up") {
		t.Errorf("second up: err=%v, want it to say already up:\n%s", err, out)
	}

	// The crash: everything dies at once.
	supervisor := l.supervisorPID()
	if supervisor == 0 {
		t.Fatal("no supervisor running after up")
	}
	var rec struct {
		ContainerdPID int `json:"containerdPID"`
	}
	data, _ := os.ReadFile(filepath.Join(l.nodeDir(), "nodeenv.json"))
	_ = json.Unmarshal(data, &rec)
	cpPIDData, _ := os.ReadFile(filepath.Join(l.controlPlaneDir(), "kube-controlplane.pid"))
	cpPID, _ := strconv.Atoi(strings.TrimSpace(string(cpPIDData)))
	pids := []int{supervisor, rec.ContainerdPID, cpPID}
	for _, pid := range pids {
		if pid <= 0 {
			t.Fatalf("could not find every process to kill: %v", pids)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}

	for i := range 2 {
		if out, err := run("down"); err != nil {
			t.Fatalf("down #%d after the crash: %v\n%s", i+1, err, out)
		}
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("pid %d survived down", pid)
		}
	}
	entries, _ := os.ReadDir(sd)
	for _, e := range entries {
		if e.Name() != "logs" {
			t.Errorf("down left %s in the state dir", filepath.Join(sd, e.Name()))
		}
	}
	if data, err := os.ReadFile(l.log("controlplane")); err != nil || len(data) == 0 {
		t.Errorf("down did not keep the control plane's log in logs/: %v", err)
	}
}
