package charts

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubenode/kubenode/e2e/cluster"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

const (
	kubeSystem = "kube-system"
	// The API server's kubelet client certificate's CN in e2e/cluster, as kubeadm names it.
	apiServerKubeletClient = "kube-apiserver-kubelet-client"
)

// object is one installed object, read back by kind and name.
type object struct {
	kind, name string
	get        func(ctx context.Context) (metav1.Object, error)
}

func proxyObjects(cs kubernetes.Interface) []object {
	return []object{
		{"DaemonSet", "kube-proxy", func(ctx context.Context) (metav1.Object, error) {
			return cs.AppsV1().DaemonSets(kubeSystem).Get(ctx, "kube-proxy", metav1.GetOptions{})
		}},
		{"ConfigMap", "kube-proxy", func(ctx context.Context) (metav1.Object, error) {
			return cs.CoreV1().ConfigMaps(kubeSystem).Get(ctx, "kube-proxy", metav1.GetOptions{})
		}},
		{"ServiceAccount", "kube-proxy", func(ctx context.Context) (metav1.Object, error) {
			return cs.CoreV1().ServiceAccounts(kubeSystem).Get(ctx, "kube-proxy", metav1.GetOptions{})
		}},
		{"ClusterRole", "kube-proxy", func(ctx context.Context) (metav1.Object, error) {
			return cs.RbacV1().ClusterRoles().Get(ctx, "kube-proxy", metav1.GetOptions{})
		}},
		{"ClusterRoleBinding", "kube-proxy", func(ctx context.Context) (metav1.Object, error) {
			return cs.RbacV1().ClusterRoleBindings().Get(ctx, "kube-proxy", metav1.GetOptions{})
		}},
	}
}

func kubeletObjects(cs kubernetes.Interface) []object {
	return []object{
		{"ConfigMap", "kubelet-config", func(ctx context.Context) (metav1.Object, error) {
			return cs.CoreV1().ConfigMaps(kubeSystem).Get(ctx, "kubelet-config", metav1.GetOptions{})
		}},
		{"ClusterRoleBinding", "kubelet-apiserver-kubelet-client", func(ctx context.Context) (metav1.Object, error) {
			return cs.RbacV1().ClusterRoleBindings().Get(ctx, "kubelet-apiserver-kubelet-client", metav1.GetOptions{})
		}},
	}
}

// resourceVersions reads every object; a changed resourceVersion means the object was written.
func resourceVersions(t *testing.T, objs []object) map[string]string {
	t.Helper()
	rv := map[string]string{}
	for _, o := range objs {
		m, err := o.get(context.Background())
		if err != nil {
			t.Fatalf("%s %s: %v", o.kind, o.name, err)
		}
		rv[o.kind+"/"+o.name] = m.GetResourceVersion()
	}
	return rv
}

// waitGone waits until none of objs can be found.
func waitGone(t *testing.T, objs []object) {
	t.Helper()
	for _, o := range objs {
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := o.get(ctx)
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			t.Errorf("%s %s still exists after uninstall", o.kind, o.name)
		}
	}
}

// access asks the API server whether user (in groups) may do verb on group/resource[/sub].
func access(t *testing.T, cs kubernetes.Interface, user string, groups []string, verb, group, resource, sub string) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: groups,
			ResourceAttributes: &authzv1.ResourceAttributes{
				Verb: verb, Group: group, Resource: resource, Subresource: sub, Namespace: "",
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	return r.Status.Allowed
}

// releaseRevision is the release's current revision as `helm status` reports it.
func releaseRevision(t *testing.T, h helmRunner, kubeconfig, release string) int {
	t.Helper()
	out := h.mustRun(t, "status", release, "--namespace", kubeSystem, "--kubeconfig", kubeconfig, "--output", "json")
	var st struct {
		Version int `json:"version"`
		Info    struct {
			Status string `json:"status"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("helm status %s: %v: %s", release, err, out)
	}
	if st.Info.Status != "deployed" {
		t.Errorf("release %s is %q, want deployed", release, st.Info.Status)
	}
	return st.Version
}

// startControlPlane runs the control plane from $KUBENODE_CONTROLPLANE_BIN with its state under
// dir until the test ends, and returns it with an admin client. Without the binary the test is
// skipped: make test-charts builds it.
func startControlPlane(t *testing.T, dir string) (*cluster.Cluster, kubernetes.Interface) {
	t.Helper()
	bin := os.Getenv(cluster.BinaryEnv)
	if bin == "" {
		t.Skip(cluster.BinaryEnv + " not set: run through make test-charts (it builds the control plane with make controlplane)")
	}
	c, err := cluster.Start(context.Background(), cluster.Options{Binary: bin, StateDir: filepath.Join(dir, "controlplane")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Logf("control plane stop: %v", err)
		}
	})
	cs, _, err := c.Client(c.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	return c, cs
}

// Both charts install into a real control plane; upgrading kube-proxy's image changes its
// DaemonSet and nothing else, not even the kubelet chart's release; uninstall removes only the
// release's own objects; and the RBAC the charts ship grants what the components need.
func TestInstallUpgradeUninstall(t *testing.T) {
	h := newHelm(t)
	c, cs := startControlPlane(t, t.TempDir())
	kc := c.AdminKubeconfig()
	helm := func(args ...string) string {
		t.Helper()
		return h.mustRun(t, append(args, "--namespace", kubeSystem, "--kubeconfig", kc)...)
	}
	server, err := url.Parse(c.Server())
	if err != nil {
		t.Fatal(err)
	}

	canProxyNodes := func() bool {
		return access(t, cs, apiServerKubeletClient, nil, "get", "", "nodes", "proxy")
	}
	if canProxyNodes() {
		t.Fatalf("%s may use the kubelet API before the kubelet chart is installed: the check below proves nothing", apiServerKubeletClient)
	}

	helm("install", "kubelet", chartDir(t, "kubelet"))
	if !canProxyNodes() {
		t.Errorf("after installing the kubelet chart, %s may not get nodes/proxy (kubectl logs/exec would be forbidden)", apiServerKubeletClient)
	}

	helm("install", "kube-proxy", chartDir(t, "kube-proxy"), "--set", "image.tag=v0.1.0-a,apiServer.host="+server.Hostname()+",apiServer.port="+server.Port())
	ds, err := cs.AppsV1().DaemonSets(kubeSystem).Get(context.Background(), "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kube-proxy DaemonSet after install: %v", err)
	}
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != "kubenode/kube-proxy:v0.1.0-a" {
		t.Errorf("installed image %q", img)
	}

	sa := "system:serviceaccount:" + kubeSystem + ":kube-proxy"
	saGroups := []string{"system:serviceaccounts", "system:serviceaccounts:" + kubeSystem, "system:authenticated"}
	for _, tc := range []struct {
		verb, group, resource string
		want                  bool
	}{
		{"list", "", "services", true},
		{"watch", "", "services", true},
		{"list", "discovery.k8s.io", "endpointslices", true},
		{"watch", "discovery.k8s.io", "endpointslices", true},
		{"get", "", "nodes", true},
		{"watch", "", "nodes", true},
		{"get", "", "secrets", false},
		{"list", "", "pods", false},
		{"update", "", "services", false},
		{"create", "discovery.k8s.io", "endpointslices", false},
		{"patch", "", "nodes", false},
	} {
		if got := access(t, cs, sa, saGroups, tc.verb, tc.group, tc.resource, ""); got != tc.want {
			t.Errorf("kube-proxy's ServiceAccount may %s %s/%s: %v, want %v", tc.verb, tc.group, tc.resource, got, tc.want)
		}
	}

	proxyBefore := resourceVersions(t, proxyObjects(cs))
	kubeletBefore := resourceVersions(t, kubeletObjects(cs))
	kubeletRevision := releaseRevision(t, h, kc, "kubelet")

	helm("upgrade", "kube-proxy", chartDir(t, "kube-proxy"), "--reuse-values", "--set", "image.tag=v0.1.0-b")
	ds, err = cs.AppsV1().DaemonSets(kubeSystem).Get(context.Background(), "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != "kubenode/kube-proxy:v0.1.0-b" {
		t.Errorf("image after upgrade %q, want kubenode/kube-proxy:v0.1.0-b", img)
	}
	if env := ds.Spec.Template.Spec.Containers[0].Env; len(env) != 3 || env[1].Value != server.Hostname() {
		t.Errorf("--reuse-values lost the API server address: env %+v", env)
	}
	proxyAfter := resourceVersions(t, proxyObjects(cs))
	for k, rv := range proxyBefore {
		changed := proxyAfter[k] != rv
		if want := k == "DaemonSet/kube-proxy"; changed != want {
			t.Errorf("%s written by the image upgrade: %v, want %v", k, changed, want)
		}
	}
	for k, rv := range resourceVersions(t, kubeletObjects(cs)) {
		if kubeletBefore[k] != rv {
			t.Errorf("kubelet release's %s changed by the kube-proxy upgrade", k)
		}
	}
	if got := releaseRevision(t, h, kc, "kube-proxy"); got != 2 {
		t.Errorf("kube-proxy release revision %d after one upgrade, want 2", got)
	}
	if got := releaseRevision(t, h, kc, "kubelet"); got != kubeletRevision {
		t.Errorf("kubelet release revision %d -> %d by the kube-proxy upgrade", kubeletRevision, got)
	}

	helm("uninstall", "kube-proxy", "--wait", "--timeout", "60s")
	waitGone(t, proxyObjects(cs))
	if got := resourceVersions(t, kubeletObjects(cs)); len(got) != len(kubeletBefore) {
		t.Errorf("kubelet release objects after uninstalling kube-proxy: %v", got)
	}
	helm("uninstall", "kubelet", "--wait", "--timeout", "60s")
	waitGone(t, kubeletObjects(cs))
	if canProxyNodes() {
		t.Errorf("%s may still use the kubelet API after the kubelet chart is uninstalled", apiServerKubeletClient)
	}
}
