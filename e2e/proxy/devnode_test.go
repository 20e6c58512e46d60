package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestDevNodeUpDemoDown drives kubenode-dev as make up / make down do, with bin/kubelet and
// bin/kube-proxy: up returns only once the echo demo answers, the printed ClusterIP and
// NodePort reach all three pods from this host, and down leaves no process, mount,
// nftables table or state behind.
//
// It uses the dev node's fixed ports, node name and table: a `make up` node must not run.
func TestDevNodeUpDemoDown(t *testing.T) {
	requireRoot(t)
	kubelet := binFromEnv(t, kubeletBinEnv)
	kubeProxy := binFromEnv(t, kubeProxyBinEnv)
	cpBin := binFromEnv(t, cpBinEnv)
	if filepath.Dir(kubelet) != filepath.Dir(kubeProxy) {
		t.Fatalf("%s and %s must be in one directory (kubenode-dev --bin-dir)", kubeletBinEnv, kubeProxyBinEnv)
	}
	if hostHasTable(t, "kubenode") {
		t.Fatal("the host already has nftables table inet kubenode: another kube-proxy (make up?) runs here; make down first")
	}
	dev := filepath.Join(t.TempDir(), "kubenode-dev")
	if out, err := exec.Command("go", "build", "-o", dev, "../cmd/kubenode-dev").CombinedOutput(); err != nil {
		t.Fatalf("go build kubenode-dev: %v\n%s", err, out)
	}
	sd, err := os.MkdirTemp("", "kubenode-test-devnode-")
	if err != nil {
		t.Fatal(err)
	}
	octet, _ := rand.Int(rand.Reader, big.NewInt(200))
	args := []string{
		"--state-dir=" + sd, "--controlplane-bin=" + cpBin, "--bin-dir=" + filepath.Dir(kubelet),
		fmt.Sprintf("--pod-cidr=10.245.%d.0/24", octet.Int64()+20),
		"--cgroup-root=/kubenode-test-" + randomHex(t, 3),
	}
	if c := os.Getenv("KUBENODE_CACHE"); c != "" {
		args = append(args, "--cache-dir="+c)
	}
	run := func(sub string) (string, error) {
		cmd := exec.Command(dev, append([]string{sub}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			if out, err := run("down"); err != nil {
				t.Errorf("cleanup down: %v\n%s", err, out)
			}
		}
		_ = os.RemoveAll(sd)
	})

	start := time.Now()
	out, err := run("up")
	if err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	t.Logf("up with the demo answering took %s", time.Since(start).Round(100*time.Millisecond))
	var urls []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "curl" {
			urls = append(urls, f[1])
		}
	}
	if len(urls) != 2 {
		t.Fatalf("up printed %d curl commands, want the ClusterIP and the NodePort:\n%s", len(urls), out)
	}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, u := range urls {
		seen := map[string]bool{}
		for i := 0; i < 300 && len(seen) < 3; i++ {
			body, err := get(hc, u)
			if err != nil {
				t.Fatalf("GET %s: %v", u, err)
			}
			seen[body] = true
		}
		if len(seen) != 3 {
			t.Errorf("%s answered from %v, want three echo pods", u, seen)
		}
	}

	checkKubectlLogs(t, out)

	if out, err := run("down"); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	downDone = true
	if hostHasTable(t, "kubenode") {
		t.Error("nftables table kubenode still present after down")
	}
	if procs := processesMentioning(sd); len(procs) > 0 {
		t.Errorf("processes still running from %s after down: %v", sd, procs)
	}
	if m := mountsUnder(sd); len(m) > 0 {
		t.Errorf("mounts left under %s after down: %v", sd, m)
	}
	entries, _ := os.ReadDir(sd)
	for _, e := range entries {
		if e.Name() != "logs" {
			t.Errorf("%s left in the state dir after down", e.Name())
		}
	}
}

// checkKubectlLogs reads a demo pod's log the way kubectl logs does (the API server's pods/log
// proxies to the kubelet's :10250 with its client certificate), with the kubeconfig up printed.
func checkKubectlLogs(t *testing.T, upOut string) {
	t.Helper()
	var kubeconfig string
	for _, line := range strings.Split(upOut, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export KUBECONFIG="); ok {
			kubeconfig = v
		}
	}
	if kubeconfig == "" {
		t.Fatalf("up printed no export KUBECONFIG= line:\n%s", upOut)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("listing the demo pods: %v (%d found)", err, len(pods.Items))
	}
	name := pods.Items[0].Name
	logs, err := cs.CoreV1().Pods("default").GetLogs(name, &v1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("kubectl logs %s through the API server: %v", name, err)
	}
	if !strings.Contains(string(logs), name+" listening on") {
		t.Errorf("logs of %s = %q, want the echo server's start line", name, logs)
	}
}

// processesMentioning lists the command lines that name dir.
func processesMentioning(dir string) []string {
	var out []string
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if cl := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cl, dir) {
			out = append(out, d.Name()+": "+cl)
		}
	}
	return out
}

func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}
