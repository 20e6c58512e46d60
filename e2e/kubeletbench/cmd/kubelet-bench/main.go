// Command kubelet-bench runs the kubelet benchmark (package kubeletbench) once and prints its
// markdown table on stdout; progress goes to stderr. `make bench-kubelet` runs it as root.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/common/signals"
	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/kubeletbench"
)

func main() {
	o := kubeletbench.Options{}
	flag.StringVar(&o.KubeletBin, "kubelet", "bin/kubelet", "the kubelet binary")
	flag.StringVar(&o.ControlPlaneBin, "controlplane", os.Getenv(cluster.BinaryEnv), "the kube-controlplane binary (default $"+cluster.BinaryEnv+")")
	flag.StringVar(&o.ImageCacheDir, "image-cache", defaultImageCache(), "where the test images are cached")
	flag.IntVar(&o.Pods, "pods", 30, "pods in the start-up burst")
	flag.IntVar(&o.Rounds, "rounds", 5, "alternating CRI floor + kubelet burst rounds; the overhead is the median of their differences")
	// The default is the kubelet's own default cap on this machine; the bench writes the value
	// into the kubelet's config, so the paced floor and the kubelet always use the same K.
	pacedFloor := flag.Int("paced-floor", v1alpha1.EffectiveMaxParallelPodStarts(nil, runtime.NumCPU()),
		"K: the kubelet's maxParallelPodStarts, and each round's paced CRI floor keeps at most K start calls in flight (0: no cap, no paced floor)")
	flag.IntVar(&o.IdlePods, "idle-pods", 100, "running pods for the second idle measurement")
	flag.DurationVar(&o.Window, "window", 60*time.Second, "length of each idle measurement")
	flag.DurationVar(&o.Settle, "settle", 15*time.Second, "wait before each idle measurement")
	flag.StringVar(&o.ProfileDir, "profile-dir", "", "save pprof CPU and heap profiles of the kubelet here (needs a kubelet built with the pprof overlay)")
	flag.Parse()
	o.PacedFloor = pacedFloor
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "kubelet-bench: needs root (containerd, CNI, cgroups)")
		os.Exit(2)
	}
	abs, err := filepath.Abs(o.KubeletBin)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet-bench: -kubelet: %v (make build makes bin/kubelet)\n", err)
		os.Exit(2)
	}
	o.KubeletBin = abs
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.InfoLevel)
	cfg.DisableStacktrace = true
	log, err := cfg.Build()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet-bench: logger: %v\n", err)
		os.Exit(1)
	}
	o.Log = log.Named("kubelet-bench")

	// SIGINT/SIGTERM cancel the run, which still tears down everything it made.
	ctx, stop := signals.Context()
	start := time.Now()
	res, err := kubeletbench.Run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet-bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(res.Markdown(kubeletbench.DefaultTargets()))
	fmt.Printf("\n(one run, %s in all)\n", time.Since(start).Round(time.Second))
}

func defaultImageCache() string {
	if c := os.Getenv("KUBENODE_CACHE"); c != "" {
		return filepath.Join(c, "images")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "kubenode", "images")
}
