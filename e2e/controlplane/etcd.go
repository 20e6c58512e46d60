package main

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/klog/v2"
)

type etcdServer struct{ e *embed.Etcd }

func startEtcd(dataDir string, ports Ports, noFsync bool) (*etcdServer, error) {
	cfg := embed.NewConfig()
	cfg.Name = "controlplane"
	cfg.Dir = dataDir
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports.Etcd)}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports.EtcdPeer)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = noFsync
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd in %s: %w", dataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return &etcdServer{e: e}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed: %w", err)
	case <-time.After(time.Minute):
		e.Server.Stop()
		return nil, fmt.Errorf("etcd not ready within a minute")
	}
}

// closeWithin closes etcd but gives up after d: a graceful close can take
// ~40 s waiting on client connections, and the data is safe either way.
func (s *etcdServer) closeWithin(d time.Duration) {
	done := make(chan struct{})
	go func() { s.e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		// The process exits next, which ends etcd just as well.
		klog.InfoS("etcd close timed out; leaving it to process exit")
	}
}
