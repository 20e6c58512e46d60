package runtime

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// HostDNS is the node's resolver configuration (from resolvConf).
type HostDNS struct {
	Servers  []string
	Searches []string
	Options  []string
}

// ParseResolvConf reads a resolv.conf.
func ParseResolvConf(r io.Reader) (HostDNS, error) {
	var d HostDNS
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				d.Servers = append(d.Servers, f[1])
			}
		case "search", "domain":
			d.Searches = append(d.Searches[:0], f[1:]...)
		case "options":
			d.Options = append(d.Options, f[1:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return HostDNS{}, fmt.Errorf("read resolv.conf: %w", err)
	}
	return d, nil
}

// DNSSettings are the node's DNS facts for pods.
type DNSSettings struct {
	ClusterDNS    []string
	ClusterDomain string
	Host          HostDNS
}

// DNSConfig computes a pod's resolver configuration from its dnsPolicy and dnsConfig, as
// upstream does: ClusterFirst uses the cluster DNS with the namespace, svc and cluster search
// path (ndots:5); pods on the host network, and every pod when no cluster DNS is configured,
// fall back to the node's resolver; None uses only dnsConfig.
func DNSConfig(pod *v1.Pod, s DNSSettings) *runtimeapi.DNSConfig {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = v1.DNSClusterFirst
	}
	cluster := false
	switch policy {
	case v1.DNSClusterFirstWithHostNet:
		cluster = true
	case v1.DNSClusterFirst:
		cluster = !pod.Spec.HostNetwork
	}
	if cluster && len(s.ClusterDNS) == 0 {
		cluster = false
	}
	out := &runtimeapi.DNSConfig{}
	switch {
	case policy == v1.DNSNone:
	case cluster:
		out.Servers = append([]string(nil), s.ClusterDNS...)
		d := s.ClusterDomain
		if d == "" {
			d = "cluster.local"
		}
		out.Searches = []string{pod.Namespace + ".svc." + d, "svc." + d, d}
		out.Searches = append(out.Searches, s.Host.Searches...)
		out.Options = []string{"ndots:5"}
	default:
		out.Servers = append([]string(nil), s.Host.Servers...)
		out.Searches = append([]string(nil), s.Host.Searches...)
		out.Options = append([]string(nil), s.Host.Options...)
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		out.Servers = appendUnique(out.Servers, dc.Nameservers...)
		out.Searches = appendUnique(out.Searches, dc.Searches...)
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			out.Options = mergeOption(out.Options, o.Name, opt)
		}
	}
	return out
}

func appendUnique(list []string, add ...string) []string {
	for _, a := range add {
		found := false
		for _, l := range list {
			if l == a {
				found = true
			}
		}
		if !found {
			list = append(list, a)
		}
	}
	return list
}

// mergeOption replaces an option of the same name (ndots:5 -> ndots:2) or appends it.
func mergeOption(opts []string, name, opt string) []string {
	for i, o := range opts {
		if o == name || strings.HasPrefix(o, name+":") {
			opts[i] = opt
			return opts
		}
	}
	return append(opts, opt)
}
