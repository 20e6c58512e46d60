// Command kube-controlplane runs a whole Kubernetes control plane in one
// process on 127.0.0.1 for kubenode's end-to-end tests and `make up`:
// embedded etcd, kube-apiserver, the controllers a working node needs and
// the scheduler. It is test tooling: it lives in its own Go module so that
// k8s.io/kubernetes never enters the build lists of the shipped agents.
//
// State directory layout (see also e2e/cluster, which reads it):
//
//	pki/                 CA, serving and client certificates, sa.key/sa.pub
//	etcd/                etcd data
//	admin.kubeconfig     system:masters
//	kube-proxy.kubeconfig           user system:kube-proxy
//	controller-manager.kubeconfig   user system:kube-controller-manager
//	scheduler.kubeconfig            user system:kube-scheduler
//	ports.json           the ports in use this run
//	kube-controlplane.pid
//	ready                written once /readyz is ok and controllers run
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

func main() {
	cfg := config{}
	fs := flag.NewFlagSet("kube-controlplane", flag.ExitOnError)
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory for certificates, kubeconfigs, etcd data and the ready marker (required)")
	fs.IntVar(&cfg.APIServerPort, "apiserver-port", 0, "kube-apiserver secure port on 127.0.0.1; 0 picks a free one")
	fs.IntVar(&cfg.EtcdPort, "etcd-port", 0, "etcd client port on 127.0.0.1; 0 picks a free one")
	fs.IntVar(&cfg.EtcdPeerPort, "etcd-peer-port", 0, "etcd peer port on 127.0.0.1; 0 picks a free one")
	fs.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "address the kubernetes Service points at; empty lets kube-apiserver choose")
	fs.BoolVar(&cfg.EtcdNoFsync, "etcd-unsafe-no-fsync", true, "skip fsync in etcd: much faster, loses data only on a machine crash")
	fs.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "10.244.0.0/16", "pod network; each node gets a /24 from it as spec.podCIDR")
	fs.BoolVar(&cfg.NoScheduler, "no-scheduler", false, "do not run the scheduler")
	exitWithParent := fs.Bool("exit-with-parent", false, "shut down as on SIGTERM when the parent process dies (so a killed test binary leaks no control plane)")
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	klogFlags.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kube-controlplane takes no arguments, got %q\n", fs.Args())
		os.Exit(2)
	}
	if cfg.StateDir == "" {
		fmt.Fprintln(os.Stderr, "--state-dir is required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *exitWithParent {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go watchParent(ctx, cancel)
	}
	err := run(ctx, cfg)
	klog.Flush()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "kube-controlplane: %v\n", err)
		os.Exit(1)
	}
}

// watchParent cancels when this process is re-parented, which is how a
// child learns that its parent died without a chance to stop it.
func watchParent(ctx context.Context, cancel context.CancelFunc) {
	parent := os.Getppid()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if os.Getppid() != parent {
				klog.InfoS("parent process died; shutting down", "parent", parent)
				cancel()
				return
			}
		}
	}
}
