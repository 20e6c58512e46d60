package v1alpha1

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// IPVSSchedulers returns the IPVS schedulers the ipvs.scheduler field accepts.
func IPVSSchedulers() []string {
	return []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh"}
}

// Validate returns every problem with a defaulted configuration, each naming its field path.
func Validate(c *KubeProxyConfiguration) field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), c.APIVersion, "must be "+APIVersion))
	}
	if c.Kind != Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), c.Kind, "must be "+Kind))
	}
	cc := field.NewPath("clientConnection")
	if c.ClientConnection.QPS < 0 {
		errs = append(errs, field.Invalid(cc.Child("qps"), c.ClientConnection.QPS, "must not be negative"))
	}
	if c.ClientConnection.Burst < 0 {
		errs = append(errs, field.Invalid(cc.Child("burst"), c.ClientConnection.Burst, "must not be negative"))
	}
	if _, err := netip.ParseAddr(c.BindAddress); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("bindAddress"), c.BindAddress, "must be an IP address"))
	}
	errs = append(errs, validateHostPort(c.HealthzBindAddress, field.NewPath("healthzBindAddress"))...)
	errs = append(errs, validateHostPort(c.MetricsBindAddress, field.NewPath("metricsBindAddress"))...)

	switch c.Mode {
	case ProxyModeNFTables, ProxyModeIPVS:
	default:
		errs = append(errs, field.NotSupported(field.NewPath("mode"), c.Mode, []ProxyMode{ProxyModeNFTables, ProxyModeIPVS}))
	}
	errs = append(errs, validateClusterCIDR(c.ClusterCIDR, field.NewPath("clusterCIDR"))...)
	errs = append(errs, validateNodePortAddresses(c.NodePortAddresses, field.NewPath("nodePortAddresses"))...)
	errs = append(errs, positive(c.ConfigSyncPeriod, field.NewPath("configSyncPeriod"))...)

	ipvs := field.NewPath("ipvs")
	if !contains(IPVSSchedulers(), c.IPVS.Scheduler) {
		errs = append(errs, field.NotSupported(ipvs.Child("scheduler"), c.IPVS.Scheduler, IPVSSchedulers()))
	}
	errs = append(errs, validateSyncPeriods(c.IPVS.SyncPeriod, c.IPVS.MinSyncPeriod, ipvs)...)
	for i, cidr := range c.IPVS.ExcludeCIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			errs = append(errs, field.Invalid(ipvs.Child("excludeCIDRs").Index(i), cidr, "must be a CIDR"))
		}
	}
	errs = append(errs, ipvsTimeout(c.IPVS.TCPTimeout, ipvs.Child("tcpTimeout"))...)
	errs = append(errs, ipvsTimeout(c.IPVS.TCPFinTimeout, ipvs.Child("tcpFinTimeout"))...)
	errs = append(errs, ipvsTimeout(c.IPVS.UDPTimeout, ipvs.Child("udpTimeout"))...)

	nft := field.NewPath("nftables")
	errs = append(errs, validateSyncPeriods(c.NFTables.SyncPeriod, c.NFTables.MinSyncPeriod, nft)...)
	if b := c.NFTables.MasqueradeBit; b != nil && (*b < 0 || *b > 31) {
		errs = append(errs, field.Invalid(nft.Child("masqueradeBit"), *b, "must be between 0 and 31"))
	}

	ct := field.NewPath("conntrack")
	if v := c.Conntrack.MaxPerCore; v != nil && *v < 0 {
		errs = append(errs, field.Invalid(ct.Child("maxPerCore"), *v, "must not be negative"))
	}
	if v := c.Conntrack.Min; v != nil && *v < 0 {
		errs = append(errs, field.Invalid(ct.Child("min"), *v, "must not be negative"))
	}
	if d := c.Conntrack.TCPEstablishedTimeout; d != nil {
		errs = append(errs, nonNegative(*d, ct.Child("tcpEstablishedTimeout"))...)
	}
	if d := c.Conntrack.TCPCloseWaitTimeout; d != nil {
		errs = append(errs, nonNegative(*d, ct.Child("tcpCloseWaitTimeout"))...)
	}
	errs = append(errs, nonNegative(c.Conntrack.UDPTimeout, ct.Child("udpTimeout"))...)
	errs = append(errs, nonNegative(c.Conntrack.UDPStreamTimeout, ct.Child("udpStreamTimeout"))...)

	if v := c.OOMScoreAdj; v != nil && (*v < -1000 || *v > 1000) {
		errs = append(errs, field.Invalid(field.NewPath("oomScoreAdj"), *v, "must be between -1000 and 1000"))
	}
	if v := c.GCPercent; v != nil && (*v < 10 || *v > 1000) {
		errs = append(errs, field.Invalid(field.NewPath("gcPercent"), *v, "must be between 10 and 1000"))
	}
	errs = append(errs, ValidateLogging(c.Logging, field.NewPath("logging"))...)
	return errs
}

func validateHostPort(s string, p *field.Path) field.ErrorList {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return field.ErrorList{field.Invalid(p, s, "must be IP:port, e.g. 0.0.0.0:10256 or [::]:10256")}
	}
	var errs field.ErrorList
	if _, err := netip.ParseAddr(host); err != nil {
		errs = append(errs, field.Invalid(p, s, "host must be an IP address"))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs = append(errs, field.Invalid(p, s, "port must be between 0 and 65535"))
	}
	return errs
}

func validateClusterCIDR(s string, p *field.Path) field.ErrorList {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return field.ErrorList{field.Invalid(p, s, "must be one CIDR, or one IPv4 and one IPv6 CIDR separated by a comma")}
	}
	var errs field.ErrorList
	families := map[bool]bool{}
	for _, part := range parts {
		prefix, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			errs = append(errs, field.Invalid(p, s, "must be a CIDR list: "+strconv.Quote(part)+" is not a CIDR"))
			continue
		}
		if families[prefix.Addr().Is4()] {
			errs = append(errs, field.Invalid(p, s, "may hold at most one CIDR per IP family"))
		}
		families[prefix.Addr().Is4()] = true
	}
	return errs
}

func validateNodePortAddresses(list []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, s := range list {
		if s == NodePortAddressesPrimary {
			if len(list) > 1 {
				errs = append(errs, field.Invalid(p.Index(i), s, `"primary" must be the only entry`))
			}
			continue
		}
		if _, err := netip.ParsePrefix(s); err != nil {
			errs = append(errs, field.Invalid(p.Index(i), s, `must be a CIDR or "primary"`))
		}
	}
	return errs
}

func validateSyncPeriods(sync, minSync metav1.Duration, p *field.Path) field.ErrorList {
	errs := positive(sync, p.Child("syncPeriod"))
	errs = append(errs, nonNegative(minSync, p.Child("minSyncPeriod"))...)
	if sync.Duration > 0 && minSync.Duration > sync.Duration {
		errs = append(errs, field.Invalid(p.Child("minSyncPeriod"), minSync.Duration.String(), "must not exceed syncPeriod ("+sync.Duration.String()+")"))
	}
	return errs
}

func positive(d metav1.Duration, p *field.Path) field.ErrorList {
	if d.Duration <= 0 {
		return field.ErrorList{field.Invalid(p, d.Duration.String(), "must be greater than 0")}
	}
	return nil
}

func nonNegative(d metav1.Duration, p *field.Path) field.ErrorList {
	if d.Duration < 0 {
		return field.ErrorList{field.Invalid(p, d.Duration.String(), "must not be negative")}
	}
	return nil
}

// ipvsTimeout: the kernel keeps whole seconds and reads 0 as "keep mine",
// so a value under a second would silently change nothing.
func ipvsTimeout(d metav1.Duration, p *field.Path) field.ErrorList {
	if d.Duration < 0 || (d.Duration > 0 && d.Duration < time.Second) {
		return field.ErrorList{field.Invalid(p, d.Duration.String(), "must be 0 (keep the kernel's) or at least 1s")}
	}
	return nil
}

// ValidateLogging checks a logging configuration.
func ValidateLogging(l LoggingConfiguration, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if l.Format != "text" && l.Format != "json" {
		errs = append(errs, field.NotSupported(p.Child("format"), l.Format, []string{"text", "json"}))
	}
	if l.Verbosity > 10 {
		errs = append(errs, field.Invalid(p.Child("verbosity"), l.Verbosity, "must be between 0 and 10"))
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
