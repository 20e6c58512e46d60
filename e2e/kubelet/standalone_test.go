package kubelet

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/e2e/nodeenv"
)

const staticManifest = `apiVersion: v1
kind: Pod
metadata:
  name: static-web
  namespace: default
spec:
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "echo started; trap 'exit 0' TERM; while true; do sleep 1; done"]
`

// TestStandaloneStaticPod: without an API server the kubelet runs a static pod from its
// manifest directory, serves /healthz, and stops the pod when the manifest goes away.
func TestStandaloneStaticPod(t *testing.T) {
	n := startNode(t, false, nil)
	ctx := context.Background()
	rs, err := nodeenv.Dial(ctx, n.env.Endpoint(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.staticDir, "web.yaml"), []byte(staticManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	running := func() (int, error) {
		cs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
		if err != nil {
			return 0, err
		}
		k := 0
		for _, c := range cs {
			if c.Labels["io.kubernetes.pod.name"] == "static-web-"+n.name {
				k++
			}
		}
		return k, nil
	}
	start := time.Now()
	n.eventually(t, 60*time.Second, "static pod container running", func() error {
		k, err := running()
		if err != nil {
			return err
		}
		if k != 1 {
			return fmt.Errorf("%d running containers", k)
		}
		return nil
	})
	t.Logf("static pod running %s after its manifest appeared", time.Since(start).Round(time.Millisecond))

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.healthz))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}

	if err := os.Remove(filepath.Join(n.staticDir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	n.eventually(t, 60*time.Second, "static pod removed from the runtime", func() error {
		sbs, err := rs.ListPodSandbox(ctx, nil)
		if err != nil {
			return err
		}
		if len(sbs) != 0 {
			return fmt.Errorf("%d sandboxes left", len(sbs))
		}
		return nil
	})
}

// TestStaticPodWhileAPIServerUnreachable: with a kubeconfig whose server does not answer (as on
// a control-plane node whose API server is itself a static pod), static pods still start.
func TestStaticPodWhileAPIServerUnreachable(t *testing.T) {
	n := startNode(t, false, nil)
	n.stopKubelet(t)
	dead := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	kc := filepath.Join(n.stateDir, "dead.kubeconfig")
	content := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: x\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n", dead)
	if err := os.WriteFile(kc, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	n.kubeconfig = kc
	n.startKubelet(t, kubeletBin(t))
	if err := os.WriteFile(filepath.Join(n.staticDir, "web.yaml"), []byte(staticManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rs, err := nodeenv.Dial(ctx, n.env.Endpoint(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n.eventually(t, 60*time.Second, "static pod running without the API server", func() error {
		cs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Labels["io.kubernetes.pod.name"] == "static-web-"+n.name {
				return nil
			}
		}
		return fmt.Errorf("%d running containers, none of the static pod", len(cs))
	})
	if err := os.Remove(filepath.Join(n.staticDir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
}
