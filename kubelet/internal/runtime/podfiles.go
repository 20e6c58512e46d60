package runtime

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// ContainerFiles are node files the kubelet mounts into one container besides its volumes.
// They live in the pod's directory (<PodsDir>/<uid>), which the volume teardown removes.
type ContainerFiles struct {
	// TerminationMessage is the file behind the container's terminationMessagePath; "" mounts none.
	TerminationMessage string
	// Hosts is the pod's managed hosts file, mounted at /etc/hosts; "" leaves /etc/hosts to the
	// runtime (containerd then copies the node's).
	Hosts string
}

const etcHosts = "/etc/hosts"

// PrepareContainerFiles writes what ContainerConfig mounts for container c: the pod's hosts file
// (rewritten when the pod's IPs changed) and a new, empty, world-writable termination-message
// file for this container instance (any user the container runs as may write it). With no
// PodsDir it prepares nothing.
func PrepareContainerFiles(pod *v1.Pod, c *v1.Container, podIPs []string, n NodeFacts) (ContainerFiles, error) {
	var out ContainerFiles
	if n.PodsDir == "" {
		return out, nil
	}
	podDir := filepath.Join(n.PodsDir, string(pod.UID))
	if !mountsAt(c, etcHosts) {
		content, err := podHostsContent(pod, podIPs, n)
		if err != nil {
			return out, err
		}
		if content != nil {
			path := filepath.Join(podDir, "etc-hosts")
			if err := writeIfChanged(path, content); err != nil {
				return out, fmt.Errorf("hosts file: %w", err)
			}
			out.Hosts = path
		}
	}
	if c.TerminationMessagePath != "" {
		dir := filepath.Join(podDir, "containers", c.Name)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return out, fmt.Errorf("termination message file: %w", err)
		}
		// Each instance gets its own file, so a restarted container starts with an empty one
		// and the previous instance's message stays readable for lastState.
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return out, err
		}
		path := filepath.Join(dir, hex.EncodeToString(b))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return out, fmt.Errorf("termination message file: %w", err)
		}
		f.Close()
		// The umask narrowed the mode at create time.
		if err := os.Chmod(path, 0o666); err != nil {
			return out, fmt.Errorf("termination message file: %w", err)
		}
		out.TerminationMessage = path
	}
	return out, nil
}

func mountsAt(c *v1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == path {
			return true
		}
	}
	return false
}

// podHostsContent is the pod's hosts file: for host-network pods the node's file plus the
// pod's hostAliases, for the others the managed file. nil when there is nothing to manage yet
// (a pod network without an IP).
func podHostsContent(pod *v1.Pod, podIPs []string, n NodeFacts) ([]byte, error) {
	if pod.Spec.HostNetwork {
		path := n.NodeHostsFile
		if path == "" {
			path = etcHosts
		}
		node, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read the node's hosts file: %w", err)
		}
		return append(node, hostAliasEntries(pod.Spec.HostAliases)...), nil
	}
	var ips []string
	for _, ip := range podIPs {
		if ip != "" {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return nil, nil
	}
	host, domain := PodHostname(pod, n.DNS.ClusterDomain)
	return ManagedHosts(ips, host, domain, pod.Spec.HostAliases), nil
}

// ManagedHosts is the /etc/hosts of a pod on the pod network, in upstream's layout: localhost
// entries, each pod IP with the pod's hostname (FQDN first when it has a subdomain), then the
// hostAliases.
func ManagedHosts(podIPs []string, hostname, domain string, aliases []v1.HostAlias) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, ip := range podIPs {
		if domain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, hostname, domain, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	b.Write(hostAliasEntries(aliases))
	return b.Bytes()
}

func hostAliasEntries(aliases []v1.HostAlias) []byte {
	if len(aliases) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("\n# Entries added by HostAliases.\n")
	for _, a := range aliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	return b.Bytes()
}

// PodHostname returns the pod's hostname (spec.hostname or its name, cut to 63 characters) and,
// when it has a subdomain and the cluster a domain, its domain <subdomain>.<ns>.svc.<cluster>.
func PodHostname(pod *v1.Pod, clusterDomain string) (string, string) {
	host := pod.Name
	if pod.Spec.Hostname != "" {
		host = pod.Spec.Hostname
	}
	if len(host) > 63 {
		host = strings.TrimRight(host[:63], "-.")
	}
	domain := ""
	if pod.Spec.Subdomain != "" && clusterDomain != "" {
		domain = pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + clusterDomain
	}
	return host, domain
}

// writeIfChanged rewrites path in place only when its content differs: a running container has
// the file bind-mounted, so it must keep its inode (no rename), and an unchanged file is not
// truncated under a reader.
func writeIfChanged(path string, content []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	return os.WriteFile(path, content, 0o644)
}
