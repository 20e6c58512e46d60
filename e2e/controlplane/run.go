package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kubenode/kubenode/e2e/controlplane/internal/pki"
)

type config struct {
	StateDir         string
	APIServerPort    int
	EtcdPort         int
	EtcdPeerPort     int
	AdvertiseAddress string
	EtcdNoFsync      bool
	ClusterCIDR      string
	NoScheduler      bool
}

// Fixed cluster facts the node agents and tests rely on.
const (
	serviceCIDR    = "10.96.0.0/16"
	serviceVIP     = "10.96.0.1"
	clusterDomain  = "cluster.local"
	saIssuer       = "https://kubernetes.default.svc." + clusterDomain
	readyTimeout   = 2 * time.Minute
	stopStepBudget = 10 * time.Second
)

// Ports is what ports.json holds.
type Ports struct {
	APIServer int `json:"apiserver"`
	Etcd      int `json:"etcd"`
	EtcdPeer  int `json:"etcdPeer"`
}

// paths of files in the state directory.
type paths struct{ dir string }

func (p paths) pki() string                   { return filepath.Join(p.dir, "pki") }
func (p paths) etcd() string                  { return filepath.Join(p.dir, "etcd") }
func (p paths) kubeconfig(name string) string { return filepath.Join(p.dir, name+".kubeconfig") }
func (p paths) ready() string                 { return filepath.Join(p.dir, "ready") }
func (p paths) pid() string                   { return filepath.Join(p.dir, "kube-controlplane.pid") }
func (p paths) ports() string                 { return filepath.Join(p.dir, "ports.json") }

var identities = []pki.Identity{
	{Name: "admin", CN: "kubernetes-admin", Orgs: []string{"system:masters"}},
	// Bootstrap RBAC binds this user to system:node-proxier.
	{Name: "kube-proxy", CN: "system:kube-proxy"},
	{Name: "controller-manager", CN: "system:kube-controller-manager"},
	{Name: "scheduler", CN: "system:kube-scheduler"},
	// kube-apiserver's identity towards kubelets (logs, exec, port-forward).
	{Name: "apiserver-kubelet-client", CN: "kube-apiserver-kubelet-client", Orgs: []string{"system:masters"}},
}

func run(ctx context.Context, cfg config) error {
	p := paths{dir: cfg.StateDir}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	// A ready marker from an earlier run must not fool a waiter.
	if err := os.Remove(p.ready()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale ready marker: %w", err)
	}
	if err := os.WriteFile(p.pid(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	defer os.Remove(p.pid())
	defer os.Remove(p.ready())

	ports, err := choosePorts(cfg)
	if err != nil {
		return err
	}
	if err := writeJSON(p.ports(), ports); err != nil {
		return err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(ports.APIServer)
	if err := setupPKI(p, server); err != nil {
		return err
	}

	start := time.Now()
	etcd, err := startEtcd(p.etcd(), ports, cfg.EtcdNoFsync)
	if err != nil {
		return err
	}
	defer etcd.closeWithin(stopStepBudget)
	klog.InfoS("etcd ready", "port", ports.Etcd, "elapsed", time.Since(start))

	// Each component gets its own context so shutdown can go in reverse order:
	// controllers first, then the apiserver they talk to, then etcd.
	apiCtx, apiCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer apiCancel()
	apiDone := make(chan error, 1)
	apiOpts, err := apiserverOptions(p, cfg, ports)
	if err != nil {
		return err
	}
	go func() { apiDone <- runAPIServer(apiCtx, apiOpts) }()

	admin, err := clientFor(p.kubeconfig("admin"))
	if err != nil {
		return err
	}
	if err := waitReadyz(ctx, admin, apiDone); err != nil {
		return err
	}
	klog.InfoS("kube-apiserver ready", "server", server, "elapsed", time.Since(start))

	ctrlCtx, ctrlCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer ctrlCancel()
	ctrlDone := make(chan error, 2)
	kcm, err := controllerManagerConfig(ctrlCtx, p, cfg)
	if err != nil {
		return err
	}
	go func() { ctrlDone <- runControllerManager(ctrlCtx, kcm) }()
	running := 1
	if !cfg.NoScheduler {
		sched, err := schedulerSetup(ctrlCtx, p)
		if err != nil {
			return err
		}
		go func() { ctrlDone <- runScheduler(ctrlCtx, sched) }()
		running++
	}

	if err := waitControllers(ctx, admin, apiDone, ctrlDone); err != nil {
		return err
	}
	if err := writeFileAtomic(p.ready(), []byte(server+"\n")); err != nil {
		return err
	}
	klog.InfoS("control plane ready", "server", server, "elapsed", time.Since(start))

	var runErr error
	select {
	case <-ctx.Done():
		klog.InfoS("shutting down")
	case err := <-apiDone:
		runErr = fmt.Errorf("kube-apiserver stopped: %w", err)
		apiDone <- nil
	case err := <-ctrlDone:
		runErr = fmt.Errorf("controllers stopped: %w", err)
		running--
	}
	os.Remove(p.ready())

	ctrlCancel()
	for ; running > 0; running-- {
		select {
		case <-ctrlDone:
		case <-time.After(stopStepBudget):
			klog.InfoS("controllers did not stop in time; going on")
			running = 0
		}
	}
	apiCancel()
	select {
	case <-apiDone:
	case <-time.After(stopStepBudget):
		klog.InfoS("kube-apiserver did not stop in time; going on")
	}
	return runErr
}

// choosePorts keeps requested ports and picks free ones for zeros.
func choosePorts(cfg config) (Ports, error) {
	ports := Ports{APIServer: cfg.APIServerPort, Etcd: cfg.EtcdPort, EtcdPeer: cfg.EtcdPeerPort}
	for _, pp := range []*int{&ports.APIServer, &ports.Etcd, &ports.EtcdPeer} {
		if *pp != 0 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports, fmt.Errorf("pick a free port: %w", err)
		}
		// Held until all are chosen so the three differ; the tiny window before the
		// components bind is acceptable for a test cluster.
		defer l.Close()
		*pp = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func setupPKI(p paths, server string) error {
	dir := p.pki()
	ca, err := pki.EnsureCA(dir)
	if err != nil {
		return err
	}
	err = ca.EnsureServing(dir, "apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceVIP)})
	if err != nil {
		return err
	}
	for _, id := range identities {
		if err := ca.EnsureClient(dir, id); err != nil {
			return err
		}
		if id.Name == "apiserver-kubelet-client" {
			continue
		}
		// Rewritten every start: the port may differ from the last run.
		if err := pki.WriteKubeconfig(p.kubeconfig(id.Name), server, dir, id.Name, ca.CertPEM); err != nil {
			return err
		}
	}
	return pki.EnsureServiceAccountKey(dir)
}

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", kubeconfig, err)
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("client from %s: %w", kubeconfig, err)
	}
	return c, nil
}

func waitReadyz(ctx context.Context, c kubernetes.Interface, apiDone chan error) error {
	return poll(ctx, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		select {
		case err := <-apiDone:
			return false, fmt.Errorf("kube-apiserver exited: %w", err)
		default:
		}
		status := 0
		c.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
		return status == http.StatusOK, nil
	})
}

// waitControllers waits for evidence that the controllers work: the
// serviceaccount controller's default ServiceAccount and the root CA
// publisher's ConfigMap in the default namespace, which every pod needs.
func waitControllers(ctx context.Context, c kubernetes.Interface, apiDone, ctrlDone chan error) error {
	return poll(ctx, "controllers (default ServiceAccount, kube-root-ca.crt)", func(ctx context.Context) (bool, error) {
		select {
		case err := <-apiDone:
			return false, fmt.Errorf("kube-apiserver exited: %w", err)
		case err := <-ctrlDone:
			return false, fmt.Errorf("controllers exited: %w", err)
		default:
		}
		if _, err := c.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			klog.V(2).InfoS("waiting for default ServiceAccount", "err", err)
			return false, nil
		}
		if _, err := c.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
			return false, nil
		}
		return true, nil
	})
}

func poll(ctx context.Context, what string, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, readyTimeout, true, cond)
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeFileAtomic(path, append(data, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
