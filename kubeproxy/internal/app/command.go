// Package app is kube-proxy's command line: flags, config loading (file, then the flags the user
// set, then defaults, then validation), logging, and the hand-off to run.
package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/common/config"
	"github.com/kubenode/kubenode/common/config/flagsets"
	"github.com/kubenode/kubenode/common/hostname"
	"github.com/kubenode/kubenode/common/log"
	"github.com/kubenode/kubenode/common/startup"
	"github.com/kubenode/kubenode/common/version"
	"github.com/kubenode/kubenode/kubeproxy/internal/proxyconfig"
)

// Component is kube-proxy's name in logs and version output.
const Component = "kube-proxy"

// Options holds the command-line settings that are not part of the configuration file.
type Options struct {
	// ConfigFile is the --config path; empty when the configuration comes from flags alone.
	ConfigFile string
}

// NodeName is this node's name: hostnameOverride, else the host name, lower-cased as Kubernetes
// object names must be.
func NodeName(cfg *proxyv1alpha1.KubeProxyConfiguration) (string, error) {
	return hostname.Resolve(cfg.HostnameOverride)
}

// runFunc is run's signature; tests pass their own to see what the command would run with.
type runFunc func(ctx context.Context, o *Options, cfg *proxyv1alpha1.KubeProxyConfiguration, log *zap.Logger) error

// NewCommand returns kube-proxy's root command.
func NewCommand() *cobra.Command { return newCommand(run) }

// flagValues holds the flags that override configuration file fields.
type flagValues struct {
	kubeconfig, contentType, hostname, bindAddress, healthzAddress, metricsAddress string
	qps                                                                            float32
	burst                                                                          int32
	profiling                                                                      bool
	mode, clusterCIDR                                                              string
	nodePortAddresses                                                              []string
	configSyncPeriod                                                               time.Duration
	ipvsScheduler                                                                  string
	ipvsSync, ipvsMinSync, ipvsTCP, ipvsTCPFin, ipvsUDP                            time.Duration
	ipvsStrictARP                                                                  bool
	ipvsExclude                                                                    []string
	nftSync, nftMinSync                                                            time.Duration
	masqueradeBit                                                                  int32
	masqueradeAll                                                                  bool
	ctMaxPerCore, ctMin                                                            int32
	ctEstablished, ctCloseWait, ctUDP, ctUDPStream                                 time.Duration
	oomScoreAdj                                                                    int32
}

func newCommand(runner runFunc) *cobra.Command {
	o := &Options{}
	var (
		f           flagValues
		logOpts     log.Options
		showVersion bool
		sections    flagsets.Sections
	)
	cmd := &cobra.Command{
		Use:   Component,
		Short: "The kubenode service proxy: programs Service VIPs into the kernel with nftables or IPVS",
		Long: `kube-proxy watches Services, EndpointSlices and this Node, and programs the kernel so that traffic
to Service IPs and node ports reaches ready endpoints: with nftables (the default) or with IPVS.

Settings come from --config (a kubeproxy.config.kubenode.io/v1alpha1 or upstream
kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration); flags set on the command line override the file.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if showVersion {
				fmt.Fprintln(cmd.OutOrStdout(), version.Get(Component).String())
				return nil
			}
			if err := logOpts.Validate(); err != nil {
				return err
			}
			cfg, logger, err := startup.Load(startup.Config[proxyv1alpha1.KubeProxyConfiguration]{
				Component:  Component,
				ConfigFile: o.ConfigFile,
				Flags:      cmd.Flags(),
				Overrides:  overrides(&f, &logOpts),
				LogOptions: logOpts,
				LoadFile:   proxyconfig.LoadWithOverrides,
				Logging: func(c *proxyv1alpha1.KubeProxyConfiguration) (string, uint32) {
					return c.Logging.Format, c.Logging.Verbosity
				},
			})
			if err != nil {
				return err
			}
			logger.Info("starting", zap.String("version", version.Get(Component).String()), zap.String("mode", string(cfg.Mode)))
			return runner(cmd.Context(), o, cfg, logger)
		},
	}

	fs := sections.Section("Config")
	fs.StringVar(&o.ConfigFile, "config", "", "configuration file (YAML or JSON); flags set on the command line override its fields")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig with the API server's address and credentials; empty uses the in-cluster service account [clientConnection.kubeconfig]")
	fs.Float32Var(&f.qps, "kube-api-qps", proxyv1alpha1.DefaultQPS, "sustained requests per second to the API server [clientConnection.qps]")
	fs.Int32Var(&f.burst, "kube-api-burst", proxyv1alpha1.DefaultBurst, "burst of requests to the API server [clientConnection.burst]")
	fs.StringVar(&f.contentType, "kube-api-content-type", proxyv1alpha1.DefaultContentType, "content type of requests to the API server [clientConnection.contentType]")
	fs.DurationVar(&f.configSyncPeriod, "config-sync-period", proxyv1alpha1.DefaultConfigSyncPeriod, "how often Services and EndpointSlices are re-listed [configSyncPeriod]")

	fs = sections.Section("Proxy")
	fs.StringVar(&f.mode, "proxy-mode", string(proxyv1alpha1.DefaultMode), "dataplane: nftables or ipvs [mode]")
	fs.StringVar(&f.hostname, "hostname-override", "", "name of this node instead of the host name [hostnameOverride]")
	fs.StringVar(&f.bindAddress, "bind-address", proxyv1alpha1.DefaultBindAddress, "an IP of this node; its family is the primary family when the Node does not say [bindAddress]")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", "", "pod network CIDR(s), comma-separated, one per family; service traffic from outside is masqueraded [clusterCIDR]")
	fs.StringSliceVar(&f.nodePortAddresses, "nodeport-addresses", nil, `CIDRs of node addresses that serve NodePorts, or "primary" (default "primary") [nodePortAddresses]`)
	fs.BoolVar(&f.masqueradeAll, "masquerade-all", false, "masquerade all traffic to service IPs [nftables.masqueradeAll]")
	fs.Int32Var(&f.oomScoreAdj, "oom-score-adj", proxyv1alpha1.DefaultOOMScoreAdj, "oom_score_adj for the kube-proxy process, in [-1000, 1000] [oomScoreAdj]")

	fs = sections.Section("nftables")
	fs.DurationVar(&f.nftSync, "nftables-sync-period", proxyv1alpha1.DefaultSyncPeriod, "longest time between full syncs in nftables mode [nftables.syncPeriod]")
	fs.DurationVar(&f.nftMinSync, "nftables-min-sync-period", proxyv1alpha1.DefaultMinSyncPeriod, "shortest time between syncs in nftables mode [nftables.minSyncPeriod]")
	fs.Int32Var(&f.masqueradeBit, "nftables-masquerade-bit", proxyv1alpha1.DefaultMasqueradeBit, "packet mark bit that flags masquerading, in [0, 31] [nftables.masqueradeBit]")

	fs = sections.Section("IPVS")
	fs.StringVar(&f.ipvsScheduler, "ipvs-scheduler", proxyv1alpha1.DefaultIPVSScheduler, "IPVS scheduler: "+strings.Join(proxyv1alpha1.IPVSSchedulers(), ", ")+" [ipvs.scheduler]")
	fs.DurationVar(&f.ipvsSync, "ipvs-sync-period", proxyv1alpha1.DefaultSyncPeriod, "longest time between full syncs in ipvs mode [ipvs.syncPeriod]")
	fs.DurationVar(&f.ipvsMinSync, "ipvs-min-sync-period", proxyv1alpha1.DefaultMinSyncPeriod, "shortest time between syncs in ipvs mode [ipvs.minSyncPeriod]")
	fs.BoolVar(&f.ipvsStrictARP, "ipvs-strict-arp", false, "set arp_ignore=1 and arp_announce=2 [ipvs.strictARP]")
	fs.StringSliceVar(&f.ipvsExclude, "ipvs-exclude-cidrs", nil, "CIDRs whose IPVS virtual servers are left alone [ipvs.excludeCIDRs]")
	fs.DurationVar(&f.ipvsTCP, "ipvs-tcp-timeout", 0, "IPVS idle timeout of established TCP connections; 0 keeps the kernel's [ipvs.tcpTimeout]")
	fs.DurationVar(&f.ipvsTCPFin, "ipvs-tcpfin-timeout", 0, "IPVS timeout after TCP FIN; 0 keeps the kernel's [ipvs.tcpFinTimeout]")
	fs.DurationVar(&f.ipvsUDP, "ipvs-udp-timeout", 0, "IPVS timeout of UDP flows; 0 keeps the kernel's [ipvs.udpTimeout]")

	fs = sections.Section("Conntrack")
	fs.Int32Var(&f.ctMaxPerCore, "conntrack-max-per-core", proxyv1alpha1.DefaultConntrackMaxPerCore, "tracked connections per CPU core; 0 leaves the limit alone [conntrack.maxPerCore]")
	fs.Int32Var(&f.ctMin, "conntrack-min", proxyv1alpha1.DefaultConntrackMin, "lowest nf_conntrack_max to set [conntrack.min]")
	fs.DurationVar(&f.ctEstablished, "conntrack-tcp-timeout-established", proxyv1alpha1.DefaultTCPEstablishedTimeout, "idle timeout of established TCP connections; 0 leaves it alone [conntrack.tcpEstablishedTimeout]")
	fs.DurationVar(&f.ctCloseWait, "conntrack-tcp-timeout-close-wait", proxyv1alpha1.DefaultTCPCloseWaitTimeout, "timeout of TCP connections in CLOSE_WAIT; 0 leaves it alone [conntrack.tcpCloseWaitTimeout]")
	fs.DurationVar(&f.ctUDP, "conntrack-udp-timeout", 0, "timeout of unreplied UDP flows; 0 leaves it alone [conntrack.udpTimeout]")
	fs.DurationVar(&f.ctUDPStream, "conntrack-udp-timeout-stream", 0, "timeout of UDP flows seen both ways; 0 leaves it alone [conntrack.udpStreamTimeout]")

	fs = sections.Section("Serving")
	fs.StringVar(&f.healthzAddress, "healthz-bind-address", proxyv1alpha1.DefaultHealthzBindAddress, "IP:port of /healthz [healthzBindAddress]")
	fs.StringVar(&f.metricsAddress, "metrics-bind-address", proxyv1alpha1.DefaultMetricsBindAddress, "IP:port of /metrics [metricsBindAddress]")
	fs.BoolVar(&f.profiling, "profiling", false, "serve /debug/pprof on the metrics address [enableProfiling]")

	logOpts.AddFlags(sections.Section("Logging"))

	sections.Section("General").BoolVar(&showVersion, "version", false, "print the version and commit, then exit")
	for _, sub := range subcommands(o) {
		cmd.AddCommand(sub)
	}
	sections.Install(cmd)
	return cmd
}

// overrides copies each flag the user set into the configuration; the field name follows each
// flag's help text in brackets.
func overrides(f *flagValues, logOpts *log.Options) config.Overrides[proxyv1alpha1.KubeProxyConfiguration] {
	type C = proxyv1alpha1.KubeProxyConfiguration
	d := func(v time.Duration) metav1.Duration { return metav1.Duration{Duration: v} }
	return config.Overrides[C]{
		"kubeconfig":                        func(c *C) { c.ClientConnection.Kubeconfig = f.kubeconfig },
		"kube-api-qps":                      func(c *C) { c.ClientConnection.QPS = f.qps },
		"kube-api-burst":                    func(c *C) { c.ClientConnection.Burst = f.burst },
		"kube-api-content-type":             func(c *C) { c.ClientConnection.ContentType = f.contentType },
		"config-sync-period":                func(c *C) { c.ConfigSyncPeriod = d(f.configSyncPeriod) },
		"proxy-mode":                        func(c *C) { c.Mode = proxyv1alpha1.ProxyMode(f.mode) },
		"hostname-override":                 func(c *C) { c.HostnameOverride = f.hostname },
		"bind-address":                      func(c *C) { c.BindAddress = f.bindAddress },
		"cluster-cidr":                      func(c *C) { c.ClusterCIDR = f.clusterCIDR },
		"nodeport-addresses":                func(c *C) { c.NodePortAddresses = f.nodePortAddresses },
		"masquerade-all":                    func(c *C) { c.NFTables.MasqueradeAll = f.masqueradeAll },
		"oom-score-adj":                     func(c *C) { c.OOMScoreAdj = &f.oomScoreAdj },
		"nftables-sync-period":              func(c *C) { c.NFTables.SyncPeriod = d(f.nftSync) },
		"nftables-min-sync-period":          func(c *C) { c.NFTables.MinSyncPeriod = d(f.nftMinSync) },
		"nftables-masquerade-bit":           func(c *C) { c.NFTables.MasqueradeBit = &f.masqueradeBit },
		"ipvs-scheduler":                    func(c *C) { c.IPVS.Scheduler = f.ipvsScheduler },
		"ipvs-sync-period":                  func(c *C) { c.IPVS.SyncPeriod = d(f.ipvsSync) },
		"ipvs-min-sync-period":              func(c *C) { c.IPVS.MinSyncPeriod = d(f.ipvsMinSync) },
		"ipvs-strict-arp":                   func(c *C) { c.IPVS.StrictARP = f.ipvsStrictARP },
		"ipvs-exclude-cidrs":                func(c *C) { c.IPVS.ExcludeCIDRs = f.ipvsExclude },
		"ipvs-tcp-timeout":                  func(c *C) { c.IPVS.TCPTimeout = d(f.ipvsTCP) },
		"ipvs-tcpfin-timeout":               func(c *C) { c.IPVS.TCPFinTimeout = d(f.ipvsTCPFin) },
		"ipvs-udp-timeout":                  func(c *C) { c.IPVS.UDPTimeout = d(f.ipvsUDP) },
		"conntrack-max-per-core":            func(c *C) { c.Conntrack.MaxPerCore = &f.ctMaxPerCore },
		"conntrack-min":                     func(c *C) { c.Conntrack.Min = &f.ctMin },
		"conntrack-tcp-timeout-established": func(c *C) { v := d(f.ctEstablished); c.Conntrack.TCPEstablishedTimeout = &v },
		"conntrack-tcp-timeout-close-wait":  func(c *C) { v := d(f.ctCloseWait); c.Conntrack.TCPCloseWaitTimeout = &v },
		"conntrack-udp-timeout":             func(c *C) { c.Conntrack.UDPTimeout = d(f.ctUDP) },
		"conntrack-udp-timeout-stream":      func(c *C) { c.Conntrack.UDPStreamTimeout = d(f.ctUDPStream) },
		"healthz-bind-address":              func(c *C) { c.HealthzBindAddress = f.healthzAddress },
		"metrics-bind-address":              func(c *C) { c.MetricsBindAddress = f.metricsAddress },
		"profiling":                         func(c *C) { c.EnableProfiling = f.profiling },
		"logging-format":                    func(c *C) { c.Logging.Format = logOpts.Format },
	}
}
