package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	remote "k8s.io/cri-client/pkg"

	kubeletv1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/common/startqueue"
	"github.com/kubenode/kubenode/common/version"
	"github.com/kubenode/kubenode/kubelet/internal/admission"
	"github.com/kubenode/kubenode/kubelet/internal/cm"
	"github.com/kubenode/kubenode/kubelet/internal/eviction"
	"github.com/kubenode/kubenode/kubelet/internal/imagegc"
	"github.com/kubenode/kubenode/kubelet/internal/node"
	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/pleg"
	"github.com/kubenode/kubenode/kubelet/internal/podsource"
	"github.com/kubenode/kubenode/kubelet/internal/podsync"
	"github.com/kubenode/kubenode/kubelet/internal/podworkers"
	"github.com/kubenode/kubenode/kubelet/internal/probe"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
	"github.com/kubenode/kubenode/kubelet/internal/server"
	"github.com/kubenode/kubenode/kubelet/internal/status"
	"github.com/kubenode/kubenode/kubelet/internal/volume"
)

// run wires the kubelet and blocks until ctx is done. Running pods are left running when it
// returns: a restarted kubelet adopts them.
func run(ctx context.Context, o *Options, cfg *kubeletv1alpha1.KubeletConfiguration, log *zap.Logger) error {
	nodeName, err := o.NodeName()
	if err != nil {
		return err
	}
	log = log.With(zap.String("node", nodeName))
	if err := cm.CheckSwap("/proc/swaps", cfg.FailSwapOn == nil || *cfg.FailSwapOn); err != nil {
		return err
	}
	if err := cm.CheckCgroupDriver(cfg.CgroupDriver); err != nil {
		return err
	}
	rootDir, err := filepath.Abs(o.RootDir)
	if err != nil {
		return fmt.Errorf("root dir %q: %w", o.RootDir, err)
	}
	if err := os.MkdirAll(rootDir, 0o750); err != nil {
		return fmt.Errorf("create root dir: %w", err)
	}
	logRoot := filepath.Join(rootDir, "logs", "pods")
	if err := os.MkdirAll(logRoot, 0o755); err != nil {
		return fmt.Errorf("create pod log dir: %w", err)
	}

	// CRI.
	timeout := cfg.RuntimeRequestTimeout.Duration
	rs, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(cfg.ContainerRuntimeEndpoint).WithConnectionTimeout(timeout).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		return fmt.Errorf("connect to the container runtime at %s (containerRuntimeEndpoint): %w", cfg.ContainerRuntimeEndpoint, err)
	}
	imageEndpoint := cfg.ImageServiceEndpoint
	if imageEndpoint == "" {
		imageEndpoint = cfg.ContainerRuntimeEndpoint
	}
	is, err := remote.NewRemoteImageServiceBuilder().WithEndpoint(imageEndpoint).WithConnectionTimeout(timeout).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		return fmt.Errorf("connect to the image service at %s (imageServiceEndpoint): %w", imageEndpoint, err)
	}
	rt := runtime.New(rs, is, timeout, log.Named("runtime"))
	rtName, rtVersion, err := rt.Version(ctx)
	if err != nil {
		return err
	}
	log.Info("container runtime", zap.String("name", rtName), zap.String("version", rtVersion))

	// API client (none when standalone).
	var client, eventClient kubernetes.Interface
	if o.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return fmt.Errorf("kubeconfig %s: %w", o.Kubeconfig, err)
		}
		rc.UserAgent = "kubenode-kubelet/" + version.Get(Component).Version
		// Upstream's kubeAPIQPS/kubeAPIBurst: status patches, tokens, volume objects and the lease share it.
		rc.QPS, rc.Burst = 50, 100
		// Upstream's kubeAPIContentType default: protobuf costs the kubelet and the API server
		// less CPU than JSON for the pod watch, events and tokens, which matters while a burst
		// of pod starts shares the node's CPU with the runtime. Patches stay JSON.
		rc.ContentType = "application/vnd.kubernetes.protobuf"
		rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		client, err = kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("kubeconfig %s: %w", o.Kubeconfig, err)
		}
		// Events get their own limiter (upstream's eventRecordQPS/eventBurst) so a burst of pod
		// starts does not queue status patches and TokenRequests behind its events.
		erc := rest.CopyConfig(rc)
		erc.QPS, erc.Burst = 50, 100
		eventClient, err = kubernetes.NewForConfig(erc)
		if err != nil {
			return fmt.Errorf("kubeconfig %s: %w", o.Kubeconfig, err)
		}
	}

	// Node facts.
	machine, err := node.ReadMachine("/", rootDir)
	if err != nil {
		return err
	}
	capacity := machine.Capacity(int(cfg.MaxPods))
	sysRes, err := node.ParseResourceList("systemReserved", cfg.SystemReserved)
	if err != nil {
		return err
	}
	kubeRes, err := node.ParseResourceList("kubeReserved", cfg.KubeReserved)
	if err != nil {
		return err
	}
	evRes, err := node.EvictionReserve(cfg.EvictionHard, capacity)
	if err != nil {
		return err
	}
	allocatable := node.Allocatable(capacity, sysRes, kubeRes, evRes)
	thresholds, err := eviction.ParseThresholds(cfg.EvictionHard)
	if err != nil {
		return err
	}
	softThresholds, err := eviction.ParseSoftThresholds(cfg.EvictionSoft, cfg.EvictionSoftGracePeriod)
	if err != nil {
		return err
	}
	thresholds = append(thresholds, softThresholds...)
	hostIPs, err := nodeIPs(o)
	if err != nil {
		return err
	}
	hostDNS := runtime.HostDNS{}
	if cfg.ResolverConfig != nil && *cfg.ResolverConfig != "" {
		f, err := os.Open(*cfg.ResolverConfig)
		if err != nil {
			return fmt.Errorf("resolvConf: %w", err)
		}
		hostDNS, err = runtime.ParseResolvConf(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("resolvConf %s: %w", *cfg.ResolverConfig, err)
		}
	}
	nodeLabels := map[string]string{v1.LabelHostname: nodeName, v1.LabelOSStable: machine.OperatingSystem, v1.LabelArchStable: machine.Architecture}
	for k, v := range cfg.NodeLabels {
		nodeLabels[k] = v
	}

	// Desired pods -> workers.
	var workers *podworkers.Workers
	pods := podsource.NewManager(func(uid types.UID) {
		if workers != nil {
			workers.Trigger(uid)
		}
	})
	statuses := status.NewManager(client, log.Named("status"))
	api := apiAccess{client: client}
	vols := volume.NewManager(rootDir, api, func(pod *v1.Pod, path string) (string, error) {
		return runtime.FieldRef(pod, path, runtime.PodFacts{HostIPs: hostIPs, NodeName: nodeName}, allocatable)
	}, time.Now, log.Named("volume"))
	var cgroups podsync.Cgroups
	if cfg.CgroupsPerQOS != nil && *cfg.CgroupsPerQOS {
		cg, err := cm.NewCgroups("/sys/fs/cgroup", cfg.CgroupRoot, *cfg.PodPidsLimit)
		if err != nil {
			log.Warn("pod cgroups disabled", zap.Error(err))
		} else {
			cgroups = cg
		}
	}
	recorder, stopEvents := eventRecorder(eventClient, nodeName)
	defer stopEvents()

	var services *podsource.Services
	var serviceEnv podsync.Services
	var runtimeClasses *runtime.RuntimeClasses
	var runtimeClassGetter runtime.RuntimeClassGetter // stays a nil interface when standalone
	if client != nil {
		services = podsource.NewServices(client)
		serviceEnv = services
		runtimeClasses = runtime.NewRuntimeClasses(client)
		runtimeClassGetter = runtimeClasses
	}
	probes := probe.NewManager(rt, func(uid types.UID) {
		if workers != nil {
			workers.Trigger(uid)
		}
	}, log.Named("probe"))
	adm := &admitter{pods: pods, node: admission.Node{Name: nodeName, Labels: nodeLabels, Allocatable: allocatable}}
	// Evicted pods read as Failed/Evicted with the eviction's grace, so the ordinary sync kills them.
	evictions := eviction.NewEvictions(pods, func(uid types.UID) {
		if workers != nil {
			workers.Trigger(uid)
		}
	}, nil)
	podCache := pleg.NewCache()
	startSlots := kubeletv1alpha1.EffectiveMaxParallelPodStarts(cfg.MaxParallelPodStarts, machine.CPUs)
	log.Info("pod starts", zap.Int("maxParallelPodStarts", startSlots))
	var slots podsync.StartSlots
	if q := startqueue.New(startSlots); q != nil {
		slots = q
	}
	syncer, err := podsync.New(podsync.Deps{
		Pods: evictions, Runtime: rt, Cache: podCache, Images: runtime.NewParallelPuller(is, api, time.Now, runtime.MaxParallelPulls(cfg.SerializeImagePulls, cfg.MaxParallelImagePulls)), Objects: api,
		Volumes: vols, Cgroups: cgroups, Services: serviceEnv, Probes: probes, Admit: adm, Status: statuses, Deleter: api, Recorder: recorder,
		Node: podsync.Node{
			Name: nodeName, HostIPs: hostIPs, Allocatable: allocatable, RuntimeName: rtName,
			Facts: runtime.NodeFacts{
				DNS:     runtime.DNSSettings{ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain, Host: hostDNS},
				LogRoot: logRoot, MemoryCapacity: machine.MemoryBytes, NodeName: nodeName,
				PodsDir: filepath.Join(rootDir, "pods"),
			},
			Backoff: plan.BackoffConfig{
				Initial:    cfg.CrashLoopBackOff.InitialContainerRestartPeriod.Duration,
				Max:        cfg.CrashLoopBackOff.MaxContainerRestartPeriod.Duration,
				ResetAfter: 2 * cfg.CrashLoopBackOff.MaxContainerRestartPeriod.Duration,
			},
		},
		Log:            log.Named("sync"),
		RuntimeClasses: runtimeClassGetter,
		StartSlots:     slots,
		AllocationDir:  filepath.Join(rootDir, "allocation"),
	})
	if err != nil {
		return err
	}
	adm.syncer = syncer
	imageGC, err := imagegc.New(imagegc.Config{
		Policy: imagegc.Policy{
			HighPercent: int(*cfg.ImageGCHighThresholdPercent), LowPercent: int(*cfg.ImageGCLowThresholdPercent),
			MinAge: cfg.ImageMinimumGCAge.Duration,
		},
		SandboxImage: imagegc.SandboxImage(ctx, rs.Status),
	}, is, rs, statfs, time.Now, log.Named("imagegc"))
	if err != nil {
		return err
	}
	evictionMgr, err := eviction.New(eviction.Config{
		Thresholds: thresholds, TransitionPeriod: cfg.EvictionPressureTransitionPeriod.Duration,
		MaxPodGracePeriod: int64(cfg.EvictionMaxPodGracePeriod),
	}, eviction.Deps{
		Observer: eviction.NodeObserver{RootDir: rootDir, ProcRoot: "/proc", CgroupRoot: "/sys/fs/cgroup", MemoryCapacity: machine.MemoryBytes, ImageFs: imageGC.ImageFs},
		Stats:    rs,
		ActivePods: func() []*v1.Pod {
			var out []*v1.Pod
			for _, p := range pods.List() {
				if syncer.Admitted(p.UID) && p.DeletionTimestamp == nil && !evictions.Evicted(p.UID) &&
					p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
					out = append(out, p)
				}
			}
			return out
		},
		Reclaimer: imageGC, Killer: evictions, Recorder: recorder, Log: log.Named("eviction"),
		LocalStorage: eviction.LocalDisk{PodsDir: filepath.Join(rootDir, "pods"), LogRoot: logRoot, Stats: rs},
	})
	if err != nil {
		return err
	}
	adm.pressure = evictionMgr
	workers = podworkers.New(syncer, cfg.SyncFrequency.Duration, log.Named("podworkers"))
	relist := pleg.New(rt, podCache, time.Second, 3*time.Minute, workers.Trigger, time.Now, log.Named("pleg"))

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	goRun := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	errc := make(chan error, 4)

	// Health: /healthz and the node's Ready condition.
	runtimeHealth := func(ctx context.Context) error {
		if err := rt.Ready(ctx); err != nil {
			return fmt.Errorf("container runtime is down: %w", err)
		}
		return relist.Healthy()
	}
	if cfg.HealthzPort != nil && *cfg.HealthzPort > 0 {
		hz := server.NewHealthz(cfg.HealthzBindAddress, *cfg.HealthzPort, log.Named("healthz"), server.Check{Name: "pleg", Fn: relist.Healthy})
		if _, err := hz.Listen(); err != nil {
			return fmt.Errorf("healthz (healthzBindAddress/healthzPort): %w", err)
		}
		goRun(func(ctx context.Context) {
			if err := hz.Run(ctx); err != nil {
				errc <- err
			}
		})
	}

	// The authenticated API on address:port: logs, exec, attach, port-forward, /pods, stats, metrics.
	apiServer, err := server.NewFromConfig(cfg, server.Deps{NodeName: nodeName, NodeIPs: hostIPs, RootDir: rootDir, Client: client, Runtime: rs, Pods: pods, LogDir: "/var/log", RuntimeName: rtName, Log: log.Named("server")})
	if err != nil {
		return err
	}
	if _, err := apiServer.Listen(); err != nil {
		return err
	}
	goRun(func(ctx context.Context) {
		if err := apiServer.Run(ctx); err != nil {
			errc <- err
		}
	})

	// Adopt what the runtime has before anything is killed: pods running now were admitted.
	existing, err := rt.Relist(ctx)
	if err != nil {
		return err
	}
	for uid := range existing {
		syncer.MarkAdmitted(uid)
	}

	// Pressure is known before the first pod is admitted (no pods are listed yet: nothing is
	// evicted by this pass).
	evictionMgr.Synchronize(ctx)
	// Static pods start without the API server (it may be one of them). Workers only get the
	// pods that are desired until the API's pods are listed.
	goRun(workers.Run)
	if cfg.StaticPodPath != "" {
		static := podsource.NewStaticSource(cfg.StaticPodPath, nodeName, cfg.FileCheckFrequency.Duration, pods, log.Named("static"))
		static.Once()
		goRun(static.Run)
	}

	if client != nil {
		if cfg.RegisterNode == nil || *cfg.RegisterNode {
			taints := make([]v1.Taint, 0, len(cfg.RegisterWithTaints))
			for _, t := range cfg.RegisterWithTaints {
				taints = append(taints, v1.Taint{Key: t.Key, Value: t.Value, Effect: v1.TaintEffect(t.Effect)})
			}
			nc, err := node.New(node.Config{
				Name: nodeName, IPs: hostIPs, Labels: nodeLabels, Taints: taints, ProviderID: cfg.ProviderID,
				Capacity: capacity, Allocatable: allocatable, Machine: machine,
				KubeletVersion: version.Get(Component).Version, RuntimeVersion: rtName + "://" + rtVersion,
				UpdateFrequency: cfg.NodeStatusUpdateFrequency.Duration, ReportFrequency: cfg.NodeStatusReportFrequency.Duration,
				LeaseDuration: time.Duration(cfg.NodeLeaseDurationSeconds) * time.Second, KubeletPort: cfg.Port,
				Pressure: evictionMgr.Conditions,
			}, client, runtimeHealth, time.Now, log.Named("node"))
			if err != nil {
				return err
			}
			goRun(func(ctx context.Context) {
				if err := nc.Run(ctx); err != nil {
					errc <- err
				}
			})
		}
		src := podsource.NewAPISource(client, nodeName, pods, log.Named("podsource"))
		goRun(src.Run)
		goRun(services.Run)
		goRun(runtimeClasses.Run)
		// Until the node's pods are listed, every running pod would look deleted: wait.
		for {
			err := src.WaitForSync(ctx, 30*time.Second)
			if err == nil {
				err = services.WaitForSync(ctx, 30*time.Second)
			}
			if err == nil {
				break
			} else if ctx.Err() != nil {
				return nil
			} else {
				log.Warn("waiting for the API server", zap.Error(err))
			}
		}
		goRun(statuses.Run)
		if cfg.StaticPodPath != "" {
			mirrors := podsource.NewMirrors(client, nodeName, pods, log.Named("mirrors"))
			goRun(func(ctx context.Context) { mirrors.Run(ctx, 2*time.Second) })
		}
	}
	// Everything known now gets a worker: desired pods start or resume, runtime pods and pod
	// directories that are no longer desired are torn down.
	for uid := range existing {
		workers.Trigger(uid)
	}
	if dirs, err := vols.PodDirs(); err == nil {
		for _, uid := range dirs {
			workers.Trigger(uid)
		}
	}
	goRun(relist.Run)
	// Eviction ranks the admitted pods: it starts once the API's pods are known.
	goRun(evictionMgr.Run)
	goRun(imageGC.Run)
	log.Info("kubelet started", zap.Strings("nodeIPs", hostIPs), zap.Int("adoptedPods", len(existing)))

	select {
	case <-ctx.Done():
		log.Info("shutting down; pods keep running")
	case err := <-errc:
		cancel()
		return err
	}
	if client != nil {
		flushCtx, flushCancel := context.WithTimeout(context.Background(), 3*time.Second)
		statuses.Flush(flushCtx)
		flushCancel()
	}
	return nil
}

// nodeIPs returns --node-ip, or the address of the interface holding the default route, or the
// first global unicast address.
func nodeIPs(o *Options) ([]string, error) {
	var out []string
	for _, ip := range o.NodeIPs {
		out = append(out, ip.String())
	}
	if len(out) > 0 {
		return out, nil
	}
	// A UDP "connection" sends nothing; it only asks the kernel which source address it would use.
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		ip := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		if ip.IsGlobalUnicast() {
			return []string{ip.String()}, nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("detect node IP (set --node-ip): %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return []string{n.IP.String()}, nil
		}
	}
	return nil, errors.New("no node IP found; set --node-ip")
}

func eventRecorder(client kubernetes.Interface, nodeName string) (record.EventRecorder, func()) {
	if client == nil {
		return &record.FakeRecorder{}, func() {}
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: nodeName}), b.Shutdown
}

// admitter applies admission against the pods already admitted and still active.
type admitter struct {
	pods     *podsource.Manager
	syncer   *podsync.Syncer
	node     admission.Node
	pressure *eviction.Manager
}

func (a *admitter) Admit(pod *v1.Pod) *status.Rejection {
	// Node pressure first, as upstream's eviction admit handler comes before resource fit.
	if a.pressure != nil {
		if rej := a.pressure.Admit(pod); rej != nil {
			return rej
		}
	}
	var active []*v1.Pod
	for _, p := range a.pods.List() {
		if p.UID == pod.UID || !a.syncer.Admitted(p.UID) || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		active = append(active, a.syncer.AllocatedPod(p)) // a pending resize holds nothing yet
	}
	return admission.Admit(pod, a.node, active)
}

// statfs returns a filesystem's size and the bytes available to unprivileged users.
func statfs(path string) (capacity, available uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}
