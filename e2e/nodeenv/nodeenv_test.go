package nodeenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"

	"github.com/kubenode/kubenode/e2e/images"
)

// testEnv is one environment a test runs pods on.
type testEnv struct {
	env        *Env
	id         string // unique suffix of the test's cgroup root and nft table prefix
	cgroupRoot string
	nftPrefix  string
	stateDir   string
}

func requireNode(t *testing.T) {
	t.Helper()
	if why := MissingPrerequisite(); why != "" {
		t.Skip(why)
	}
}

func cacheDir(t *testing.T) string {
	if c := os.Getenv("KUBENODE_CACHE"); c != "" {
		return filepath.Join(c, "images")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(home, ".cache", "kubenode", "images")
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startEnv builds (or reuses) the images, serves them and starts an environment with a random
// pod range in 10.246.0.0/16, torn down when the test ends.
func startEnv(t *testing.T, ctx context.Context) *testEnv {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	imgs, err := images.Build(ctx, images.Options{CacheDir: cacheDir(t), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := images.Serve(ctx, "", imgs, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })

	id := randomHex(t, 4)
	sd, err := os.MkdirTemp("", "kubenode-test-")
	if err != nil {
		t.Fatal(err)
	}
	octet, _ := rand.Int(rand.Reader, big.NewInt(256))
	te := &testEnv{id: id, cgroupRoot: "/kubenode-test-" + id, nftPrefix: "kubenode-test-" + id, stateDir: sd}
	t.Cleanup(func() {
		if t.Failed() {
			if data, err := os.ReadFile(filepath.Join(sd, containerdLogFileName)); err == nil {
				t.Logf("containerd log (tail):\n%s", tail(string(data), 40))
			}
		}
		if err := Teardown(context.Background(), sd, log); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	env, err := Start(ctx, Options{
		StateDir:        sd,
		RegistryAddr:    reg.Addr(),
		PodCIDR:         fmt.Sprintf("10.246.%d.0/24", octet.Int64()),
		CgroupRoots:     []string{te.cgroupRoot},
		NFTablePrefixes: []string{te.nftPrefix},
		Log:             log,
	})
	if err != nil {
		t.Fatal(err)
	}
	te.env = env
	return te
}

// randomPort picks a hostPort unlikely to collide with another test's.
func randomPort(t *testing.T) int32 {
	n, err := rand.Int(rand.Reader, big.NewInt(10000))
	if err != nil {
		t.Fatal(err)
	}
	return int32(20000 + n.Int64())
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runEchoPod runs a pod sandbox with one container of the echo image over CRI, its port 8080
// also published as hostPort, and returns the pod IP.
func runEchoPod(t *testing.T, ctx context.Context, te *testEnv, name string, hostPort int32) string {
	t.Helper()
	rs, err := Dial(ctx, te.env.Endpoint(), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close(context.Background()) })
	is, err := criclient.NewRemoteImageServiceBuilder().WithEndpoint(te.env.Endpoint()).
		WithConnectionTimeout(60 * time.Second).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is.PullImage(ctx, &runtimeapi.ImageSpec{Image: images.Echo}, nil, nil); err != nil {
		t.Fatalf("pull %s: %v", images.Echo, err)
	}

	uid := randomHex(t, 8)
	logDir := filepath.Join(te.stateDir, "pods", uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: hostPort}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: te.cgroupRoot + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
			},
		},
	}
	podID, err := rs.RunPodSandbox(ctx, podCfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	ctrID, err := rs.CreateContainer(ctx, podID, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "echo"},
		Image:    &runtimeapi.ImageSpec{Image: images.Echo},
		Envs:     []*runtimeapi.KeyValue{{Key: "PORT", Value: []byte("8080")}},
		LogPath:  "echo.log",
	}, podCfg)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if err := rs.StartContainer(ctx, ctrID); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	st, err := rs.PodSandboxStatus(ctx, podID, false)
	if err != nil {
		t.Fatal(err)
	}
	ip := st.GetStatus().GetNetwork().GetIp()
	if ip == "" {
		t.Fatalf("pod %s has no IP", name)
	}
	return ip
}

// httpGet asks url until it answers 200 or the deadline passes.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body)
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPodAnswersHTTP runs a pod of the local echo image on the environment's containerd over
// CRI and asks it over HTTP from the host at its pod IP, through the CNI bridge.
func TestPodAnswersHTTP(t *testing.T) {
	requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	te := startEnv(t, ctx)
	hostPort := randomPort(t)
	ip := runEchoPod(t, ctx, te, "echo-a", hostPort)

	if got := strings.TrimSpace(httpGet(t, "http://"+ip+":8080/anything")); got != "echo-a" {
		t.Errorf("echo answered %q, want the pod's hostname %q", got, "echo-a")
	}
	if got := strings.TrimSpace(httpGet(t, "http://"+ip+":8080/healthz")); got != "ok" {
		t.Errorf("/healthz answered %q, want ok", got)
	}
	// hostPort through portmap, on the node's loopback address.
	if got := strings.TrimSpace(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort))); got != "echo-a" {
		t.Errorf("hostPort %d answered %q, want %q", hostPort, got, "echo-a")
	}
	if err := te.env.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// leftovers is what an environment with a running pod has in the kernel and on disk.
type leftovers struct {
	pids       []int    // containerd, shims, pause and echo
	cgroupDirs []string // the pod's cgroups in every hierarchy
	netnsMount []string // nsfs mounts under the state dir
	mounts     []string // everything mounted under the state dir
	hostVeths  []string // links enslaved to the bridge
	bridge     bool
	nftTables  []string
	ipamDir    bool
	stateDir   bool
	// Kept outside the state dir, per task.
	runcState  []string // runc's state dirs
	cniResults []string // libcni's cached results
	natChains  []string // the CNI plugins' per-pod nat chains
}

func observe(t *testing.T, te *testEnv, tasks []task) leftovers {
	t.Helper()
	var l leftovers
	rec, err := readRecord(te.stateDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err != nil {
		rec = defaultRecord(te.stateDir)
	}
	l.pids = ourProcesses(te.stateDir, []string{te.cgroupRoot})
	for _, mnt := range cgroupMounts() {
		if _, err := os.Stat(filepath.Join(mnt, te.cgroupRoot)); err == nil {
			l.cgroupDirs = append(l.cgroupDirs, filepath.Join(mnt, te.cgroupRoot))
		}
	}
	for _, m := range readMounts() {
		if strings.HasPrefix(m.mountPoint, te.stateDir+"/") {
			l.mounts = append(l.mounts, m.mountPoint)
			if m.fsType == "nsfs" {
				l.netnsMount = append(l.netnsMount, m.mountPoint)
			}
		}
	}
	if br, err := netlink.LinkByName(te.env.BridgeName()); err == nil {
		l.bridge = true
		links, _ := netlink.LinkList()
		for _, k := range links {
			if k.Attrs().MasterIndex == br.Attrs().Index {
				l.hostVeths = append(l.hostVeths, k.Attrs().Name)
			}
		}
	}
	if c, err := nftables.New(); err == nil {
		tables, _ := c.ListTables()
		for _, tb := range tables {
			if strings.HasPrefix(tb.Name, te.nftPrefix) {
				l.nftTables = append(l.nftTables, tb.Name)
			}
		}
	}
	_, err = os.Stat(filepath.Join(cniStateDir, "networks", rec.NetworkName))
	l.ipamDir = err == nil
	_, err = os.Stat(te.stateDir)
	l.stateDir = err == nil
	ourChains := map[string]bool{}
	for _, tk := range tasks {
		if _, err := os.Stat(filepath.Join(runcRoot, tk.id)); err == nil {
			l.runcState = append(l.runcState, filepath.Join(runcRoot, tk.id))
		}
		res, _ := filepath.Glob(filepath.Join(cniStateDir, "results", "*-"+tk.id+"-*"))
		l.cniResults = append(l.cniResults, res...)
		for _, n := range cniChainNames(rec.NetworkName, tk.id) {
			ourChains[n] = true
		}
	}
	if c, err := nftables.New(); err == nil {
		chains, _ := c.ListChains()
		for _, ch := range chains {
			if ourChains[ch.Name] {
				l.natChains = append(l.natChains, ch.Table.Name+"/"+ch.Name)
			}
		}
	}
	return l
}

// TestTeardownAfterCrash SIGKILLs containerd and its shims while a pod runs (its containers go
// on running, as after a real crash) and checks that Teardown leaves no process, mount, netns,
// link, cgroup, nftables table, IPAM state or state dir of the environment behind.
func TestTeardownAfterCrash(t *testing.T) {
	requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	te := startEnv(t, ctx)
	ip := runEchoPod(t, ctx, te, "echo-crash", randomPort(t))
	httpGet(t, "http://"+ip+":8080/healthz")

	// A table as the node's kube-proxy would make it.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: te.nftPrefix + "-proxy"})
	if err := c.Flush(); err != nil {
		t.Fatalf("add nft table: %v", err)
	}

	tasks := readTasks(paths{root: te.stateDir})
	if len(tasks) != 2 {
		t.Fatalf("containerd's state holds %d tasks, want 2 (sandbox and echo): %+v", len(tasks), tasks)
	}
	before := observe(t, te, tasks)
	for what, missing := range map[string]bool{
		"processes (containerd, shims, pause, echo: want >= 4)": len(before.pids) < 4,
		"pod cgroups": len(before.cgroupDirs) == 0,
		"netns mount": len(before.netnsMount) == 0,
		"host veth":   len(before.hostVeths) == 0,
		"bridge":      !before.bridge,
		"nft table":   len(before.nftTables) == 0,
		"IPAM state":  !before.ipamDir,
	} {
		if missing {
			t.Fatalf("before the crash there is no %s: the test would prove nothing (%+v)", what, before)
		}
	}

	// The crash: containerd and every shim die at once; the containers live on.
	for _, pid := range before.pids {
		args := readCmdline(pid)
		if len(args) > 0 && (strings.HasSuffix(args[0], "containerd") || strings.Contains(args[0], "containerd-shim")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	select {
	case <-te.env.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("containerd did not die of SIGKILL")
	}
	if got := strings.TrimSpace(httpGet(t, "http://"+ip+":8080/")); got != "echo-crash" {
		t.Fatalf("after the crash the pod answered %q; want it still running", got)
	}

	if err := Teardown(ctx, te.stateDir, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	after := observe(t, te, tasks)
	for _, pid := range before.pids {
		if alive(pid) {
			t.Errorf("process %d %v survived", pid, readCmdline(pid))
		}
	}
	checks := []struct {
		what string
		left any
		bad  bool
	}{
		{"processes", after.pids, len(after.pids) > 0},
		{"cgroups", after.cgroupDirs, len(after.cgroupDirs) > 0},
		{"netns mounts", after.netnsMount, len(after.netnsMount) > 0},
		{"mounts", after.mounts, len(after.mounts) > 0},
		{"host veths", before.hostVeths, linksExist(before.hostVeths)},
		{"bridge", te.env.BridgeName(), after.bridge},
		{"nft tables", after.nftTables, len(after.nftTables) > 0},
		{"IPAM state", te.env.NetworkName(), after.ipamDir},
		{"state dir", te.stateDir, after.stateDir},
		{"runc state", after.runcState, len(after.runcState) > 0},
		{"CNI result cache", after.cniResults, len(after.cniResults) > 0},
		{"CNI nat chains", after.natChains, len(after.natChains) > 0},
	}
	for _, c := range checks {
		if c.bad {
			t.Errorf("teardown left %s: %v", c.what, c.left)
		}
	}
	for _, mp := range before.netnsMount {
		var st unix.Stat_t
		if err := unix.Stat(mp, &st); err == nil {
			t.Errorf("netns file %s still exists", mp)
		}
	}

	// Idempotent: a second teardown finds nothing and succeeds.
	if err := Teardown(ctx, te.stateDir, nil); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}

// alive reports whether pid exists and is not a zombie waiting for a parent's wait().
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func linksExist(names []string) bool {
	for _, n := range names {
		if _, err := netlink.LinkByName(n); err == nil {
			return true
		}
	}
	return false
}
