// Package kubeletbench measures the kubelet the way an operator meets it: bin/kubelet as a
// process on real containerd + runc + CNI (e2e/nodeenv) and the local control plane
// (e2e/cluster), with images from e2e/images. One Run measures pod start latency for a burst of
// pods created already bound to the node against the same burst issued straight over CRI (the
// floor the kubelet cannot beat), all at once and paced K start calls at a time as the kubelet
// paces them, in alternating rounds, and the kubelet's memory and CPU when idle with no pods
// and with many.
package kubeletbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"

	"github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/kubeletharness"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// Options configure Run.
type Options struct {
	// KubeletBin is bin/kubelet. Required.
	KubeletBin string
	// ControlPlaneBin is the kube-controlplane program. Required.
	ControlPlaneBin string
	// ImageCacheDir holds the built test images. Required.
	ImageCacheDir string
	// Pods is the size of the start-up burst; default 30.
	Pods int
	// Rounds is how many floor bursts + kubelet burst rounds run, alternating; default 5. The
	// headline overhead is the median of the rounds' differences.
	Rounds int
	// PacedFloor is K, the cap on pod-starting CRI calls: it is written into the kubelet's
	// config as maxParallelPodStarts, and each round's paced floor burst keeps at most K start
	// calls in flight, so the two are paced alike. Nil means the kubelet's default for this
	// machine; 0 means no cap: an uncapped kubelet and no paced floor (the all-at-once floor
	// is then the like-for-like one).
	PacedFloor *int
	// IdlePods is the pod count of the second idle measurement; default 100. At least Pods.
	IdlePods int
	// Window is each idle measurement's length; default 60 s, one full default syncFrequency, so
	// periodic pod syncs are counted once whatever their phase.
	Window time.Duration
	// Settle is the wait before each idle window, so start-up work is not counted; default 15 s.
	Settle time.Duration
	// ProfileDir, when set, receives pprof profiles of the kubelet: CPU during the burst and
	// during the loaded idle window, heap at the end of it. The kubelet must be built with
	// testdata/pprof.go.overlay (make bench-kubelet-profile does).
	ProfileDir string
	Log        *zap.Logger
}

func (o *Options) validate() error {
	var errs []error
	if o.KubeletBin == "" {
		errs = append(errs, errors.New("kubelet binary: not set"))
	}
	if o.ControlPlaneBin == "" {
		errs = append(errs, errors.New("control plane binary: not set (make controlplane builds it)"))
	}
	if o.ImageCacheDir == "" {
		errs = append(errs, errors.New("image cache dir: not set"))
	}
	if o.Pods == 0 {
		o.Pods = 30
	}
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	if o.IdlePods == 0 {
		o.IdlePods = 100
	}
	if o.Window == 0 {
		o.Window = 60 * time.Second
	}
	if o.Settle == 0 {
		o.Settle = 15 * time.Second
	}
	if o.Pods < 1 {
		errs = append(errs, fmt.Errorf("pods: %d, must be at least 1", o.Pods))
	}
	if o.PacedFloor == nil {
		k := v1alpha1.EffectiveMaxParallelPodStarts(nil, runtime.NumCPU())
		o.PacedFloor = &k
	}
	if *o.PacedFloor < 0 {
		errs = append(errs, fmt.Errorf("paced floor: %d, must be 0 (no cap, no paced floor) or positive", *o.PacedFloor))
	}
	if o.Rounds < 1 {
		errs = append(errs, fmt.Errorf("rounds: %d, must be at least 1", o.Rounds))
	}
	if o.IdlePods < o.Pods {
		errs = append(errs, fmt.Errorf("idle pods: %d, must be at least pods (%d)", o.IdlePods, o.Pods))
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return errors.Join(errs...)
}

const (
	benchNamespace = "kubelet-bench"
	startTimeout   = 3 * time.Minute
)

// Run brings a node up, measures, and removes everything it made, also on failure.
func Run(ctx context.Context, o Options) (res Results, err error) {
	if err := o.validate(); err != nil {
		return res, err
	}
	log := o.Log
	res.Machine = ReadMachine()
	res.Pods = o.Pods
	k := *o.PacedFloor
	res.PacedK = k

	log.Info("starting registry, containerd and the control plane")
	n, err := startNode(ctx, o, log)
	if err != nil {
		return res, err
	}
	defer func() {
		if o.ProfileDir != "" {
			n.stopKubelet()
			if b, rerr := os.ReadFile(filepath.Join(n.stateDir, "kubelet.log")); rerr == nil {
				_ = os.WriteFile(filepath.Join(o.ProfileDir, "kubelet.log"), b, 0o644)
			}
		}
		log.Info("tearing down")
		if cerr := n.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
		}
	}()

	rs, err := nodeenv.Dial(ctx, n.env.Endpoint(), time.Minute)
	if err != nil {
		return res, err
	}
	defer rs.Close(context.Background())
	v, err := rs.Version(ctx, "v1")
	if err != nil {
		return res, fmt.Errorf("CRI Version: %w", err)
	}
	res.Runtime = v.GetRuntimeName() + " " + v.GetRuntimeVersion()
	// "Image present" for both halves: pull the one image (sandbox and container) up front.
	is, err := criclient.NewRemoteImageServiceBuilder().WithEndpoint(n.env.Endpoint()).WithConnectionTimeout(time.Minute).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		return res, fmt.Errorf("CRI image service: %w", err)
	}
	if _, err := is.PullImage(ctx, &runtimeapi.ImageSpec{Image: images.Pause}, nil, nil); err != nil {
		return res, fmt.Errorf("pull %s: %w", images.Pause, err)
	}

	// The first sandbox also creates the CNI bridge and the cgroup parents: a warm-up pod pays
	// for that (every burst after it finds them made), then one pod alone gives the uncontended
	// floor for context. Both run before the kubelet starts.
	floorLogs := filepath.Join(n.stateDir, "cri-floor-logs")
	for i := range 2 {
		single, err := criFloor(ctx, rs, 1, 0, images.Pause, n.cgroupRoot, floorLogs)
		if err != nil {
			return res, err
		}
		if i == 1 {
			res.CRISingle = single[0].started
		}
	}

	if err := n.namespace(ctx, benchNamespace); err != nil {
		return res, err
	}
	var prof *profiler
	var env []string
	if o.ProfileDir != "" {
		port, err := kubeletharness.FreePort()
		if err != nil {
			return res, err
		}
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return res, fmt.Errorf("profile dir: %w", err)
		}
		prof = &profiler{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: o.ProfileDir}
		env = append(env, "KUBENODE_PPROF_ADDR="+prof.addr)
	}
	log.Info("starting the kubelet", zap.String("node", n.name), zap.Int("maxParallelPodStarts", k))
	// Profiling runs log at V(3), where client-go names every request its rate limiter held
	// back for more than 50 ms; the log is kept in the profile dir.
	verbosity := 0
	if prof != nil {
		verbosity = 3
	}
	if err := n.startKubelet(o.KubeletBin, o.IdlePods+10, k, verbosity, env...); err != nil {
		return res, err
	}
	if err := n.waitNodeReady(ctx, 2*time.Minute); err != nil {
		return res, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w, err := watchPods(wctx, n.admin, benchNamespace)
	if err != nil {
		return res, err
	}
	pid := n.kubelet.Pid()

	log.Info("idle, no pods", zap.Duration("settle", o.Settle), zap.Duration("window", o.Window))
	if err := sleep(ctx, o.Settle); err != nil {
		return res, err
	}
	u, err := measureIdle(ctx, pid, 0, o.Window, n.kubeletAlive)
	if err != nil {
		return res, err
	}
	res.Idle = append(res.Idle, u)

	// Rounds alternate the floor bursts (all at once, then paced) with a kubelet burst, each
	// alone on the node: each floor's pods are removed before the next burst, and the kubelet's pods deleted and torn down
	// before the next floor. The kubelet keeps running through the floor bursts: it ignores
	// sandboxes and containers without the io.kubernetes.pod.uid label (kubelet/internal/runtime
	// skips them when listing), so it neither adopts nor kills the floor's pods, and its
	// cgroup and volume cleanup are keyed by the UIDs it knows.
	var made []created
	for round := 1; round <= o.Rounds; round++ {
		log.Info("CRI floor burst", zap.Int("round", round), zap.Int("pods", o.Pods))
		floor, err := criFloor(ctx, rs, o.Pods, 0, images.Pause, n.cgroupRoot, floorLogs)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		var floorStarted, pacedStarted []time.Duration
		for _, f := range floor {
			floorStarted = append(floorStarted, f.started)
			res.CRIFloorCreated = append(res.CRIFloorCreated, f.created)
		}
		res.CRIFloor = append(res.CRIFloor, floorStarted...)
		if k > 0 {
			log.Info("paced CRI floor burst", zap.Int("round", round), zap.Int("pods", o.Pods), zap.Int("atATime", k))
			paced, err := criFloor(ctx, rs, o.Pods, k, images.Pause, n.cgroupRoot, floorLogs)
			if err != nil {
				return res, fmt.Errorf("round %d: paced: %w", round, err)
			}
			for _, f := range paced {
				pacedStarted = append(pacedStarted, f.started)
			}
			res.CRIFloorPaced = append(res.CRIFloorPaced, pacedStarted...)
		}

		log.Info("kubelet burst", zap.Int("round", round), zap.Int("pods", o.Pods))
		burst := make([]*v1.Pod, o.Pods)
		for i := range burst {
			burst[i] = benchPod(benchNamespace, fmt.Sprintf("start-r%d-%02d", round, i), n.name, images.Pause)
		}
		if round == o.Rounds {
			// The profile covers the last burst only, which is not deleted below.
			prof.fetch(ctx, "profile?seconds=15", "burst-cpu.pprof")
		}
		made, err = createPods(ctx, n.admin, burst, 0)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		readyAt, err := waitReady(ctx, w, made, startTimeout, n.kubeletAlive)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		createdAt, runAt, err := runningAt(ctx, rs, made, 1)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		toRunning := latencies(made, runAt)
		res.BoundToRunning = append(res.BoundToRunning, toRunning...)
		res.BoundToReady = append(res.BoundToReady, latencies(made, readyAt)...)
		res.BoundToCreated = append(res.BoundToCreated, latencies(made, createdAt)...)
		res.RunningToReady = append(res.RunningToReady, between(made, runAt, readyAt)...)
		res.CreateSpread = max(res.CreateSpread, spread(made))
		rd := newRound(toRunning, floorStarted, pacedStarted)
		res.Rounds = append(res.Rounds, rd)
		log.Info("round done", zap.Int("round", round), zap.Duration("floorP50", rd.FloorP50), zap.Duration("pacedFloorP50", rd.PacedFloorP50),
			zap.Duration("kubeletP50", rd.KubeletP50), zap.Duration("over", rd.Over()), zap.Duration("overPaced", rd.OverPaced()))

		if round == o.Rounds {
			break // the last burst's pods stay: the idle measurement below fills up from them
		}
		t0 := time.Now()
		if err := n.deletePods(ctx, w, benchNamespace, 3*time.Minute); err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		if err := waitSandboxesGone(ctx, rs, made, 3*time.Minute, n.kubeletAlive); err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		log.Info("burst torn down", zap.Int("round", round), zap.Duration("took", time.Since(t0)))
	}

	more := o.IdlePods - o.Pods
	log.Info("filling the node", zap.Int("pods", more))
	fill := make([]*v1.Pod, more)
	for i := range fill {
		fill[i] = benchPod(benchNamespace, fmt.Sprintf("idle-%03d", i), n.name, images.Pause)
	}
	filled, err := createPods(ctx, n.admin, fill, 20)
	if err != nil {
		return res, err
	}
	if _, err := waitReady(ctx, w, filled, startTimeout, n.kubeletAlive); err != nil {
		return res, err
	}
	log.Info("idle with pods", zap.Int("pods", o.IdlePods), zap.Duration("settle", o.Settle), zap.Duration("window", o.Window))
	if err := sleep(ctx, o.Settle); err != nil {
		return res, err
	}
	_, restartsBefore := w.count()
	prof.fetch(ctx, fmt.Sprintf("profile?seconds=%d", int(o.Window.Seconds())), "idle-cpu.pprof")
	u, err = measureIdle(ctx, pid, o.IdlePods, o.Window, n.kubeletAlive)
	if err != nil {
		return res, err
	}
	res.Idle = append(res.Idle, u)
	if err := prof.wait(); err != nil {
		return res, err
	}
	prof.fetch(ctx, "heap", "idle-heap.pprof")
	prof.fetch(ctx, "goroutine", "idle-goroutine.pprof")
	if err := prof.wait(); err != nil {
		return res, err
	}
	if _, notReady := w.ready(uidsOf(append(made, filled...))); len(notReady) > 0 {
		// Churn would be counted as idle cost: say so rather than print a misleading figure.
		return res, fmt.Errorf("%d pods not Ready after the idle window: %s", len(notReady), w.describe(notReady))
	}
	if _, restarts := w.count(); restarts != restartsBefore {
		log.Warn("containers restarted during the idle window", zap.Int("restarts", restarts-restartsBefore))
	}

	log.Info("deleting the pods")
	t0 := time.Now()
	if err := n.deletePods(ctx, w, benchNamespace, 3*time.Minute); err != nil {
		return res, err
	}
	log.Info("pods deleted", zap.Int("pods", o.IdlePods), zap.Duration("took", time.Since(t0)))
	res.LoadAvgEnd = ReadMachine().LoadAvg
	return res, nil
}

func uidsOf(pods []created) []types.UID {
	out := make([]types.UID, len(pods))
	for i, p := range pods {
		out[i] = p.uid
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// namespace creates ns and waits for what every pod in it needs: the default service account
// and the kube-root-ca.crt ConfigMap its token volume reads.
func (n *node) namespace(ctx context.Context, ns string) error {
	if _, err := n.admin.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return poll(ctx, time.Minute, "service account and root CA of namespace "+ns, func() error {
		if _, err := n.admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err := n.admin.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
}

func (n *node) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, "node "+n.name+" Ready", func() error {
		if err := n.kubeletAlive(); err != nil {
			return backoffStop{err}
		}
		nd, err := n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range nd.Status.Conditions {
			if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready")
	})
}

// deletePods deletes every pod of ns and waits until the kubelet has confirmed each deletion
// (the API objects are gone once it reports the pods' containers stopped).
func (n *node) deletePods(ctx context.Context, w *readyWatch, ns string, timeout time.Duration) error {
	if err := n.admin.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("delete pods in %s: %w", ns, err)
	}
	return poll(ctx, timeout, "pods of "+ns+" deleted", func() error {
		if err := n.kubeletAlive(); err != nil {
			return backoffStop{err}
		}
		if left, _ := w.count(); left > 0 {
			return fmt.Errorf("%d pods left", left)
		}
		return nil
	})
}

// backoffStop ends a poll at once.
type backoffStop struct{ error }

func poll(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop backoffStop
		if errors.As(err, &stop) {
			return fmt.Errorf("%s: %w", what, stop.error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, timeout, err)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}
