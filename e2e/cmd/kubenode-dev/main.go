// Command kubenode-dev brings a development node up and down on this machine: the local image
// registry, a control plane (e2e/cluster), containerd with CNI (e2e/nodeenv) and the node's own
// processes, all under one state directory and kept running by a detached supervisor.
//
//	kubenode-dev up     start everything (or say it is already up) and print how to use it
//	kubenode-dev down   stop everything and remove what it made; safe to repeat, also after a crash
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubenode-dev:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var o options
	root := &cobra.Command{
		Use:           "kubenode-dev",
		Short:         "Bring a kubenode development node up and down on this machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&o.stateDir, "state-dir", envOr("KUBENODE_STATE", "/var/lib/kubenode-dev"), "where everything runs and writes ($KUBENODE_STATE)")
	root.PersistentFlags().StringVar(&o.cacheDir, "cache-dir", envOr("KUBENODE_CACHE", defaultCache()), "build products kept across runs ($KUBENODE_CACHE)")
	root.PersistentFlags().StringVar(&o.controlPlaneBin, "controlplane-bin", os.Getenv("KUBENODE_CONTROLPLANE_BIN"), "the control plane binary ($KUBENODE_CONTROLPLANE_BIN, set by make)")
	root.PersistentFlags().StringVar(&o.binDir, "bin-dir", "bin", "where bin/kubelet and bin/kube-proxy are")
	root.PersistentFlags().StringVar(&o.podCIDR, "pod-cidr", "10.244.0.0/24", "the node's pod range")
	root.PersistentFlags().StringVar(&o.cgroupRoot, "cgroup-root", "/kubepods", "the cgroup the kubelet puts pods under; down removes its tree")

	root.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Start the development node in the background and wait until it is ready",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return up(cmd.Context(), o, cmd.OutOrStdout()) },
	})
	root.AddCommand(&cobra.Command{
		Use:   "down",
		Short: "Stop the development node and remove everything it made",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return down(cmd.Context(), o, cmd.OutOrStdout()) },
	})
	root.AddCommand(&cobra.Command{
		Use:    "supervise",
		Short:  "Run the node in the foreground (what up starts detached)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(cmd *cobra.Command, _ []string) error { return supervise(cmd.Context(), o) },
	})
	return root
}

// options are the flags every subcommand shares.
type options struct {
	stateDir        string
	cacheDir        string
	controlPlaneBin string
	binDir          string
	podCIDR         string
	cgroupRoot      string
}

// newLogger logs human-readable lines to stderr (the supervisor's log file when detached).
func newLogger() (*zap.Logger, error) {
	cfg := zap.NewDevelopmentConfig()
	cfg.DisableStacktrace = true
	cfg.DisableCaller = true
	return cfg.Build()
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func defaultCache() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return "/root/.cache/kubenode"
	}
	return home + "/.cache/kubenode"
}
