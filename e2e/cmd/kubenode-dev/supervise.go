package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// supervise runs everything in the foreground until SIGTERM/SIGINT, then stops it in reverse.
func supervise(ctx context.Context, o options) error {
	l := layout{root: o.stateDir}
	log, err := newLogger()
	if err != nil {
		return err
	}
	log = log.Named("kubenode-dev")
	defer func() { _ = log.Sync() }()
	if o.controlPlaneBin == "" {
		return errors.New("KUBENODE_CONTROLPLANE_BIN not set (or --controlplane-bin): run through make up, which builds the control plane")
	}
	if err := os.WriteFile(l.pidFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(l.pidFile())
	defer os.Remove(l.readyFile())

	start := time.Now()
	imgs, err := images.Build(ctx, images.Options{CacheDir: filepath.Join(o.cacheDir, "images"), Log: log})
	if err != nil {
		return err
	}
	reg, err := images.Serve(ctx, "127.0.0.1:0", imgs, log)
	if err != nil {
		return err
	}
	defer reg.Close()

	// Detached, so a supervisor crash leaves it to down's KillAll rather than orphaning etcd
	// mid-write; it logs to its own state dir, which down copies into logs/.
	cp, err := cluster.Start(ctx, cluster.Options{Binary: o.controlPlaneBin, StateDir: l.controlPlaneDir(), Detach: true})
	if err != nil {
		return fmt.Errorf("control plane: %w (log: %s)", err, l.controlPlaneLog())
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			log.Warn("control plane stop", zap.Error(err))
		}
	}()
	log.Info("control plane ready", zap.String("server", cp.Server()))

	ctrLog, err := os.OpenFile(l.log("containerd"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer ctrLog.Close()
	env, err := nodeenv.Start(ctx, nodeenv.Options{
		StateDir:     l.nodeDir(),
		RegistryAddr: reg.Addr(),
		PodCIDR:      o.podCIDR,
		CgroupRoots:  []string{o.cgroupRoot},
		// The dev node's kube-proxy runs on the host: its tables are this node's to remove.
		NFTablePrefixes: []string{nodeenv.DefaultNFTablePrefix},
		Output:          ctrLog,
		Log:             log,
	})
	if err != nil {
		return fmt.Errorf("node environment: %w (log: %s)", err, l.log("containerd"))
	}
	defer func() {
		if err := env.Stop(); err != nil {
			log.Warn("node environment stop", zap.Error(err))
		}
	}()

	facts := nodeFacts{
		NodeName:            nodeName,
		AdminKubeconfig:     cp.AdminKubeconfig(),
		KubeProxyKubeconfig: cp.KubeProxyKubeconfig(),
		ClientCAFile:        cp.CACertFile(),
		CRIEndpoint:         env.Endpoint(),
		PodCIDR:             env.PodCIDR(),
		CgroupRoot:          o.cgroupRoot,
		StateDir:            filepath.Join(l.nodeDir(), "agents"),
		BinDir:              o.binDir,
	}
	if facts.NodeKubeconfig, err = cp.NodeKubeconfig(nodeName); err != nil {
		return fmt.Errorf("node kubeconfig: %w", err)
	}
	procs := nodeProcesses(facts)
	var names []string
	for _, p := range procs {
		names = append(names, p.Name)
	}
	procCtx, stopProcs := context.WithCancel(context.Background())
	procsDone := make(chan struct{})
	go func() {
		runner{
			minBackoff: time.Second, maxBackoff: 30 * time.Second, grace: 15 * time.Second,
			output: func(name string) (io.WriteCloser, error) {
				return os.OpenFile(l.log(name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			},
			log: log,
		}.run(procCtx, procs)
		close(procsDone)
	}()
	// Node processes stop first: the kubelet must not see its runtime vanish under it.
	defer func() { stopProcs(); <-procsDone }()

	if err := waitNode(ctx, facts, log); err != nil {
		return err
	}
	if err := l.writeReady(readyInfo{
		AdminKubeconfig: cp.AdminKubeconfig(),
		Server:          cp.Server(),
		Registry:        reg.Addr(),
		CRIEndpoint:     env.Endpoint(),
		LogDir:          l.logDir(),
		ControlPlaneLog: l.controlPlaneLog(),
		Processes:       names,
	}); err != nil {
		return err
	}
	log.Info("up", zap.Duration("took", time.Since(start)))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-env.Done():
		return fmt.Errorf("containerd exited (%v): the node is down; run make down (log: %s)", err, l.log("containerd"))
	}
}
