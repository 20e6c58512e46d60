// Package kubeletserver tests the kubelet's :10250 API end to end on a real node
// (e2e/kubeletharness): reached the way users reach it, through the API server's pods/log,
// pods/exec, pods/attach and pods/portforward, and directly with and without credentials.
package kubeletserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"

	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/kubeletharness"

	authnv1 "k8s.io/api/authentication/v1"
)

// counter prints numbered lines, one every 200ms, so there is always a next one to follow.
const counter = "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done"

func TestThroughTheAPIServer(t *testing.T) {
	n := kubeletharness.Start(t, nil)
	ctx := context.Background()
	ns := n.Namespace(t, "srv")
	n.RunPod(t, ns, "counter", counter)

	// The highest line number the full log showed; a later tail must end at or after it.
	seen := 0
	t.Run("pods/log returns the lines", func(t *testing.T) {
		var out string
		kubeletharness.Eventually(t, 20*time.Second, "five lines in the log", func() error {
			b, err := n.Admin.CoreV1().Pods(ns).GetLogs("counter", &v1.PodLogOptions{Container: "main"}).DoRaw(ctx)
			if err != nil {
				return err
			}
			out = string(b)
			if !strings.HasPrefix(out, "line-1\nline-2\nline-3\nline-4\nline-5\n") {
				return fmt.Errorf("log %q", out)
			}
			return nil
		})
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		seen, _ = strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], "line-"))
	})

	t.Run("tailLines", func(t *testing.T) {
		two := int64(2)
		b, err := n.Admin.CoreV1().Pods(ns).GetLogs("counter", &v1.PodLogOptions{Container: "main", TailLines: &two}).DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "line-") || !strings.HasPrefix(lines[1], "line-") {
			t.Fatalf("tailLines=2 gave %q", b)
		}
		a, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "line-"))
		z, _ := strconv.Atoi(strings.TrimPrefix(lines[1], "line-"))
		if z != a+1 || z < seen {
			t.Fatalf("tailLines=2 gave %q: not the last two lines", b)
		}
	})

	t.Run("follow streams new lines", func(t *testing.T) {
		one := int64(1)
		fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		rc, err := n.Admin.CoreV1().Pods(ns).GetLogs("counter", &v1.PodLogOptions{Container: "main", Follow: true, TailLines: &one}).Stream(fctx)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		var got []int
		for len(got) < 5 && sc.Scan() {
			k, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "line-"))
			if err != nil {
				t.Fatalf("unexpected line %q", sc.Text())
			}
			got = append(got, k)
		}
		if len(got) < 5 {
			t.Fatalf("followed %v before the stream ended: %v", got, sc.Err())
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]+1 {
				t.Fatalf("followed lines not consecutive: %v", got)
			}
		}
	})

	t.Run("pods/exec runs a command over SPDY", func(t *testing.T) {
		req := n.Admin.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("counter").SubResource("exec").
			VersionedParams(&v1.PodExecOptions{Container: "main", Command: []string{"echo", "hi"}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
		ex, err := remotecommand.NewSPDYExecutor(n.AdminCfg, "POST", req.URL())
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := ex.StreamWithContext(ectx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
			t.Fatalf("exec: %v (stderr %q)", err, stderr.String())
		}
		if stdout.String() != "hi\n" {
			t.Fatalf("stdout %q, want %q", stdout.String(), "hi\n")
		}
	})

	t.Run("pods/attach streams the running process's output", func(t *testing.T) {
		req := n.Admin.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("counter").SubResource("attach").
			VersionedParams(&v1.PodAttachOptions{Container: "main", Stdout: true, Stderr: true}, scheme.ParameterCodec)
		ex, err := remotecommand.NewSPDYExecutor(n.AdminCfg, "POST", req.URL())
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		pr, pw := io.Pipe()
		go func() {
			err := ex.StreamWithContext(actx, remotecommand.StreamOptions{Stdout: pw, Stderr: io.Discard})
			pw.CloseWithError(fmt.Errorf("attach ended: %v", err))
		}()
		sc := bufio.NewScanner(pr)
		var got []string
		for len(got) < 3 && sc.Scan() {
			got = append(got, sc.Text())
		}
		cancel()
		pr.Close()
		if len(got) < 3 {
			t.Fatalf("attached output %q: %v", got, sc.Err())
		}
		for _, l := range got {
			if !strings.HasPrefix(l, "line-") {
				t.Fatalf("attached output %q", got)
			}
		}
	})

	t.Run("pods/exec reports a failing command's exit code", func(t *testing.T) {
		req := n.Admin.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("counter").SubResource("exec").
			VersionedParams(&v1.PodExecOptions{Container: "main", Command: []string{"sh", "-c", "exit 3"}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
		ex, err := remotecommand.NewSPDYExecutor(n.AdminCfg, "POST", req.URL())
		if err != nil {
			t.Fatal(err)
		}
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err = ex.StreamWithContext(ectx, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "3") {
			t.Fatalf("err = %v, want exit code 3", err)
		}
	})
}

func TestPortForwardPreviousLogsAndRotation(t *testing.T) {
	n := kubeletharness.Start(t, func(cfg map[string]any) {
		// Small enough that a chatty pod's log rotates at the first 10s check.
		cfg["containerLogMaxSize"] = "4Ki"
		cfg["containerLogMaxFiles"] = 2
	})
	ctx := context.Background()
	ns := n.Namespace(t, "pf")

	t.Run("pods/portforward reaches the pod's port", func(t *testing.T) {
		n.RunSpec(t, ns, "echo", v1.PodSpec{Containers: []v1.Container{{Name: "echo", Image: images.Echo, ImagePullPolicy: v1.PullIfNotPresent}}})
		rt, upgrader, err := spdy.RoundTripperFor(n.AdminCfg)
		if err != nil {
			t.Fatal(err)
		}
		u := n.Admin.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("echo").SubResource("portforward").URL()
		dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, "POST", u)
		stop, ready := make(chan struct{}), make(chan struct{})
		var errOut bytes.Buffer
		fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:8080"}, stop, ready, io.Discard, &errOut)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- fw.ForwardPorts() }()
		defer func() { close(stop); <-done }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("port-forward: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("port-forward not ready")
		}
		ports, err := fw.GetPorts()
		if err != nil || len(ports) != 1 {
			t.Fatalf("ports %v: %v", ports, err)
		}
		var body string
		kubeletharness.Eventually(t, 20*time.Second, "GET through the forwarded port", func() error {
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local))
			if err != nil {
				return fmt.Errorf("%v (%s)", err, errOut.String())
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = strings.TrimSpace(string(b))
			if body != "echo" {
				return fmt.Errorf("answer %q, want the pod's hostname", body)
			}
			return nil
		})
	})

	t.Run("previous=true returns the last run's log", func(t *testing.T) {
		// Each run counts itself in an emptyDir, prints its number and fails after a second.
		script := "n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo run-$n; sleep 1; exit 1"
		n.RunSpec(t, ns, "crasher", v1.PodSpec{
			Volumes: []v1.Volume{{Name: "d", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}},
			Containers: []v1.Container{{Name: "main", Image: images.Busybox, ImagePullPolicy: v1.PullIfNotPresent, Command: []string{"sh", "-c", script},
				VolumeMounts: []v1.VolumeMount{{Name: "d", MountPath: "/d"}}}},
		})
		kubeletharness.Eventually(t, 60*time.Second, "previous log is the run before the current one", func() error {
			cur, err := n.Admin.CoreV1().Pods(ns).GetLogs("crasher", &v1.PodLogOptions{Container: "main"}).DoRaw(ctx)
			if err != nil {
				return fmt.Errorf("current: %w", err)
			}
			prev, err := n.Admin.CoreV1().Pods(ns).GetLogs("crasher", &v1.PodLogOptions{Container: "main", Previous: true}).DoRaw(ctx)
			if err != nil {
				return fmt.Errorf("previous: %w", err)
			}
			c, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(string(cur)), "run-"))
			p, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(string(prev)), "run-"))
			if p < 1 || c != p+1 {
				return fmt.Errorf("current %q, previous %q", cur, prev)
			}
			return nil
		})
	})

	t.Run("follow goes on across log rotation without losing lines", func(t *testing.T) {
		pod := n.RunPod(t, ns, "chatty", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo chatty-line-$i; sleep 0.02; done")
		logDir := filepath.Join(n.RootDir, "logs", "pods", ns+"_chatty_"+string(pod.UID), "main")
		fctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		rc, err := n.Admin.CoreV1().Pods(ns).GetLogs("chatty", &v1.PodLogOptions{Container: "main", Follow: true}).Stream(fctx)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		last, rotations, seenAt := 0, 0, 0
		for sc.Scan() {
			k, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "chatty-line-"))
			if err != nil {
				t.Fatalf("unexpected line %q", sc.Text())
			}
			if k != last+1 {
				t.Fatalf("after line %d came line %d: lines lost or repeated (rotations so far: %d)", last, k, rotations)
			}
			last = k
			if k%20 == 0 && rotations == 0 {
				rotated, _ := filepath.Glob(filepath.Join(logDir, "0.log.*"))
				if rotations = len(rotated); rotations > 0 {
					seenAt = k
				}
			}
			// Well past the rotation (the follower switches files within its poll): done.
			if rotations > 0 && k > seenAt+100 {
				break
			}
		}
		if rotations == 0 {
			t.Fatalf("the log never rotated (followed to line %d; %v)", last, sc.Err())
		}
		// containerLogMaxFiles 2: the current file and at most one rotated one.
		rotated, _ := filepath.Glob(filepath.Join(logDir, "0.log.*"))
		if len(rotated) > 1 {
			t.Errorf("%d rotated files kept, want at most 1: %v", len(rotated), rotated)
		}
	})
}

// kubeletClient is an HTTPS client for the kubelet that trusts its self-signed certificate for
// the node IP (so the certificate is proven to name it), with an optional client certificate.
func kubeletClient(t *testing.T, n *kubeletharness.Node, withAdminCert bool) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(n.StateDir, "kubelet", "pki", "kubelet.crt"))
	if err != nil {
		t.Fatalf("self-signed serving certificate: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("kubelet.crt holds no certificate")
	}
	tc := &tls.Config{RootCAs: pool, ServerName: n.NodeIP}
	if withAdminCert {
		ac, err := rest.TLSConfigFor(n.AdminCfg)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates, tc.GetClientCertificate = ac.Certificates, ac.GetClientCertificate
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

func get(t *testing.T, n *kubeletharness.Node, c *http.Client, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "https://"+net.JoinHostPort(n.NodeIP, strconv.Itoa(n.Port))+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func saToken(t *testing.T, n *kubeletharness.Node, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(600)
	tr, err := n.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func TestDirectAccessIsAuthenticatedAndAuthorized(t *testing.T) {
	n := kubeletharness.Start(t, nil)
	ctx := context.Background()
	ns := n.Namespace(t, "authz")
	pod := n.RunPod(t, ns, "sleeper", "trap 'exit 0' TERM; while true; do sleep 1; done")

	plain := kubeletClient(t, n, false)
	withCert := kubeletClient(t, n, true)
	denied := saToken(t, n, ns, "nobody")
	granted := saToken(t, n, ns, "proxy-reader")
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelet-proxy-" + ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get"}}},
	}
	if _, err := n.Admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "proxy-reader"}},
	}
	if _, err := n.Admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		client *http.Client
		token  string
		path   string
		want   int
	}{
		{"no credentials", plain, "", "/pods", http.StatusUnauthorized},
		{"garbage token", plain, "not-a-token", "/pods", http.StatusUnauthorized},
		{"service account without RBAC", plain, denied, "/pods", http.StatusForbidden},
		{"service account granted nodes/proxy", plain, granted, "/pods", http.StatusOK},
		{"nodes/proxy does not grant nodes/stats", plain, granted, "/stats/summary", http.StatusForbidden},
		{"admin certificate: pods", withCert, "", "/pods", http.StatusOK},
		{"admin certificate: stats", withCert, "", "/stats/summary", http.StatusOK},
		{"admin certificate: metrics", withCert, "", "/metrics", http.StatusOK},
		{"admin certificate: healthz", withCert, "", "/healthz", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			var body string
			// RBAC changes reach the authorizer's cache within a second or two.
			kubeletharness.Eventually(t, 15*time.Second, tc.path, func() error {
				code, body = get(t, n, tc.client, tc.path, tc.token)
				if code != tc.want {
					return fmt.Errorf("status %d (%s), want %d", code, strings.TrimSpace(body), tc.want)
				}
				return nil
			})
			if tc.want == http.StatusOK && tc.path == "/pods" && !strings.Contains(body, string(pod.UID)) {
				t.Errorf("/pods does not list the running pod %s: %.300s", pod.UID, body)
			}
			if tc.path == "/stats/summary" && tc.want == http.StatusOK && !strings.Contains(body, `"nodeName":"`+n.Name+`"`) {
				t.Errorf("summary does not name the node: %.300s", body)
			}
			if tc.path == "/metrics" && !strings.Contains(body, "kubelet_http_requests_total") {
				t.Errorf("metrics lack kubelet_http_requests_total: %.300s", body)
			}
		})
	}
}
