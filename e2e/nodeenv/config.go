// Package nodeenv runs the container runtime side of a test node: containerd (with its CRI
// plugin, runc and a bridge CNI network) under one state directory, pointed at the local image
// registry. Teardown removes everything such an environment made, also after a crash.
package nodeenv

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/kubenode/kubenode/e2e/images"
)

// Defaults for Options.
const (
	DefaultPodCIDR        = "10.244.0.0/24"
	DefaultNFTablePrefix  = "kubenode"
	containerdNamespace   = "k8s.io"
	recordFile            = "nodeenv.json"
	cniBinDir             = "/usr/lib/cni"
	cniStateDir           = "/var/lib/cni"
	shimSocketDir         = "/run/containerd/s"
	runcRoot              = "/run/containerd/runc/" + containerdNamespace
	maxLinkNameLen        = 15
	containerdSocketName  = "containerd.sock"
	containerdConfigName  = "containerd.toml"
	containerdLogFileName = "containerd.log"
)

// record is what Start writes to <StateDir>/nodeenv.json before it starts anything, so that
// Teardown knows every name it has to remove even after a crash.
type record struct {
	StateDir        string   `json:"stateDir"`
	NetworkName     string   `json:"networkName"`
	BridgeName      string   `json:"bridgeName"`
	PodCIDR         string   `json:"podCIDR"`
	CgroupRoots     []string `json:"cgroupRoots,omitempty"`
	NFTablePrefixes []string `json:"nftTablePrefixes,omitempty"`
	ContainerdPID   int      `json:"containerdPID,omitempty"`
}

// envID names the kernel objects of the environment in stateDir, so two environments (a test
// and `make up`) never share a bridge or an IPAM store.
func envID(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	return hex.EncodeToString(sum[:])[:8]
}

// resolve validates o and fills in defaults; it touches nothing.
func (o Options) resolve() (record, error) {
	if o.StateDir == "" {
		return record{}, fmt.Errorf("nodeenv: Options.StateDir is required")
	}
	sd, err := filepath.Abs(o.StateDir)
	if err != nil {
		return record{}, fmt.Errorf("nodeenv: Options.StateDir %q: %w", o.StateDir, err)
	}
	if sd == "/" {
		return record{}, fmt.Errorf("nodeenv: Options.StateDir must not be /")
	}
	r := defaultRecord(sd)
	if o.PodCIDR != "" {
		r.PodCIDR = o.PodCIDR
	}
	p, err := netip.ParsePrefix(r.PodCIDR)
	if err != nil || !p.Addr().Is4() || p.Bits() > 29 {
		return record{}, fmt.Errorf("nodeenv: Options.PodCIDR %q: want an IPv4 CIDR of /29 or larger", r.PodCIDR)
	}
	r.PodCIDR = p.Masked().String()
	if o.NetworkName != "" {
		r.NetworkName = o.NetworkName
	}
	if o.BridgeName != "" {
		if len(o.BridgeName) > maxLinkNameLen || strings.ContainsAny(o.BridgeName, "/ ") {
			return record{}, fmt.Errorf("nodeenv: Options.BridgeName %q: want a link name of at most %d characters", o.BridgeName, maxLinkNameLen)
		}
		r.BridgeName = o.BridgeName
	}
	for _, c := range o.CgroupRoots {
		if !strings.HasPrefix(c, "/") || filepath.Clean(c) == "/" || strings.Contains(c, "..") {
			return record{}, fmt.Errorf("nodeenv: Options.CgroupRoots entry %q: want an absolute cgroup path below the root", c)
		}
		r.CgroupRoots = append(r.CgroupRoots, filepath.Clean(c))
	}
	if o.NFTablePrefixes != nil {
		r.NFTablePrefixes = nil
		for _, p := range o.NFTablePrefixes {
			if len(p) < 3 {
				return record{}, fmt.Errorf("nodeenv: Options.NFTablePrefixes entry %q is too short to be safe", p)
			}
			r.NFTablePrefixes = append(r.NFTablePrefixes, p)
		}
	}
	return r, nil
}

func defaultRecord(stateDir string) record {
	id := envID(stateDir)
	return record{
		StateDir:    stateDir,
		NetworkName: "kubenode-" + id,
		BridgeName:  "kn-" + id,
		PodCIDR:     DefaultPodCIDR,
	}
}

// paths of the files and directories under the state dir.
type paths struct{ root string }

func (p paths) socket() string         { return filepath.Join(p.root, containerdSocketName) }
func (p paths) config() string         { return filepath.Join(p.root, containerdConfigName) }
func (p paths) containerdRoot() string { return filepath.Join(p.root, "root") }
func (p paths) containerdState() string {
	return filepath.Join(p.root, "state")
}
func (p paths) cniConfDir() string { return filepath.Join(p.root, "cni", "net.d") }
func (p paths) certsDir() string   { return filepath.Join(p.root, "certs.d") }
func (p paths) record() string     { return filepath.Join(p.root, recordFile) }
func (p paths) taskDir() string {
	return filepath.Join(p.containerdState(), "io.containerd.runtime.v2.task")
}

// containerdConfig renders containerd 1.6's config (version 2) for the environment.
func containerdConfig(p paths, sandboxImage string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return fmt.Sprintf(`version = 2
root = %s
state = %s
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %s

[ttrpc]
  address = %s

[plugins."io.containerd.internal.v1.opt"]
  path = %s

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %s
  # This machine lacks CAP_SYS_RESOURCE: negative oom_score_adj values must be raised to 0.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  # Several environments may run at once: no fixed streaming port.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %s
    conf_dir = %s
    max_conf_num = 1

  # Only config_path: setting registry.mirrors as well makes the CRI plugin fail to load.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %s
`, q(p.containerdRoot()), q(p.containerdState()), q(p.socket()), q(p.socket()+".ttrpc"),
		q(filepath.Join(p.root, "opt")), q(sandboxImage), q(cniBinDir), q(p.cniConfDir()), q(p.certsDir()))
}

// cniConflist renders the pod network: a bridge with host-local IPAM, hostPort mappings and
// loopback.
func cniConflist(r record) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       r.NetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      r.BridgeName,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": r.PodCIDR}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "loopback"},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// hostsToml sends pulls for one registry host to the local registry over plain HTTP.
func hostsToml(host, registryAddr string) string {
	server := "https://" + host
	if host == "docker.io" {
		server = "https://registry-1.docker.io"
	}
	return fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", server, "http://"+registryAddr)
}

// registryHosts is the default list of hosts the local registry stands in for.
func registryHosts(o Options) []string {
	if len(o.RegistryHosts) > 0 {
		return o.RegistryHosts
	}
	return images.Hosts()
}
