// Package v1alpha1 is version v1alpha1 of the kubenode kube-proxy's configuration file, group
// kubeproxy.config.kubenode.io. Field names follow upstream kubeproxy.config.k8s.io/v1alpha1
// wherever the meaning is the same.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// GroupName is the API group of the kube-proxy's configuration.
	GroupName = "kubeproxy.config.kubenode.io"
	// Version is this package's version of the group.
	Version = "v1alpha1"
	// APIVersion is the apiVersion a file of this version carries.
	APIVersion = GroupName + "/" + Version
	// Kind is the kind of the configuration object.
	Kind = "KubeProxyConfiguration"
)

// ProxyMode is the dataplane kube-proxy programs.
type ProxyMode string

const (
	// ProxyModeNFTables programs the whole service dataplane in nftables.
	ProxyModeNFTables ProxyMode = "nftables"
	// ProxyModeIPVS programs IPVS virtual servers (plus nftables for masquerading).
	ProxyModeIPVS ProxyMode = "ipvs"
)

// KubeProxyConfiguration configures the kubenode kube-proxy. Unset fields take the defaults that
// SetDefaults documents; Validate lists every problem.
type KubeProxyConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// ClientConnection configures the connection to the API server.
	ClientConnection ClientConnectionConfiguration `json:"clientConnection"`
	// HostnameOverride is the name of this node, used to find its Node object and local endpoints.
	// Default: "" (the hostname, lower-cased).
	HostnameOverride string `json:"hostnameOverride,omitempty"`
	// BindAddress is an IP of this node whose family decides the primary IP family when the Node
	// object does not say; 0.0.0.0 means IPv4 and :: IPv6. Default: "0.0.0.0".
	BindAddress string `json:"bindAddress,omitempty"`
	// HealthzBindAddress is the host:port of the /healthz endpoint, which fails when syncs stop.
	// Default: "0.0.0.0:10256".
	HealthzBindAddress string `json:"healthzBindAddress,omitempty"`
	// MetricsBindAddress is the host:port of the /metrics endpoint. Default: "127.0.0.1:10249".
	MetricsBindAddress string `json:"metricsBindAddress,omitempty"`
	// EnableProfiling serves /debug/pprof on the metrics endpoint. Default: false.
	EnableProfiling bool `json:"enableProfiling,omitempty"`

	// Mode is the dataplane: "nftables" or "ipvs". Default: "nftables".
	Mode ProxyMode `json:"mode,omitempty"`
	// ClusterCIDR is the pod network, one CIDR or an IPv4 and an IPv6 CIDR separated by a comma.
	// Traffic to a service from outside it is masqueraded. Default: "" (nothing is known to be local).
	ClusterCIDR string `json:"clusterCIDR,omitempty"`
	// NodePortAddresses lists the CIDRs of node addresses on which NodePort services are served, or
	// the single word "primary" for the node's primary IPs. Default: ["primary"].
	NodePortAddresses []string `json:"nodePortAddresses,omitempty"`
	// ConfigSyncPeriod is how often the informers re-list Services and EndpointSlices.
	// Default: 15m.
	ConfigSyncPeriod metav1.Duration `json:"configSyncPeriod,omitempty"`

	// IPVS configures the ipvs mode.
	IPVS IPVSConfiguration `json:"ipvs"`
	// NFTables configures the nftables mode, and the nftables rules the ipvs mode also uses.
	NFTables NFTablesConfiguration `json:"nftables"`
	// Conntrack configures the kernel's connection tracking.
	Conntrack ConntrackConfiguration `json:"conntrack"`
	// OOMScoreAdj is the oom_score_adj kube-proxy gives itself, in [-1000, 1000]; where the process
	// may not lower it, the failure is logged and ignored. Default: -999.
	OOMScoreAdj *int32 `json:"oomScoreAdj,omitempty"`
	// GCPercent is the Go garbage collector's target percentage (like GOGC) kube-proxy runs with,
	// unless the GOGC environment variable is set. 50 lets the heap grow to 1.5x its live data
	// between collections instead of Go's 2x: about a quarter less peak memory at 30k services, for
	// about a tenth more CPU in syncs. Between 10 and 1000. Default: 50.
	GCPercent *int32 `json:"gcPercent,omitempty"`

	// Logging configures the logs. The --log-level and --logging-format flags override it.
	Logging LoggingConfiguration `json:"logging,omitempty"`
}

// ClientConnectionConfiguration configures the API client.
type ClientConnectionConfiguration struct {
	// Kubeconfig is the kubeconfig file with the API server's address and credentials; empty means
	// in-cluster configuration (service account). Default: "".
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// ContentType is the content type of requests to the API server. Default:
	// "application/vnd.kubernetes.protobuf".
	ContentType string `json:"contentType,omitempty"`
	// QPS is the sustained rate of requests per second to the API server. Default: 5.
	QPS float32 `json:"qps,omitempty"`
	// Burst is the most requests sent at once above QPS. Default: 10.
	Burst int32 `json:"burst,omitempty"`
}

// IPVSConfiguration configures the ipvs mode.
type IPVSConfiguration struct {
	// Scheduler is the IPVS scheduler of every virtual server: rr, wrr, lc, wlc, lblc, lblcr, sh,
	// dh, sed, nq or mh. Default: "rr".
	Scheduler string `json:"scheduler,omitempty"`
	// SyncPeriod is the longest time between two full syncs. Default: 30s.
	SyncPeriod metav1.Duration `json:"syncPeriod,omitempty"`
	// MinSyncPeriod is the shortest time between two syncs, so bursts of changes are batched.
	// 0 means the default. Default: 1s.
	MinSyncPeriod metav1.Duration `json:"minSyncPeriod,omitempty"`
	// StrictARP stops the node answering ARP for service IPs on the dummy interface
	// (arp_ignore=1, arp_announce=2), as MetalLB's L2 mode needs. Default: false.
	StrictARP bool `json:"strictARP,omitempty"`
	// ExcludeCIDRs lists CIDRs whose IPVS virtual servers kube-proxy never deletes as stale (at a
	// full sync or in cleanup), even on a node address or one of kube-ipvs0's: another tool manages
	// them. Virtual servers kube-proxy made itself in this run are still removed when their service
	// goes. Default: none.
	ExcludeCIDRs []string `json:"excludeCIDRs,omitempty"`
	// TCPTimeout is the IPVS timeout of idle established TCP connections (ipvsadm --set), set at
	// every full sync where the kernel's differs; 0 keeps the kernel's (15m). Whole seconds; a
	// value between 0 and 1s is an error.
	TCPTimeout metav1.Duration `json:"tcpTimeout,omitempty"`
	// TCPFinTimeout is the IPVS timeout of TCP connections after FIN; 0 keeps the kernel's (2m).
	TCPFinTimeout metav1.Duration `json:"tcpFinTimeout,omitempty"`
	// UDPTimeout is the IPVS timeout of UDP flows; 0 keeps the kernel's (5m).
	UDPTimeout metav1.Duration `json:"udpTimeout,omitempty"`
}

// NFTablesConfiguration configures the nftables mode.
type NFTablesConfiguration struct {
	// SyncPeriod is the longest time between two full syncs. Default: 30s.
	SyncPeriod metav1.Duration `json:"syncPeriod,omitempty"`
	// MinSyncPeriod is the shortest time between two syncs, so bursts of changes are batched.
	// 0 means the default. Default: 1s.
	MinSyncPeriod metav1.Duration `json:"minSyncPeriod,omitempty"`
	// MasqueradeBit is the bit of the packet mark that flags packets for masquerading, in [0, 31].
	// Default: 14.
	MasqueradeBit *int32 `json:"masqueradeBit,omitempty"`
	// MasqueradeAll masquerades all traffic to service IPs, not only traffic from outside
	// ClusterCIDR. Default: false.
	MasqueradeAll bool `json:"masqueradeAll,omitempty"`
}

// ConntrackConfiguration configures the kernel's connection tracking. Zero values leave the kernel's
// setting alone.
type ConntrackConfiguration struct {
	// MaxPerCore is the most tracked connections per CPU core (nf_conntrack_max = max(MaxPerCore *
	// cores, Min)); 0 leaves the limit alone. Default: 32768.
	MaxPerCore *int32 `json:"maxPerCore,omitempty"`
	// Min is the lowest nf_conntrack_max set, whatever the core count. Default: 131072.
	Min *int32 `json:"min,omitempty"`
	// TCPEstablishedTimeout is the idle timeout of established TCP connections; 0 leaves it alone.
	// Default: 24h.
	TCPEstablishedTimeout *metav1.Duration `json:"tcpEstablishedTimeout,omitempty"`
	// TCPCloseWaitTimeout is the timeout of TCP connections in CLOSE_WAIT; 0 leaves it alone.
	// Default: 1h.
	TCPCloseWaitTimeout *metav1.Duration `json:"tcpCloseWaitTimeout,omitempty"`
	// UDPTimeout is the timeout of unreplied UDP flows; 0 leaves it alone. Default: 0s.
	UDPTimeout metav1.Duration `json:"udpTimeout,omitempty"`
	// UDPStreamTimeout is the timeout of UDP flows seen in both directions; 0 leaves it alone.
	// Default: 0s.
	UDPStreamTimeout metav1.Duration `json:"udpStreamTimeout,omitempty"`
}

// LoggingConfiguration configures a component's logs.
type LoggingConfiguration struct {
	// Format is "text" (human-readable) or "json". Default: "text".
	Format string `json:"format,omitempty"`
	// Verbosity is the klog-style verbosity: 0 logs info and above; higher numbers log more debug
	// detail. Default: 0.
	Verbosity uint32 `json:"verbosity,omitempty"`
}
