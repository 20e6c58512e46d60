package v1alpha1

import (
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// EvictionSignals returns the signals evictionHard accepts.
func EvictionSignals() []string {
	return []string{
		"memory.available", "nodefs.available", "nodefs.inodesFree",
		"imagefs.available", "imagefs.inodesFree", "pid.available",
	}
}

// ReservableResources returns the resources systemReserved and kubeReserved accept.
func ReservableResources() []string { return []string{"cpu", "memory", "ephemeral-storage", "pid"} }

// Validate returns every problem with a defaulted configuration, each naming its field path.
func Validate(c *KubeletConfiguration) field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), c.APIVersion, "must be "+APIVersion))
	}
	if c.Kind != Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), c.Kind, "must be "+Kind))
	}
	errs = append(errs, validateEndpoint(c.ContainerRuntimeEndpoint, field.NewPath("containerRuntimeEndpoint"))...)
	errs = append(errs, validateEndpoint(c.ImageServiceEndpoint, field.NewPath("imageServiceEndpoint"))...)
	errs = append(errs, positive(c.RuntimeRequestTimeout, field.NewPath("runtimeRequestTimeout"))...)
	if c.StaticPodPath != "" && !path.IsAbs(c.StaticPodPath) {
		errs = append(errs, field.Invalid(field.NewPath("staticPodPath"), c.StaticPodPath, "must be an absolute path"))
	}
	errs = append(errs, positive(c.FileCheckFrequency, field.NewPath("fileCheckFrequency"))...)
	errs = append(errs, positive(c.SyncFrequency, field.NewPath("syncFrequency"))...)

	errs = append(errs, validateIP(c.Address, field.NewPath("address"))...)
	errs = append(errs, validatePort(c.Port, false, field.NewPath("port"))...)
	errs = append(errs, validateIP(c.HealthzBindAddress, field.NewPath("healthzBindAddress"))...)
	if c.HealthzPort == nil {
		errs = append(errs, field.Required(field.NewPath("healthzPort"), "defaulting did not run"))
	} else {
		errs = append(errs, validatePort(*c.HealthzPort, true, field.NewPath("healthzPort"))...)
	}
	if (c.TLSCertFile == "") != (c.TLSPrivateKeyFile == "") {
		if c.TLSCertFile == "" {
			errs = append(errs, field.Required(field.NewPath("tlsCertFile"), "must be set together with tlsPrivateKeyFile"))
		} else {
			errs = append(errs, field.Required(field.NewPath("tlsPrivateKeyFile"), "must be set together with tlsCertFile"))
		}
	}
	authn := field.NewPath("authentication")
	errs = append(errs, nonNegative(c.Authentication.Webhook.CacheTTL, authn.Child("webhook", "cacheTTL"))...)
	authz := field.NewPath("authorization")
	switch c.Authorization.Mode {
	case AuthorizationModeWebhook, AuthorizationModeAlwaysAllow:
	default:
		errs = append(errs, field.NotSupported(authz.Child("mode"), c.Authorization.Mode, []string{AuthorizationModeWebhook, AuthorizationModeAlwaysAllow}))
	}
	if c.Authorization.Mode == AuthorizationModeWebhook && c.Authentication.Webhook.Enabled != nil && !*c.Authentication.Webhook.Enabled &&
		c.Authentication.X509.ClientCAFile == "" && (c.Authentication.Anonymous.Enabled == nil || !*c.Authentication.Anonymous.Enabled) {
		errs = append(errs, field.Invalid(authn, "", "every authentication method is off, so no request could ever be authorized: enable webhook, x509 or anonymous"))
	}
	errs = append(errs, nonNegative(c.Authorization.Webhook.CacheAuthorizedTTL, authz.Child("webhook", "cacheAuthorizedTTL"))...)
	errs = append(errs, nonNegative(c.Authorization.Webhook.CacheUnauthorizedTTL, authz.Child("webhook", "cacheUnauthorizedTTL"))...)

	for i, ip := range c.ClusterDNS {
		errs = append(errs, validateIP(ip, field.NewPath("clusterDNS").Index(i))...)
	}
	if c.ClusterDomain != "" {
		for _, msg := range validation.IsDNS1123Subdomain(c.ClusterDomain) {
			errs = append(errs, field.Invalid(field.NewPath("clusterDomain"), c.ClusterDomain, msg))
		}
	}
	if c.ResolverConfig != nil && *c.ResolverConfig != "" && !path.IsAbs(*c.ResolverConfig) {
		errs = append(errs, field.Invalid(field.NewPath("resolvConf"), *c.ResolverConfig, "must be an absolute path or empty"))
	}

	if c.MaxPods < 1 {
		errs = append(errs, field.Invalid(field.NewPath("maxPods"), c.MaxPods, "must be at least 1"))
	}
	if c.PodPidsLimit != nil && *c.PodPidsLimit != -1 && *c.PodPidsLimit < 1 {
		errs = append(errs, field.Invalid(field.NewPath("podPidsLimit"), *c.PodPidsLimit, "must be -1 (unlimited) or positive"))
	}
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		errs = append(errs, field.NotSupported(field.NewPath("cgroupDriver"), c.CgroupDriver, []string{"cgroupfs", "systemd"}))
	}
	if !path.IsAbs(c.CgroupRoot) {
		errs = append(errs, field.Invalid(field.NewPath("cgroupRoot"), c.CgroupRoot, "must be an absolute cgroup path such as /"))
	}
	errs = append(errs, validateReserved(c.SystemReserved, field.NewPath("systemReserved"))...)
	errs = append(errs, validateReserved(c.KubeReserved, field.NewPath("kubeReserved"))...)
	errs = append(errs, validateEviction(c.EvictionHard, field.NewPath("evictionHard"))...)
	errs = append(errs, validateEviction(c.EvictionSoft, field.NewPath("evictionSoft"))...)
	errs = append(errs, validateSoftGracePeriods(c.EvictionSoft, c.EvictionSoftGracePeriod, field.NewPath("evictionSoftGracePeriod"))...)
	if c.EvictionMaxPodGracePeriod < 0 {
		errs = append(errs, field.Invalid(field.NewPath("evictionMaxPodGracePeriod"), c.EvictionMaxPodGracePeriod, "must be 0 or more seconds"))
	}
	errs = append(errs, nonNegative(c.EvictionPressureTransitionPeriod, field.NewPath("evictionPressureTransitionPeriod"))...)
	errs = append(errs, nonNegative(c.ImageMinimumGCAge, field.NewPath("imageMinimumGCAge"))...)

	errs = append(errs, positive(c.NodeStatusUpdateFrequency, field.NewPath("nodeStatusUpdateFrequency"))...)
	errs = append(errs, positive(c.NodeStatusReportFrequency, field.NewPath("nodeStatusReportFrequency"))...)
	if c.NodeLeaseDurationSeconds < 1 {
		errs = append(errs, field.Invalid(field.NewPath("nodeLeaseDurationSeconds"), c.NodeLeaseDurationSeconds, "must be at least 1"))
	}
	for i, t := range c.RegisterWithTaints {
		errs = append(errs, validateTaint(t, field.NewPath("registerWithTaints").Index(i))...)
	}
	errs = append(errs, validateLabels(c.NodeLabels, field.NewPath("nodeLabels"))...)

	if m := c.MaxParallelImagePulls; m != nil {
		mp := field.NewPath("maxParallelImagePulls")
		if *m < 1 {
			errs = append(errs, field.Invalid(mp, *m, "must be positive"))
		} else if *m > 1 && (c.SerializeImagePulls == nil || *c.SerializeImagePulls) {
			errs = append(errs, field.Invalid(mp, *m, "must be 1 or unset when serializeImagePulls is true"))
		}
	}
	if m := c.MaxParallelPodStarts; m != nil && *m < 0 {
		errs = append(errs, field.Invalid(field.NewPath("maxParallelPodStarts"), *m, "must be 0 (no cap) or positive"))
	}
	high, low := field.NewPath("imageGCHighThresholdPercent"), field.NewPath("imageGCLowThresholdPercent")
	if c.ImageGCHighThresholdPercent != nil && (*c.ImageGCHighThresholdPercent < 0 || *c.ImageGCHighThresholdPercent > 100) {
		errs = append(errs, field.Invalid(high, *c.ImageGCHighThresholdPercent, "must be between 0 and 100"))
	}
	if c.ImageGCLowThresholdPercent != nil && (*c.ImageGCLowThresholdPercent < 0 || *c.ImageGCLowThresholdPercent > 100) {
		errs = append(errs, field.Invalid(low, *c.ImageGCLowThresholdPercent, "must be between 0 and 100"))
	}
	if c.ImageGCHighThresholdPercent != nil && c.ImageGCLowThresholdPercent != nil && *c.ImageGCLowThresholdPercent >= *c.ImageGCHighThresholdPercent {
		errs = append(errs, field.Invalid(low, *c.ImageGCLowThresholdPercent, fmt.Sprintf("must be below imageGCHighThresholdPercent (%d)", *c.ImageGCHighThresholdPercent)))
	}
	if q, err := resource.ParseQuantity(c.ContainerLogMaxSize); err != nil || q.Sign() <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("containerLogMaxSize"), c.ContainerLogMaxSize, "must be a positive quantity such as 10Mi"))
	}
	if c.ContainerLogMaxFiles != nil && *c.ContainerLogMaxFiles < 2 {
		errs = append(errs, field.Invalid(field.NewPath("containerLogMaxFiles"), *c.ContainerLogMaxFiles, "must be at least 2"))
	}
	errs = append(errs, validateBackOff(c.CrashLoopBackOff, field.NewPath("crashLoopBackOff"))...)
	errs = append(errs, nonNegative(c.ShutdownGracePeriod, field.NewPath("shutdownGracePeriod"))...)
	errs = append(errs, ValidateLogging(c.Logging, field.NewPath("logging"))...)
	return errs
}

func validateEndpoint(ep string, p *field.Path) field.ErrorList {
	rest, ok := strings.CutPrefix(ep, "unix://")
	if !ok || !path.IsAbs(rest) {
		return field.ErrorList{field.Invalid(p, ep, "must be a unix socket URL such as unix:///run/containerd/containerd.sock")}
	}
	return nil
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

func validateIP(s string, p *field.Path) field.ErrorList {
	if _, err := netip.ParseAddr(s); err != nil {
		return field.ErrorList{field.Invalid(p, s, "must be an IP address")}
	}
	return nil
}

func validatePort(port int32, zeroOK bool, p *field.Path) field.ErrorList {
	if (port == 0 && zeroOK) || (port >= 1 && port <= 65535) {
		return nil
	}
	return field.ErrorList{field.Invalid(p, port, "must be between 1 and 65535")}
}

func validateReserved(m map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedKeys(m) {
		if !contains(ReservableResources(), k) {
			errs = append(errs, field.NotSupported(p.Key(k), k, ReservableResources()))
			continue
		}
		if q, err := resource.ParseQuantity(m[k]); err != nil || q.Sign() < 0 {
			errs = append(errs, field.Invalid(p.Key(k), m[k], "must be a non-negative quantity"))
		}
	}
	return errs
}

func validateEviction(m map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedKeys(m) {
		if !contains(EvictionSignals(), k) {
			errs = append(errs, field.NotSupported(p.Key(k), k, EvictionSignals()))
			continue
		}
		v := m[k]
		if pct, ok := strings.CutSuffix(v, "%"); ok {
			if f, err := strconv.ParseFloat(pct, 64); err != nil || f < 0 || f > 100 {
				errs = append(errs, field.Invalid(p.Key(k), v, "a percentage must be between 0% and 100%"))
			}
			continue
		}
		if q, err := resource.ParseQuantity(v); err != nil || q.Sign() < 0 {
			errs = append(errs, field.Invalid(p.Key(k), v, "must be a quantity (100Mi) or a percentage (10%)"))
		}
	}
	return errs
}

// validateSoftGracePeriods: every soft threshold needs a grace period (upstream refuses to start
// without one), and a grace period without its soft threshold is a mistake worth naming.
func validateSoftGracePeriods(soft, grace map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedKeys(soft) {
		if _, ok := grace[k]; !ok && contains(EvictionSignals(), k) {
			errs = append(errs, field.Required(p.Key(k), "evictionSoft["+k+"] needs a grace period"))
		}
	}
	for _, k := range sortedKeys(grace) {
		if !contains(EvictionSignals(), k) {
			errs = append(errs, field.NotSupported(p.Key(k), k, EvictionSignals()))
			continue
		}
		if d, err := time.ParseDuration(grace[k]); err != nil || d < 0 {
			errs = append(errs, field.Invalid(p.Key(k), grace[k], "must be a non-negative duration such as 1m30s"))
			continue
		}
		if _, ok := soft[k]; !ok {
			errs = append(errs, field.Invalid(p.Key(k), grace[k], "has no evictionSoft["+k+"] threshold"))
		}
	}
	return errs
}

func validateTaint(t Taint, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsQualifiedName(t.Key) {
		errs = append(errs, field.Invalid(p.Child("key"), t.Key, msg))
	}
	for _, msg := range validation.IsValidLabelValue(t.Value) {
		errs = append(errs, field.Invalid(p.Child("value"), t.Value, msg))
	}
	effects := []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
	if !contains(effects, t.Effect) {
		errs = append(errs, field.NotSupported(p.Child("effect"), t.Effect, effects))
	}
	return errs
}

func validateLabels(m map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedKeys(m) {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p.Key(k), k, msg))
		}
		if !selfSettableLabel(k) {
			errs = append(errs, field.Forbidden(p.Key(k), "a node may not set labels in the kubernetes.io or k8s.io namespaces except "+
				"the well-known topology, os, arch, instance-type and hostname labels and those under kubelet.kubernetes.io/ and node.kubernetes.io/; "+
				"the NodeRestriction admission plugin would refuse the Node (node-role.kubernetes.io/* labels are set by an administrator)"))
		}
		for _, msg := range validation.IsValidLabelValue(m[k]) {
			errs = append(errs, field.Invalid(p.Key(k), m[k], msg))
		}
	}
	return errs
}

// selfSettableLabel reports whether a kubelet may set the label on its own Node, following the rules
// of upstream's NodeRestriction admission plugin.
func selfSettableLabel(key string) bool {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	reserved := func(domain string) bool { return ns == domain || strings.HasSuffix(ns, "."+domain) }
	if !reserved("kubernetes.io") && !reserved("k8s.io") {
		return true
	}
	if reserved("kubelet.kubernetes.io") || reserved("node.kubernetes.io") {
		return true
	}
	switch key {
	case "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
		"beta.kubernetes.io/os", "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type",
		"topology.kubernetes.io/zone", "topology.kubernetes.io/region",
		"failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region":
		return true
	}
	return false
}

func validateBackOff(b CrashLoopBackOffConfig, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	initial, max := b.InitialContainerRestartPeriod, b.MaxContainerRestartPeriod
	if initial != nil && (initial.Duration < time.Second || initial.Duration > DefaultMaxRestartPeriod) {
		errs = append(errs, field.Invalid(p.Child("initialContainerRestartPeriod"), initial.Duration.String(), "must be between 1s and 300s"))
	}
	if max != nil && (max.Duration < time.Second || max.Duration > DefaultMaxRestartPeriod) {
		errs = append(errs, field.Invalid(p.Child("maxContainerRestartPeriod"), max.Duration.String(), "must be between 1s and 300s"))
	}
	if initial != nil && max != nil && initial.Duration > max.Duration {
		errs = append(errs, field.Invalid(p.Child("initialContainerRestartPeriod"), initial.Duration.String(), "must not exceed maxContainerRestartPeriod ("+max.Duration.String()+")"))
	}
	return errs
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

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
