package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmconfig "k8s.io/kubernetes/cmd/kube-controller-manager/app/config"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedconfig "k8s.io/kubernetes/cmd/kube-scheduler/app/config"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler"

	"github.com/kubenode/kubenode/e2e/controlplane/internal/pki"
)

// The controllers a node's workloads rely on: pods need their service
// account, token and kube-root-ca.crt; Services need EndpointSlices; the
// workload controllers make pods; node-lifecycle lifts the not-ready taint
// and node-ipam hands out spec.podCIDR. Cloud, storage and CSR controllers
// have nothing to do on a test machine and are left out.
var controllers = []string{
	"serviceaccount-token-controller",
	"serviceaccount-controller",
	"root-ca-certificate-publisher-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"clusterrole-aggregation-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"replicaset-controller",
	"replicationcontroller-controller",
	"deployment-controller",
	"daemonset-controller",
	"statefulset-controller",
	"job-controller",
	"cronjob-controller",
	"ttl-after-finished-controller",
	"disruption-controller",
	"node-lifecycle-controller",
	"taint-eviction-controller",
	"node-ipam-controller",
	"pod-garbage-collector-controller",
	"service-cidr-controller",
}

func controllerManagerConfig(ctx context.Context, p paths, cfg config) (*kcmconfig.Config, error) {
	dir := p.pki()
	args := []string{
		"--kubeconfig=" + p.kubeconfig("controller-manager"),
		"--controllers=" + strings.Join(controllers, ","),
		// Each controller acts as its own service account, with the
		// permissions bootstrap RBAC gives it, as in a kubeadm cluster.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + pki.SAKeyPath(dir),
		"--root-ca-file=" + pki.CACertPath(dir),
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + cfg.ClusterCIDR,
		"--node-cidr-mask-size=24",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--leader-elect=false",
		// No HTTPS endpoint: nothing scrapes it and it would need its own authn.
		"--secure-port=0",
		"--profiling=false",
	}
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager options: %w", err)
	}
	all, disabled, aliases := app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases()
	named := s.Flags(all, disabled, aliases)
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-controller-manager flags: %w", err)
	}
	s.ParsedFlags = &named
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-controller-manager feature gates: %w", err)
	}
	c, err := s.Config(ctx, all, disabled, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager config: %w", err)
	}
	return c, nil
}

func runControllerManager(ctx context.Context, c *kcmconfig.Config) error {
	return app.Run(ctx, c.Complete())
}

type schedulerParts struct {
	cc    *schedconfig.CompletedConfig
	sched *scheduler.Scheduler
}

func schedulerSetup(ctx context.Context, p paths) (schedulerParts, error) {
	args := []string{
		"--kubeconfig=" + p.kubeconfig("scheduler"),
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	}
	o := schedoptions.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range o.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return schedulerParts{}, fmt.Errorf("kube-scheduler flags: %w", err)
	}
	if err := o.ComponentGlobalsRegistry.Set(); err != nil {
		return schedulerParts{}, fmt.Errorf("kube-scheduler feature gates: %w", err)
	}
	cc, sched, err := schedapp.Setup(ctx, o)
	if err != nil {
		return schedulerParts{}, fmt.Errorf("kube-scheduler setup: %w", err)
	}
	return schedulerParts{cc: cc, sched: sched}, nil
}

func runScheduler(ctx context.Context, s schedulerParts) error {
	return schedapp.Run(ctx, s.cc, s.sched)
}
