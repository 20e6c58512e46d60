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
	return format().LoadFile(path, override)
}

// format describes the file; a function rather than a package variable, so nothing is shared.
func format() config.Format[proxyv1alpha1.KubeProxyConfiguration] {
	return config.Format[proxyv1alpha1.KubeProxyConfiguration]{
		Component:          "kube-proxy",
		APIVersion:         proxyv1alpha1.APIVersion,
		Kind:               proxyv1alpha1.Kind,
		UpstreamAPIVersion: UpstreamAPIVersion,
		DecodeUpstream:     decodeUpstream,
		SetDefaults:        proxyv1alpha1.SetDefaults,
		Validate:           proxyv1alpha1.Validate,
	}
}

// decodeUpstream decodes kubeproxy.config.k8s.io/v1alpha1 strictly and converts what kubenode
// supports; the iptables and kernelspace modes are refused by name.
func decodeUpstream(f *config.File, cfg *proxyv1alpha1.KubeProxyConfiguration) ([]string, []config.Problem) {
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
