package kubeletserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubenode/kubenode/e2e/kubeletharness"
)

// nodeLogDir is what the kubelet binary serves at /logs/; the test only reads it.
const nodeLogDir = "/var/log"

// logDirFacts are what the test expects of /logs/ on this machine: every entry in the listing,
// one small regular file to fetch, and symlinks whose targets are outside the directory.
type logDirFacts struct {
	entries []string // as listed: directories with a trailing slash
	file    string
	escapes []string
}

func readLogDir(t *testing.T) logDirFacts {
	t.Helper()
	des, err := os.ReadDir(nodeLogDir)
	if err != nil {
		t.Fatalf("%s: %v", nodeLogDir, err)
	}
	var f logDirFacts
	for _, de := range des {
		name := de.Name()
		if de.IsDir() {
			f.entries = append(f.entries, name+"/")
			continue
		}
		f.entries = append(f.entries, name)
		full := filepath.Join(nodeLogDir, name)
		if de.Type()&os.ModeSymlink != 0 {
			if target, err := filepath.EvalSymlinks(full); err == nil && !strings.HasPrefix(target, nodeLogDir+"/") {
				f.escapes = append(f.escapes, name)
			}
			continue
		}
		if info, err := de.Info(); err == nil && de.Type().IsRegular() && info.Size() > 0 && info.Size() < 256<<10 && f.file == "" {
			f.file = name
		}
	}
	return f
}

// TestNodeEndpointsThroughTheAPIServer reaches /logs/, /spec, /runningpods and /run the way
// `kubectl get --raw /api/v1/nodes/<node>/proxy/...` does, and checks the kubelet's own
// authorization of each with service accounts granted one subresource each.
func TestNodeEndpointsThroughTheAPIServer(t *testing.T) {
	n := kubeletharness.Start(t, nil)
	ctx := context.Background()
	ns := n.Namespace(t, "nodeep")
	n.RunPod(t, ns, "sleeper", "trap 'exit 0' TERM; while true; do sleep 1; done")
	raw := func(p string) ([]byte, error) {
		return n.Admin.CoreV1().RESTClient().Get().RequestURI("/api/v1/nodes/" + n.Name + "/proxy/" + p).DoRaw(ctx)
	}
	facts := readLogDir(t)

	t.Run("/logs/ lists the node's log directory", func(t *testing.T) {
		b, err := raw("logs/")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range facts.entries {
			if !bytes.Contains(b, []byte(fmt.Sprintf("<a href=%q>", e))) {
				t.Errorf("listing has no %q:\n%.2000s", e, b)
			}
		}
	})

	t.Run("/logs/<file> is the file", func(t *testing.T) {
		if facts.file == "" {
			t.Fatalf("no small regular file in %s to fetch", nodeLogDir)
		}
		// The file may be appended to while we read it: compare until both reads agree.
		kubeletharness.Eventually(t, 20*time.Second, "/logs/"+facts.file+" equal to the file", func() error {
			b, err := raw("logs/" + facts.file)
			if err != nil {
				return err
			}
			want, err := os.ReadFile(filepath.Join(nodeLogDir, facts.file))
			if err != nil {
				return err
			}
			if !bytes.Equal(b, want) {
				return fmt.Errorf("got %d bytes, the file has %d", len(b), len(want))
			}
			return nil
		})
	})

	t.Run("/logs/ does not follow symlinks out of the directory", func(t *testing.T) {
		if len(facts.escapes) == 0 {
			t.Logf("%s has no symlink leading out of it on this machine; the unit tests cover it", nodeLogDir)
		}
		for _, name := range facts.escapes {
			_, err := raw("logs/" + name)
			if !apierrors.IsNotFound(err) {
				t.Errorf("/logs/%s (a symlink out of %s): err %v, want 404", name, nodeLogDir, err)
			}
		}
		if _, err := raw("logs/no-such-file.log"); !apierrors.IsNotFound(err) {
			t.Errorf("/logs/no-such-file.log: err %v, want 404", err)
		}
	})

	t.Run("/spec is this machine", func(t *testing.T) {
		b, err := raw("spec/")
		if err != nil {
			t.Fatal(err)
		}
		var spec struct {
			NumCores       int    `json:"num_cores"`
			MemoryCapacity uint64 `json:"memory_capacity"`
			BootID         string `json:"boot_id"`
			MachineID      string `json:"machine_id"`
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatalf("%v: %.300s", err, b)
		}
		boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if spec.BootID == "" || spec.BootID != strings.TrimSpace(string(boot)) {
			t.Errorf("boot_id %q, kernel says %q", spec.BootID, strings.TrimSpace(string(boot)))
		}
		if want := countProcessors(t); spec.NumCores != want {
			t.Errorf("num_cores %d, /proc/cpuinfo lists %d", spec.NumCores, want)
		}
		if want := memTotal(t); spec.MemoryCapacity != want {
			t.Errorf("memory_capacity %d, MemTotal is %d bytes", spec.MemoryCapacity, want)
		}
		if mid, err := os.ReadFile("/etc/machine-id"); err == nil && spec.MachineID != strings.TrimSpace(string(mid)) {
			t.Errorf("machine_id %q, /etc/machine-id says %q", spec.MachineID, strings.TrimSpace(string(mid)))
		}
	})

	t.Run("/runningpods is the runtime's view of the pod", func(t *testing.T) {
		apiPod, err := n.Admin.CoreV1().Pods(ns).Get(ctx, "sleeper", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := raw("runningpods/")
		if err != nil {
			t.Fatal(err)
		}
		var list v1.PodList
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatalf("%v: %.300s", err, b)
		}
		var found *v1.Pod
		for i := range list.Items {
			if p := &list.Items[i]; p.Namespace == ns && p.Name == "sleeper" {
				found = p
			}
		}
		if found == nil {
			t.Fatalf("no %s/sleeper in %.1000s", ns, b)
		}
		if found.UID != apiPod.UID {
			t.Errorf("uid %s, the API says %s", found.UID, apiPod.UID)
		}
		if len(found.Spec.Containers) != 1 || found.Spec.Containers[0].Name != "main" || !strings.Contains(found.Spec.Containers[0].Image, "busybox") {
			t.Fatalf("containers %+v, want main running busybox", found.Spec.Containers)
		}
		if len(found.Status.ContainerStatuses) != 1 || len(apiPod.Status.ContainerStatuses) != 1 ||
			found.Status.ContainerStatuses[0].ContainerID != apiPod.Status.ContainerStatuses[0].ContainerID {
			t.Errorf("container statuses %+v, want the API's container ID %v", found.Status.ContainerStatuses, apiPod.Status.ContainerStatuses)
		}
	})

	t.Run("POST /run runs a command in the container", func(t *testing.T) {
		b, err := n.Admin.CoreV1().RESTClient().Post().
			RequestURI("/api/v1/nodes/" + n.Name + "/proxy/run/" + ns + "/sleeper/main?cmd=echo+hello+run").DoRaw(ctx)
		if err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		if string(b) != "hello run\n" {
			t.Errorf("output %q, want %q", b, "hello run\n")
		}
	})

	t.Run("an identity without nodes/proxy is refused by the API server", func(t *testing.T) {
		cfg := rest.AnonymousClientConfig(n.AdminCfg)
		cfg.BearerToken = saToken(t, n, ns, "no-rights")
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"logs/", "spec/", "runningpods/"} {
			_, err := cs.CoreV1().RESTClient().Get().RequestURI("/api/v1/nodes/" + n.Name + "/proxy/" + p).DoRaw(ctx)
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: err = %v, want 403 Forbidden", p, err)
			}
		}
	})

	t.Run("direct: each path needs its own subresource", func(t *testing.T) {
		toks := map[string]string{}
		for _, sub := range []string{"log", "spec", "proxy"} {
			toks[sub] = grantNodes(t, n, ns, "only-"+sub, sub)
		}
		plain := kubeletClient(t, n, false)
		for _, tc := range []struct {
			path, grant string
			want        int
		}{
			{"/logs/", "log", http.StatusOK},
			{"/logs/", "proxy", http.StatusForbidden},
			{"/spec/", "spec", http.StatusOK},
			{"/spec/", "proxy", http.StatusForbidden},
			{"/runningpods/", "proxy", http.StatusOK},
			{"/runningpods/", "log", http.StatusForbidden},
			{"/runningpods/", "spec", http.StatusForbidden},
		} {
			t.Run(tc.path+" with nodes/"+tc.grant, func(t *testing.T) {
				// RBAC changes reach the kubelet's authorization cache within seconds.
				kubeletharness.Eventually(t, 20*time.Second, tc.path, func() error {
					code, body := get(t, n, plain, tc.path, toks[tc.grant])
					if code != tc.want {
						return fmt.Errorf("status %d (%.200s), want %d", code, strings.TrimSpace(body), tc.want)
					}
					return nil
				})
			})
		}
	})
}

func countProcessors(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, _, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "processor" {
			n++
		}
	}
	return n
}

func memTotal(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}
