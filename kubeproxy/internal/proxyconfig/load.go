// Package proxyconfig loads kube-proxy's configuration file: the kubenode format
// (kubeproxy.config.kubenode.io/v1alpha1) or upstream's kubeproxy.config.k8s.io/v1alpha1, which it
// converts, warning about or refusing the fields kubenode does not implement.
package proxyconfig

import (
	"fmt"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/common/config"
	upstreamv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// Load reads the configuration file at path, defaults and validates it. It returns warnings about
// ignored upstream fields, and an error listing every problem (decoding, unsupported fields and
// validation) with its field path and line.
func Load(path string) (*proxyv1alpha1.KubeProxyConfiguration, []string, error) {
	return LoadWithOverrides(path, nil)
}

// LoadWithOverrides is Load with a hook that runs after decoding and before defaulting, where the
// command line overrides file values; validation then judges the final configuration. An empty path
// means no file: the configuration comes from override and defaults alone.
func LoadWithOverrides(path string, override func(*proxyv1alpha1.KubeProxyConfiguration) error) (*proxyv1alpha1.KubeProxyConfiguration, []string, error) {
	cfg := &proxyv1alpha1.KubeProxyConfiguration{}
	var (
		warnings []string
		problems []config.Problem
		line     func(string) int
	)
	source := "kube-proxy configuration from flags"
	if path != "" {
		source = path
		f, err := config.Read(path)
		if err != nil {
			return nil, nil, err
		}
		line = f.Line
		warnings, problems = decode(f, cfg)
	}
	var fromFlags func(string) bool
	if override != nil {
		snap, err := config.Take(cfg)
		if err != nil {
			return nil, warnings, err
		}
		if err := override(cfg); err != nil {
			return nil, warnings, err
		}
		if fromFlags, err = snap.Changed(cfg); err != nil {
			return nil, warnings, err
		}
	}
	proxyv1alpha1.SetDefaults(cfg)
	problems = append(problems, config.FieldProblems(proxyv1alpha1.Validate(cfg), problems, line, fromFlags)...)
	if err := config.NewError(source, problems); err != nil {
		return nil, warnings, err
	}
	return cfg, warnings, nil
}

func decode(f *config.File, cfg *proxyv1alpha1.KubeProxyConfiguration) ([]string, []config.Problem) {
	apiVersion, kind := f.TypeMeta()
	switch {
	case apiVersion == proxyv1alpha1.APIVersion && kind == proxyv1alpha1.Kind:
		return nil, f.Decode(cfg)
	case apiVersion == UpstreamAPIVersion && kind == proxyv1alpha1.Kind:
		var up upstreamv1alpha1.KubeProxyConfiguration
		problems := f.Decode(&up)
		warnings, unsupported := config.CheckForeign(&up, UpstreamFields(), f)
		problems = append(problems, unsupported...)
		if up.Mode == "iptables" || up.Mode == "kernelspace" {
			problems = append(problems, config.Problem{Field: "mode", Line: f.Line("mode"),
				Message: fmt.Sprintf("mode %q is not supported by kubenode: use %q (the default) or %q", up.Mode, proxyv1alpha1.ProxyModeNFTables, proxyv1alpha1.ProxyModeIPVS)})
			up.Mode = ""
		}
		fromUpstream(&up, cfg)
		return warnings, problems
	}
	msg := fmt.Sprintf("apiVersion %q with kind %q is not a kube-proxy configuration; use apiVersion %s or %s with kind %s",
		apiVersion, kind, proxyv1alpha1.APIVersion, UpstreamAPIVersion, proxyv1alpha1.Kind)
	if apiVersion == "" || kind == "" {
		msg = fmt.Sprintf("apiVersion and kind are required: apiVersion %s (or %s), kind %s", proxyv1alpha1.APIVersion, UpstreamAPIVersion, proxyv1alpha1.Kind)
	}
	return nil, []config.Problem{{Field: "apiVersion", Line: f.Line("apiVersion"), Message: msg}}
}

// fromUpstream copies the fields that UpstreamFields marks Supported. Zero upstream values mean
// "default" there as here, so they stay zero and SetDefaults fills them.
func fromUpstream(up *upstreamv1alpha1.KubeProxyConfiguration, c *proxyv1alpha1.KubeProxyConfiguration) {
	c.ClientConnection.Kubeconfig = up.ClientConnection.Kubeconfig
	c.ClientConnection.ContentType = up.ClientConnection.ContentType
	c.ClientConnection.QPS = up.ClientConnection.QPS
	c.ClientConnection.Burst = up.ClientConnection.Burst
	c.Logging.Format = up.Logging.Format
	c.Logging.Verbosity = uint32(up.Logging.Verbosity)
	c.HostnameOverride = up.HostnameOverride
	c.BindAddress = up.BindAddress
	c.HealthzBindAddress = up.HealthzBindAddress
	c.MetricsBindAddress = up.MetricsBindAddress
	c.EnableProfiling = up.EnableProfiling
	c.Mode = proxyv1alpha1.ProxyMode(up.Mode)
	c.ClusterCIDR = up.ClusterCIDR
	c.NodePortAddresses = up.NodePortAddresses
	c.ConfigSyncPeriod = up.ConfigSyncPeriod
	c.OOMScoreAdj = up.OOMScoreAdj
	c.IPVS = proxyv1alpha1.IPVSConfiguration{
		Scheduler:     up.IPVS.Scheduler,
		SyncPeriod:    up.IPVS.SyncPeriod,
		MinSyncPeriod: up.IPVS.MinSyncPeriod,
		StrictARP:     up.IPVS.StrictARP,
		ExcludeCIDRs:  up.IPVS.ExcludeCIDRs,
		TCPTimeout:    up.IPVS.TCPTimeout,
		TCPFinTimeout: up.IPVS.TCPFinTimeout,
		UDPTimeout:    up.IPVS.UDPTimeout,
	}
	c.NFTables = proxyv1alpha1.NFTablesConfiguration{
		SyncPeriod:    up.NFTables.SyncPeriod,
		MinSyncPeriod: up.NFTables.MinSyncPeriod,
		MasqueradeBit: up.NFTables.MasqueradeBit,
		MasqueradeAll: up.NFTables.MasqueradeAll,
	}
	c.Conntrack = proxyv1alpha1.ConntrackConfiguration{
		MaxPerCore:            up.Conntrack.MaxPerCore,
		Min:                   up.Conntrack.Min,
		TCPEstablishedTimeout: up.Conntrack.TCPEstablishedTimeout,
		TCPCloseWaitTimeout:   up.Conntrack.TCPCloseWaitTimeout,
		UDPTimeout:            up.Conntrack.UDPTimeout,
		UDPStreamTimeout:      up.Conntrack.UDPStreamTimeout,
	}
}
