package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// The demo: three echo pods behind a ClusterIP and a NodePort Service in the default namespace.
const (
	demoName         = "echo"
	demoNodePortName = "echo-nodeport"
	demoNamespace    = "default"
	demoReplicas     = 3
	demoPort         = 8080
	// Fixed, so that the printed commands are always the same.
	demoClusterIP = "10.96.0.80"
	demoNodePort  = 30080
)

// Bounds of the waits up does for the node and the demo.
const (
	nodeReadyTimeout  = 2 * time.Minute
	demoReadyTimeout  = 3 * time.Minute
	demoAnswerTimeout = time.Minute
)

// demoURLs are the demo's addresses as seen from this host.
type demoURLs struct {
	ClusterIP string
	NodePort  string
}

// readyNodeAndDemo waits for the Node to be Ready, then deploys the demo and waits until it
// answers from every pod through both Services.
func readyNodeAndDemo(ctx context.Context, f nodeFacts, log *zap.Logger) error {
	if !haveAgents(f.BinDir) {
		log.Info("no bin/kubelet and bin/kube-proxy in the bin dir: no node agents, no demo", zap.String("binDir", f.BinDir))
		return nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", f.AdminKubeconfig)
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := waitNodeReady(ctx, cs, f.NodeName); err != nil {
		return fmt.Errorf("node %s: %w (see logs/kubelet.log)", f.NodeName, err)
	}
	log.Info("node ready", zap.Duration("took", time.Since(start)))
	if _, err := deployDemo(ctx, cs, nodeenv.HostIP(), log); err != nil {
		return fmt.Errorf("demo: %w (see logs/kubelet.log and logs/kube-proxy.log)", err)
	}
	log.Info("demo answers", zap.Duration("took", time.Since(start)))
	return nil
}

// waitNodeReady waits until the Node reports Ready.
func waitNodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	return poll(ctx, nodeReadyTimeout, time.Second, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready", name)
	})
}

// deployDemo creates (or keeps) the demo objects, waits for all replicas to be ready and both
// Services to answer from every pod, and returns their URLs.
func deployDemo(ctx context.Context, cs kubernetes.Interface, nodeIP string, log *zap.Logger) (demoURLs, error) {
	labels := map[string]string{"app": demoName}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: demoName, Namespace: demoNamespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptrTo(int32(demoReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{
					TerminationGracePeriodSeconds: ptrTo(int64(5)),
					Containers: []v1.Container{{
						Name:            "echo",
						Image:           images.Echo,
						ImagePullPolicy: v1.PullIfNotPresent,
						Ports:           []v1.ContainerPort{{Name: "http", ContainerPort: demoPort}},
						ReadinessProbe: &v1.Probe{
							ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(demoNamespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return demoURLs{}, fmt.Errorf("demo deployment: %w", err)
	}
	svc := func(name string, typ v1.ServiceType) *v1.Service {
		s := &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: demoNamespace},
			Spec: v1.ServiceSpec{
				Type:     typ,
				Selector: labels,
				Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: v1.ProtocolTCP}},
			},
		}
		if typ == v1.ServiceTypeNodePort {
			s.Spec.Ports[0].NodePort = demoNodePort
		} else {
			s.Spec.ClusterIP = demoClusterIP
		}
		return s
	}
	var urls demoURLs
	for _, s := range []*v1.Service{svc(demoName, v1.ServiceTypeClusterIP), svc(demoNodePortName, v1.ServiceTypeNodePort)} {
		got, err := cs.CoreV1().Services(demoNamespace).Create(ctx, s, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = cs.CoreV1().Services(demoNamespace).Get(ctx, s.Name, metav1.GetOptions{})
		}
		if err != nil {
			return demoURLs{}, fmt.Errorf("demo service %s: %w", s.Name, err)
		}
		if s.Spec.Type == v1.ServiceTypeNodePort {
			urls.NodePort = fmt.Sprintf("http://%s:%d/", nodeIP, got.Spec.Ports[0].NodePort)
		} else {
			urls.ClusterIP = fmt.Sprintf("http://%s:80/", got.Spec.ClusterIP)
		}
	}

	var pods []string
	err := poll(ctx, demoReadyTimeout, time.Second, func() error {
		var err error
		pods, err = readyPods(ctx, cs, labels)
		if err != nil {
			return err
		}
		if len(pods) != demoReplicas {
			return fmt.Errorf("%d of %d echo pods ready: %v", len(pods), demoReplicas, pods)
		}
		return nil
	})
	if err != nil {
		return demoURLs{}, fmt.Errorf("demo pods: %w", err)
	}
	log.Info("demo pods ready", zap.Strings("pods", pods))
	for _, u := range []string{urls.ClusterIP, urls.NodePort} {
		if err := answersFromAll(ctx, u, pods); err != nil {
			return demoURLs{}, err
		}
		log.Info("demo answers from every pod", zap.String("url", u))
	}
	return urls, nil
}

func readyPods(ctx context.Context, cs kubernetes.Interface, labels map[string]string) ([]string, error) {
	list, err := cs.CoreV1().Pods(demoNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + labels["app"]})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodReady && c.Status == v1.ConditionTrue {
				out = append(out, p.Name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// answersFromAll sends requests to url (one connection each, so each is balanced anew) until
// every pod has answered; bounded in time and count.
func answersFromAll(ctx context.Context, url string, pods []string) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	missing := map[string]bool{}
	for _, p := range pods {
		missing[p] = true
	}
	var last error
	deadline := time.Now().Add(demoAnswerTimeout)
	// Paced, so a pod whose readiness flaps briefly on a loaded machine (and so leaves the
	// endpoints for a moment) is still found within the deadline rather than after the count.
	for i := 0; i < 3000 && len(missing) > 0 && time.Now().Before(deadline); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		resp, err := hc.Get(url)
		if err != nil {
			last = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		delete(missing, strings.TrimSpace(string(b)))
		time.Sleep(15 * time.Millisecond)
	}
	if len(missing) > 0 {
		var m []string
		for p := range missing {
			m = append(m, p)
		}
		sort.Strings(m)
		return fmt.Errorf("demo %s: no answer from %v (last error: %v)", url, m, last)
	}
	return nil
}

func poll(ctx context.Context, timeout, every time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// demoInstructions tells how to reach the demo when the node agents run (and so up deployed it).
func demoInstructions(processes []string) string {
	if len(processes) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Demo:          deployment/%s (%d pods of %s) behind service/%s and service/%s\n", demoName, demoReplicas, images.Echo, demoName, demoNodePortName)
	fmt.Fprintf(&b, "  curl http://%s/            # ClusterIP; answers with a pod's name\n", demoClusterIP)
	fmt.Fprintf(&b, "  curl http://%s:%d/       # NodePort\n", nodeenv.HostIP(), demoNodePort)
	fmt.Fprintf(&b, "  kubectl get nodes,pods,svc,endpointslices -o wide\n")
	return b.String()
}
