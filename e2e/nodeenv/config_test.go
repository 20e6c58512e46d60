package nodeenv

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestOptionsResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       Options
		wantErr string // substring naming the bad field; empty for success
		check   func(t *testing.T, r record)
	}{
		{name: "no state dir", o: Options{}, wantErr: "StateDir"},
		{name: "root state dir", o: Options{StateDir: "/"}, wantErr: "StateDir"},
		{name: "bad CIDR", o: Options{StateDir: "/tmp/a", PodCIDR: "10.0.0.0"}, wantErr: "PodCIDR"},
		{name: "IPv6 CIDR", o: Options{StateDir: "/tmp/a", PodCIDR: "fd00::/64"}, wantErr: "PodCIDR"},
		{name: "long bridge name", o: Options{StateDir: "/tmp/a", BridgeName: "a-very-long-bridge"}, wantErr: "BridgeName"},
		{name: "relative cgroup root", o: Options{StateDir: "/tmp/a", CgroupRoots: []string{"kubepods"}}, wantErr: "CgroupRoots"},
		{name: "cgroup root is the root", o: Options{StateDir: "/tmp/a", CgroupRoots: []string{"/"}}, wantErr: "CgroupRoots"},
		{name: "nft prefix too short", o: Options{StateDir: "/tmp/a", NFTablePrefixes: []string{"k"}}, wantErr: "NFTablePrefixes"},
		{
			name: "defaults are per state dir",
			o:    Options{StateDir: "/tmp/a/"},
			check: func(t *testing.T, r record) {
				other, _ := Options{StateDir: "/tmp/b"}.resolve()
				if r.BridgeName == other.BridgeName || r.NetworkName == other.NetworkName {
					t.Errorf("two state dirs share bridge %q / network %q", r.BridgeName, r.NetworkName)
				}
				if len(r.BridgeName) > maxLinkNameLen {
					t.Errorf("bridge name %q longer than a link name may be", r.BridgeName)
				}
				if r.StateDir != "/tmp/a" || r.PodCIDR != DefaultPodCIDR || len(r.NFTablePrefixes) != 0 {
					t.Errorf("defaults: %+v", r)
				}
			},
		},
		{
			name: "CIDR is normalised",
			o:    Options{StateDir: "/tmp/a", PodCIDR: "10.1.2.3/24"},
			check: func(t *testing.T, r record) {
				if r.PodCIDR != "10.1.2.0/24" {
					t.Errorf("PodCIDR = %s, want 10.1.2.0/24", r.PodCIDR)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.o.resolve()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

// TestConfigs checks the facts containerd and the CNI plugins are known to need here.
func TestConfigs(t *testing.T) {
	r, err := Options{StateDir: "/tmp/x", PodCIDR: "10.9.0.0/24"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	cfg := containerdConfig(paths{root: r.StateDir}, "registry.k8s.io/pause:3.10")
	for _, want := range []string{
		`restrict_oom_score_adj = true`, `SystemdCgroup = false`, `netns_mounts_under_state_dir = true`,
		`config_path = "/tmp/x/certs.d"`, `address = "/tmp/x/containerd.sock"`, `sandbox_image = "registry.k8s.io/pause:3.10"`,
		`"io.containerd.snapshotter.v1.devmapper"`, `bin_dir = "/usr/lib/cni"`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("containerd config lacks %s", want)
		}
	}
	if strings.Contains(cfg, "registry.mirrors\"") || strings.Contains(cfg, "registry.mirrors.") {
		t.Error("containerd config sets registry mirrors: with config_path the CRI plugin then fails to load")
	}

	data, err := cniConflist(r)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type        string `json:"type"`
			Bridge      string `json:"bridge"`
			IsGateway   bool   `json:"isGateway"`
			IPMasq      bool   `json:"ipMasq"`
			HairpinMode bool   `json:"hairpinMode"`
			IPAM        struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != r.NetworkName || len(conf.Plugins) != 3 {
		t.Fatalf("conflist %s", data)
	}
	br := conf.Plugins[0]
	if br.Type != "bridge" || br.Bridge != r.BridgeName || !br.IsGateway || !br.IPMasq || !br.HairpinMode || br.IPAM.Ranges[0][0].Subnet != "10.9.0.0/24" {
		t.Errorf("bridge plugin: %+v", br)
	}
	if conf.Plugins[1].Type != "portmap" || conf.Plugins[2].Type != "loopback" {
		t.Errorf("plugins after bridge: %s, %s; want portmap, loopback", conf.Plugins[1].Type, conf.Plugins[2].Type)
	}

	toml := hostsToml("registry.k8s.io", "127.0.0.1:5000")
	if !strings.Contains(toml, `[host."http://127.0.0.1:5000"]`) || !strings.Contains(toml, `capabilities = ["pull", "resolve"]`) {
		t.Errorf("hosts.toml:\n%s", toml)
	}
}

func TestCNIChainNames(t *testing.T) {
	// Observed on this machine: the bridge plugin's ipMasq chain for this network and sandbox.
	got := cniChainNames("kubenode-f811ee89", "b5670a4010f035886a65aea85cb81c08be2403850df8b30f408aa2357c06ede7")
	if got[0] != "CNI-5031fc0ac71d5b3fb88dbbd0" {
		t.Errorf("masquerade chain = %s, want CNI-5031fc0ac71d5b3fb88dbbd0", got[0])
	}
	if len(got[1]) != 28 || !strings.HasPrefix(got[1], "CNI-DN-") {
		t.Errorf("portmap chain %q: want CNI-DN- and 28 characters", got[1])
	}
}
