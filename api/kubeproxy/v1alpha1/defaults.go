package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Default values that SetDefaults fills in.
const (
	DefaultBindAddress           = "0.0.0.0"
	DefaultHealthzBindAddress    = "0.0.0.0:10256"
	DefaultMetricsBindAddress    = "127.0.0.1:10249"
	DefaultContentType           = "application/vnd.kubernetes.protobuf"
	DefaultQPS                   = 5
	DefaultBurst                 = 10
	DefaultMode                  = ProxyModeNFTables
	NodePortAddressesPrimary     = "primary"
	DefaultConfigSyncPeriod      = 15 * time.Minute
	DefaultIPVSScheduler         = "rr"
	DefaultSyncPeriod            = 30 * time.Second
	DefaultMinSyncPeriod         = time.Second
	DefaultMasqueradeBit         = 14
	DefaultConntrackMaxPerCore   = 32 * 1024
	DefaultConntrackMin          = 128 * 1024
	DefaultTCPEstablishedTimeout = 24 * time.Hour
	DefaultTCPCloseWaitTimeout   = time.Hour
	DefaultOOMScoreAdj           = -999
	DefaultGCPercent             = 50
	DefaultLoggingFormat         = "text"
)

// SetDefaults fills every unset field of c with its default. It is idempotent.
// A zero duration means "unset" and takes the default, as upstream does.
func SetDefaults(c *KubeProxyConfiguration) {
	c.APIVersion = APIVersion
	c.Kind = Kind
	str(&c.BindAddress, DefaultBindAddress)
	str(&c.HealthzBindAddress, DefaultHealthzBindAddress)
	str(&c.MetricsBindAddress, DefaultMetricsBindAddress)
	str(&c.ClientConnection.ContentType, DefaultContentType)
	if c.ClientConnection.QPS == 0 {
		c.ClientConnection.QPS = DefaultQPS
	}
	if c.ClientConnection.Burst == 0 {
		c.ClientConnection.Burst = DefaultBurst
	}
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.NodePortAddresses == nil {
		c.NodePortAddresses = []string{NodePortAddressesPrimary}
	}
	dur(&c.ConfigSyncPeriod, DefaultConfigSyncPeriod)

	str(&c.IPVS.Scheduler, DefaultIPVSScheduler)
	dur(&c.IPVS.SyncPeriod, DefaultSyncPeriod)
	dur(&c.IPVS.MinSyncPeriod, DefaultMinSyncPeriod)
	dur(&c.NFTables.SyncPeriod, DefaultSyncPeriod)
	dur(&c.NFTables.MinSyncPeriod, DefaultMinSyncPeriod)
	ptr(&c.NFTables.MasqueradeBit, DefaultMasqueradeBit)

	ptr(&c.Conntrack.MaxPerCore, DefaultConntrackMaxPerCore)
	ptr(&c.Conntrack.Min, DefaultConntrackMin)
	ptr(&c.Conntrack.TCPEstablishedTimeout, metav1.Duration{Duration: DefaultTCPEstablishedTimeout})
	ptr(&c.Conntrack.TCPCloseWaitTimeout, metav1.Duration{Duration: DefaultTCPCloseWaitTimeout})
	ptr(&c.OOMScoreAdj, DefaultOOMScoreAdj)
	ptr(&c.GCPercent, DefaultGCPercent)
	str(&c.Logging.Format, DefaultLoggingFormat)
}

func str(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func dur(p *metav1.Duration, v time.Duration) {
	if p.Duration == 0 {
		p.Duration = v
	}
}

func ptr[T any](p **T, v T) {
	if *p == nil {
		*p = &v
	}
}
