package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestManagedHosts(t *testing.T) {
	const header = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	aliases := []v1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"db", "db.local"}}, {IP: "fd00::5", Hostnames: []string{"v6"}}}
	cases := []struct {
		name          string
		pod           func(p *v1.Pod)
		ips           []string
		clusterDomain string
		want          string
	}{
		{"pod name as hostname", nil, []string{"10.244.0.7"}, "cluster.local", header + "10.244.0.7\tweb\n"},
		{"hostname and subdomain give the FQDN first", func(p *v1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "h", "sub" }, []string{"10.244.0.7"}, "cluster.local",
			header + "10.244.0.7\th.sub.team.svc.cluster.local\th\n"},
		{"subdomain without a cluster domain", func(p *v1.Pod) { p.Spec.Subdomain = "sub" }, []string{"10.244.0.7"}, "", header + "10.244.0.7\tweb\n"},
		{"dual stack lists each IP", nil, []string{"10.244.0.7", "fd00::7"}, "", header + "10.244.0.7\tweb\nfd00::7\tweb\n"},
		{"hostAliases after the pod's entries", func(p *v1.Pod) { p.Spec.HostAliases = aliases }, []string{"10.244.0.7"}, "",
			header + "10.244.0.7\tweb\n\n# Entries added by HostAliases.\n10.1.2.3\tdb\tdb.local\nfd00::5\tv6\n"},
		{"long name cut to 63", func(p *v1.Pod) { p.Name = strings.Repeat("a", 62) + "-b" }, []string{"10.0.0.1"}, "", header + "10.0.0.1\t" + strings.Repeat("a", 62) + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPod()
			if tc.pod != nil {
				tc.pod(p)
			}
			host, domain := PodHostname(p, tc.clusterDomain)
			if got := string(ManagedHosts(tc.ips, host, domain, p.Spec.HostAliases)); got != tc.want {
				t.Fatalf("hosts file:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestPrepareContainerFiles(t *testing.T) {
	aliases := []v1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"db"}}}
	cases := []struct {
		name       string
		pod        func(p *v1.Pod)
		ips        []string
		noPodsDir  bool
		wantHosts  string // substring; "" means no hosts file is mounted
		wantNoTerm bool
	}{
		{"pod network: managed file and a termination file", func(p *v1.Pod) { p.Spec.HostAliases = aliases }, []string{"10.244.0.9"}, false,
			"10.244.0.9\tweb\n\n# Entries added by HostAliases.\n10.1.2.3\tdb\n", false},
		{"host network: the node's file plus aliases", func(p *v1.Pod) { p.Spec.HostNetwork = true; p.Spec.HostAliases = aliases }, nil, false,
			"127.0.0.1 nodehost\n\n# Entries added by HostAliases.\n10.1.2.3\tdb\n", false},
		{"no pod IP yet leaves /etc/hosts to the runtime", nil, []string{""}, false, "", false},
		{"container mounts its own /etc/hosts", func(p *v1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []v1.VolumeMount{{Name: "h", MountPath: "/etc/hosts/"}}
		}, []string{"10.244.0.9"}, false, "", false},
		{"no terminationMessagePath, no file", func(p *v1.Pod) { p.Spec.Containers[0].TerminationMessagePath = "" }, []string{"10.244.0.9"}, false, "10.244.0.9\tweb", true},
		{"no pods dir prepares nothing", nil, []string{"10.244.0.9"}, true, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			nodeHosts := filepath.Join(dir, "node-hosts")
			if err := os.WriteFile(nodeHosts, []byte("127.0.0.1 nodehost\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			n := NodeFacts{PodsDir: filepath.Join(dir, "pods"), NodeHostsFile: nodeHosts}
			if tc.noPodsDir {
				n.PodsDir = ""
			}
			p := testPod()
			p.Spec.Containers[0].TerminationMessagePath = v1.TerminationMessagePathDefault
			if tc.pod != nil {
				tc.pod(p)
			}
			c := &p.Spec.Containers[0]
			files, err := PrepareContainerFiles(p, c, tc.ips, n)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantHosts == "" {
				if files.Hosts != "" {
					t.Errorf("hosts file %s mounted, want none", files.Hosts)
				}
			} else {
				b, err := os.ReadFile(files.Hosts)
				if err != nil {
					t.Fatalf("hosts file: %v", err)
				}
				if !strings.Contains(string(b), tc.wantHosts) {
					t.Errorf("hosts file:\n%s\nwant it to contain:\n%s", b, tc.wantHosts)
				}
				if filepath.Dir(files.Hosts) != filepath.Join(n.PodsDir, string(p.UID)) {
					t.Errorf("hosts file %s is not in the pod's directory", files.Hosts)
				}
			}
			if tc.wantNoTerm {
				if files.TerminationMessage != "" {
					t.Errorf("termination file %s, want none", files.TerminationMessage)
				}
				return
			}
			fi, err := os.Stat(files.TerminationMessage)
			if err != nil {
				t.Fatalf("termination file: %v", err)
			}
			if fi.Size() != 0 || fi.Mode().Perm() != 0o666 {
				t.Errorf("termination file size %d mode %v, want empty and 0666 (any container user writes it)", fi.Size(), fi.Mode().Perm())
			}
			again, err := PrepareContainerFiles(p, c, tc.ips, n)
			if err != nil {
				t.Fatal(err)
			}
			if again.TerminationMessage == files.TerminationMessage {
				t.Error("a new container instance must get a new termination file")
			}
		})
	}
}

func TestHostsFileFollowsPodIPInPlace(t *testing.T) {
	n := NodeFacts{PodsDir: t.TempDir()}
	p := testPod()
	first, err := PrepareContainerFiles(p, &p.Spec.Containers[0], []string{"10.0.0.1"}, n)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(first.Hosts)
	// A new sandbox got a new IP: the file a running container has mounted must change in place.
	second, err := PrepareContainerFiles(p, &p.Spec.Containers[0], []string{"10.0.0.2"}, n)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(second.Hosts)
	b, _ := os.ReadFile(second.Hosts)
	if second.Hosts != first.Hosts || !os.SameFile(before, after) || !strings.Contains(string(b), "10.0.0.2\tweb") || strings.Contains(string(b), "10.0.0.1") {
		t.Fatalf("hosts file not rewritten in place: %s -> %s:\n%s", first.Hosts, second.Hosts, b)
	}
}
