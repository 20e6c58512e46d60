// Package app is the kubelet's command line: flags, config loading (file, then the flags the user
// set, then defaults, then validation), logging, and the hand-off to run.
package app

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kubeletv1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/common/config"
	"github.com/kubenode/kubenode/common/config/flagsets"
	"github.com/kubenode/kubenode/common/hostname"
	"github.com/kubenode/kubenode/common/log"
	"github.com/kubenode/kubenode/common/startup"
	"github.com/kubenode/kubenode/common/version"
	"github.com/kubenode/kubenode/kubelet/internal/kubeletconfig"
)

// Component is the kubelet's name in logs and version output.
const Component = "kubelet"

// DefaultRootDir is where the kubelet keeps its state (pod volumes, plugins, checkpoints).
const DefaultRootDir = "/var/lib/kubelet"

// Options holds the command-line settings that are not part of the configuration file.
type Options struct {
	// ConfigFile is the --config path; empty when the configuration comes from flags alone.
	ConfigFile string
	// Kubeconfig is the kubeconfig with the API server's address and the node's credentials.
	// Empty runs standalone: static pods only, no API server.
	Kubeconfig string
	// HostnameOverride replaces the host name as the node's name.
	HostnameOverride string
	// NodeIPs are the node's addresses from --node-ip, at most one per IP family; empty means
	// autodetect.
	NodeIPs []netip.Addr
	// RootDir is the kubelet's state directory.
	RootDir string
}

// NodeName is the node's name: --hostname-override, else the host name, lower-cased as Kubernetes
// object names must be.
func (o *Options) NodeName() (string, error) {
	return hostname.Resolve(o.HostnameOverride)
}

// runFunc is run's signature; tests pass their own to see what the command would run with.
type runFunc func(ctx context.Context, o *Options, cfg *kubeletv1alpha1.KubeletConfiguration, log *zap.Logger) error

// NewCommand returns the kubelet's root command.
func NewCommand() *cobra.Command { return newCommand(run) }

// flagValues holds the flags that override configuration file fields.
type flagValues struct {
	runtimeEndpoint, imageEndpoint, podManifestPath string
	runtimeRequestTimeout                           time.Duration
	clusterDNS                                      []string
	clusterDomain, resolvConf                       string
	nodeLabels                                      map[string]string
	taints                                          []string
	parsedTaints                                    []kubeletv1alpha1.Taint
	registerNode                                    bool
	providerID                                      string
	maxPods                                         int32
	cgroupDriver, cgroupRoot                        string
	failSwapOn                                      bool
	address, tlsCertFile, tlsKeyFile, clientCAFile  string
	port, healthzPort                               int32
	anonymousAuth                                   bool
	authorizationMode                               string
	nodeIP                                          string
	evictionHard, evictionSoft, evictionSoftGrace   string
	parsedEviction, parsedSoft, parsedSoftGrace     map[string]string
	evictionMaxPodGrace                             int32
	imageGCHigh, imageGCLow                         int32
}

func newCommand(runner runFunc) *cobra.Command {
	o := &Options{RootDir: DefaultRootDir}
	var (
		f           flagValues
		logOpts     log.Options
		showVersion bool
		sections    flagsets.Sections
	)
	cmd := &cobra.Command{
		Use:   Component,
		Short: "The kubenode node agent: runs the pods assigned to this node through a CRI runtime",
		Long: `kubelet runs the pods that the API server assigns to this node, and static pods from a manifest
directory, through a CRI container runtime (containerd). It registers the node, reports its status
and heartbeats, and serves logs, exec and stats on its own API port.

Settings come from --config (a kubelet.config.kubenode.io/v1alpha1 or upstream
kubelet.config.k8s.io/v1beta1 KubeletConfiguration); flags set on the command line override the file.`,
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
			ips, err := parseNodeIPs(f.nodeIP)
			if err != nil {
				return err
			}
			o.NodeIPs = ips
			if f.parsedTaints, err = parseTaints(f.taints); err != nil {
				return err
			}
			if f.parsedEviction, err = parseEvictionMap("eviction-hard", f.evictionHard, "<"); err != nil {
				return err
			}
			if f.parsedSoft, err = parseEvictionMap("eviction-soft", f.evictionSoft, "<"); err != nil {
				return err
			}
			if f.parsedSoftGrace, err = parseEvictionMap("eviction-soft-grace-period", f.evictionSoftGrace, "="); err != nil {
				return err
			}
			cfg, logger, err := startup.Load(startup.Config[kubeletv1alpha1.KubeletConfiguration]{
				Component:  Component,
				ConfigFile: o.ConfigFile,
				Flags:      cmd.Flags(),
				Overrides:  overrides(&f, &logOpts),
				LogOptions: logOpts,
				LoadFile:   kubeletconfig.LoadWithOverrides,
				Logging: func(c *kubeletv1alpha1.KubeletConfiguration) (string, uint32) {
					return c.Logging.Format, c.Logging.Verbosity
				},
			})
			if err != nil {
				return err
			}
			logger.Info("starting", zap.String("version", version.Get(Component).String()))
			return runner(cmd.Context(), o, cfg, logger)
		},
	}

	fs := sections.Section("Config")
	fs.StringVar(&o.ConfigFile, "config", "", "configuration file (YAML or JSON); flags set on the command line override its fields")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig with the API server's address and this node's credentials; empty runs standalone (static pods only)")
	fs.StringVar(&o.RootDir, "root-dir", o.RootDir, "directory for the kubelet's state: pod volumes, plugins, checkpoints")

	fs = sections.Section("Node")
	fs.StringVar(&o.HostnameOverride, "hostname-override", "", "name of this node instead of the host name")
	fs.StringVar(&f.nodeIP, "node-ip", "", "IP address(es) of this node, comma-separated, at most one per family; empty autodetects")
	fs.StringToStringVar(&f.nodeLabels, "node-labels", nil, "labels to register the node with, key=value pairs separated by commas [nodeLabels]")
	fs.StringSliceVar(&f.taints, "register-with-taints", nil, "taints to register the node with, key=value:Effect or key:Effect, comma-separated [registerWithTaints]")
	fs.BoolVar(&f.registerNode, "register-node", true, "create this node's Node object [registerNode]")
	fs.StringVar(&f.providerID, "provider-id", "", "the node's ID in the cloud provider's database [providerID]")
	fs.Int32Var(&f.maxPods, "max-pods", kubeletv1alpha1.DefaultMaxPods, "number of pods this node admits [maxPods]")

	fs = sections.Section("Runtime")
	fs.StringVar(&f.runtimeEndpoint, "container-runtime-endpoint", kubeletv1alpha1.DefaultContainerRuntimeEndpoint, "CRI runtime endpoint [containerRuntimeEndpoint]")
	fs.StringVar(&f.imageEndpoint, "image-service-endpoint", "", "CRI image endpoint; empty uses the runtime endpoint [imageServiceEndpoint]")
	fs.DurationVar(&f.runtimeRequestTimeout, "runtime-request-timeout", kubeletv1alpha1.DefaultRuntimeRequestTimeout, "timeout of each CRI call except image pulls [runtimeRequestTimeout]")
	fs.StringVar(&f.podManifestPath, "pod-manifest-path", "", "directory of static pod manifests [staticPodPath]")
	fs.StringVar(&f.cgroupDriver, "cgroup-driver", kubeletv1alpha1.DefaultCgroupDriver, "cgroup driver: cgroupfs (systemd is refused at start-up: not supported yet); containerd must match [cgroupDriver]")
	fs.StringVar(&f.cgroupRoot, "cgroup-root", kubeletv1alpha1.DefaultCgroupRoot, "cgroup under which pod cgroups are made [cgroupRoot]")
	fs.BoolVar(&f.failSwapOn, "fail-swap-on", true, "refuse to start when swap is on [failSwapOn]")

	fs = sections.Section("Resources")
	fs.StringVar(&f.evictionHard, "eviction-hard", "", "hard eviction thresholds as upstream writes them, e.g. memory.available<100Mi,nodefs.available<10%; replaces the defaults [evictionHard]")
	fs.StringVar(&f.evictionSoft, "eviction-soft", "", "soft eviction thresholds, e.g. memory.available<500Mi; each needs a grace period [evictionSoft]")
	fs.StringVar(&f.evictionSoftGrace, "eviction-soft-grace-period", "", "how long each soft threshold must stay crossed before evicting, e.g. memory.available=1m30s [evictionSoftGracePeriod]")
	fs.Int32Var(&f.evictionMaxPodGrace, "eviction-max-pod-grace-period", 0, "cap in seconds on the termination grace of pods evicted for soft thresholds; 0 means 1 s [evictionMaxPodGracePeriod]")
	fs.Int32Var(&f.imageGCHigh, "image-gc-high-threshold", kubeletv1alpha1.DefaultImageGCHighThreshold, "image filesystem usage (percent) that starts image garbage collection; 100 disables it [imageGCHighThresholdPercent]")
	fs.Int32Var(&f.imageGCLow, "image-gc-low-threshold", kubeletv1alpha1.DefaultImageGCLowThreshold, "usage (percent) image garbage collection frees down to [imageGCLowThresholdPercent]")

	fs = sections.Section("Networking")
	fs.StringSliceVar(&f.clusterDNS, "cluster-dns", nil, "IPs of the cluster DNS servers, comma-separated [clusterDNS]")
	fs.StringVar(&f.clusterDomain, "cluster-domain", "", "cluster DNS domain, e.g. cluster.local [clusterDomain]")
	fs.StringVar(&f.resolvConf, "resolv-conf", kubeletv1alpha1.DefaultResolverConfig, "resolver file pods with dnsPolicy Default inherit [resolvConf]")

	fs = sections.Section("Server")
	fs.StringVar(&f.address, "address", kubeletv1alpha1.DefaultAddress, "IP the kubelet API server listens on [address]")
	fs.Int32Var(&f.port, "port", kubeletv1alpha1.DefaultPort, "port of the kubelet API server [port]")
	fs.Int32Var(&f.healthzPort, "healthz-port", kubeletv1alpha1.DefaultHealthzPort, "port of /healthz on healthzBindAddress; 0 disables it [healthzPort]")
	fs.StringVar(&f.tlsCertFile, "tls-cert-file", "", "serving certificate of the kubelet API server [tlsCertFile]")
	fs.StringVar(&f.tlsKeyFile, "tls-private-key-file", "", "private key of the serving certificate [tlsPrivateKeyFile]")
	fs.StringVar(&f.clientCAFile, "client-ca-file", "", "CA bundle that authenticates client certificates [authentication.x509.clientCAFile]")
	fs.BoolVar(&f.anonymousAuth, "anonymous-auth", false, "let unauthenticated requests through as system:anonymous [authentication.anonymous.enabled]")
	fs.StringVar(&f.authorizationMode, "authorization-mode", kubeletv1alpha1.AuthorizationModeWebhook, "Webhook or AlwaysAllow [authorization.mode]")

	logOpts.AddFlags(sections.Section("Logging"))

	sections.Section("General").BoolVar(&showVersion, "version", false, "print the version and commit, then exit")
	sections.Install(cmd)
	return cmd
}

// overrides copies each flag the user set into the configuration; the field name follows each
// flag's help text in brackets.
func overrides(f *flagValues, logOpts *log.Options) config.Overrides[kubeletv1alpha1.KubeletConfiguration] {
	type C = kubeletv1alpha1.KubeletConfiguration
	return config.Overrides[C]{
		"node-labels":                   func(c *C) { c.NodeLabels = f.nodeLabels },
		"register-with-taints":          func(c *C) { c.RegisterWithTaints = f.parsedTaints },
		"register-node":                 func(c *C) { c.RegisterNode = &f.registerNode },
		"provider-id":                   func(c *C) { c.ProviderID = f.providerID },
		"max-pods":                      func(c *C) { c.MaxPods = f.maxPods },
		"container-runtime-endpoint":    func(c *C) { c.ContainerRuntimeEndpoint = f.runtimeEndpoint },
		"image-service-endpoint":        func(c *C) { c.ImageServiceEndpoint = f.imageEndpoint },
		"runtime-request-timeout":       func(c *C) { c.RuntimeRequestTimeout = metav1.Duration{Duration: f.runtimeRequestTimeout} },
		"pod-manifest-path":             func(c *C) { c.StaticPodPath = f.podManifestPath },
		"cgroup-driver":                 func(c *C) { c.CgroupDriver = f.cgroupDriver },
		"cgroup-root":                   func(c *C) { c.CgroupRoot = f.cgroupRoot },
		"fail-swap-on":                  func(c *C) { c.FailSwapOn = &f.failSwapOn },
		"eviction-hard":                 func(c *C) { c.EvictionHard = f.parsedEviction },
		"eviction-soft":                 func(c *C) { c.EvictionSoft = f.parsedSoft },
		"eviction-soft-grace-period":    func(c *C) { c.EvictionSoftGracePeriod = f.parsedSoftGrace },
		"eviction-max-pod-grace-period": func(c *C) { c.EvictionMaxPodGracePeriod = f.evictionMaxPodGrace },
		"image-gc-high-threshold":       func(c *C) { c.ImageGCHighThresholdPercent = &f.imageGCHigh },
		"image-gc-low-threshold":        func(c *C) { c.ImageGCLowThresholdPercent = &f.imageGCLow },
		"cluster-dns":                   func(c *C) { c.ClusterDNS = f.clusterDNS },
		"cluster-domain":                func(c *C) { c.ClusterDomain = f.clusterDomain },
		"resolv-conf":                   func(c *C) { c.ResolverConfig = &f.resolvConf },
		"address":                       func(c *C) { c.Address = f.address },
		"port":                          func(c *C) { c.Port = f.port },
		"healthz-port":                  func(c *C) { c.HealthzPort = &f.healthzPort },
		"tls-cert-file":                 func(c *C) { c.TLSCertFile = f.tlsCertFile },
		"tls-private-key-file":          func(c *C) { c.TLSPrivateKeyFile = f.tlsKeyFile },
		"client-ca-file":                func(c *C) { c.Authentication.X509.ClientCAFile = f.clientCAFile },
		"anonymous-auth":                func(c *C) { c.Authentication.Anonymous.Enabled = &f.anonymousAuth },
		"authorization-mode":            func(c *C) { c.Authorization.Mode = f.authorizationMode },
		"logging-format":                func(c *C) { c.Logging.Format = logOpts.Format },
	}
}

// parseNodeIPs parses --node-ip: one IP, or an IPv4 and an IPv6 address separated by a comma.
func parseNodeIPs(s string) ([]netip.Addr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ips []netip.Addr
	for _, part := range strings.Split(s, ",") {
		ip, err := netip.ParseAddr(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("invalid --node-ip %q: %q is not an IP address", s, part)
		}
		for _, have := range ips {
			if have.Is4() == ip.Is4() {
				return nil, fmt.Errorf("invalid --node-ip %q: at most one address per IP family", s)
			}
		}
		ips = append(ips, ip.Unmap())
	}
	return ips, nil
}

// parseTaints parses --register-with-taints entries of the form key=value:Effect or key:Effect.
// Field validation (key syntax, effect) happens with the rest of the configuration.
func parseTaints(specs []string) ([]kubeletv1alpha1.Taint, error) {
	var out []kubeletv1alpha1.Taint
	for _, spec := range specs {
		kv, effect, ok := strings.Cut(spec, ":")
		if !ok || kv == "" || effect == "" {
			return nil, fmt.Errorf("invalid --register-with-taints entry %q: want key=value:Effect or key:Effect", spec)
		}
		key, value, _ := strings.Cut(kv, "=")
		out = append(out, kubeletv1alpha1.Taint{Key: key, Value: value, Effect: effect})
	}
	return out, nil
}

// parseEvictionMap parses an eviction flag in upstream's form: signal<quantity pairs
// (--eviction-hard, --eviction-soft: "memory.available<100Mi,nodefs.available<10%") or
// signal=duration pairs (--eviction-soft-grace-period: "memory.available=1m30s"), separated by
// commas. Values are checked with the config.
func parseEvictionMap(flag, s, sep string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	example := "signal<quantity (e.g. memory.available<100Mi)"
	if sep == "=" {
		example = "signal=duration (e.g. memory.available=1m30s)"
	}
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		signal, value, ok := strings.Cut(strings.TrimSpace(part), sep)
		if !ok || signal == "" || value == "" {
			return nil, fmt.Errorf("invalid --%s %q: %q is not %s", flag, s, part, example)
		}
		if _, dup := out[signal]; dup {
			return nil, fmt.Errorf("invalid --%s %q: %s given twice", flag, s, signal)
		}
		out[signal] = value
	}
	return out, nil
}
