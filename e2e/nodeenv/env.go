package nodeenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"

	"github.com/kubenode/kubenode/e2e/images"
)

// Options configure Start.
type Options struct {
	// StateDir holds everything the environment writes: containerd's root, state and socket,
	// the CNI config, certs.d. Required. Teardown(StateDir) removes it.
	StateDir string
	// RegistryAddr is the local registry's host:port; pulls of RegistryHosts go there. Empty
	// leaves registry resolution to containerd's defaults.
	RegistryAddr string
	// RegistryHosts are redirected to RegistryAddr; empty means images.Hosts().
	RegistryHosts []string
	// PodCIDR is the bridge network's IPAM range; default DefaultPodCIDR. Environments that run
	// at the same time need ranges that do not overlap.
	PodCIDR string
	// NetworkName and BridgeName default to names derived from StateDir.
	NetworkName string
	BridgeName  string
	// CgroupRoots are cgroup paths (relative to each hierarchy's root, e.g. "/kubepods") that
	// the node's kubelet creates pods under; Teardown removes those trees in every hierarchy.
	CgroupRoots []string
	// NFTablePrefixes name the nftables tables (in the host network namespace) that belong to
	// this node, e.g. ones a kube-proxy made; Teardown deletes them. Default: none, because the
	// host namespace is shared: a default would delete another node's live tables (a dev node's
	// kube-proxy) whenever any suite tears down. A node that runs kube-proxy on the host passes
	// DefaultNFTablePrefix.
	NFTablePrefixes []string
	// ContainerdPath is the containerd binary; empty means "containerd" from PATH.
	ContainerdPath string
	// Output receives containerd's stdout and stderr; nil means <StateDir>/containerd.log.
	Output io.Writer
	Log    *zap.Logger
}

// Env is a running environment.
type Env struct {
	rec  record
	p    paths
	cmd  *exec.Cmd
	out  io.Closer
	log  *zap.Logger
	done chan error
}

// Start writes the configuration, starts containerd as a child in its own process group and
// returns once its CRI plugin answers with runtime and network ready.
func Start(ctx context.Context, o Options) (*Env, error) {
	rec, err := o.resolve()
	if err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("nodeenv")
	p := paths{root: rec.StateDir}
	bin := o.ContainerdPath
	if bin == "" {
		bin = "containerd"
	}
	if bin, err = exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("nodeenv: containerd binary (apt-get install containerd): %w", err)
	}

	for _, d := range []string{p.root, p.cniConfDir(), p.certsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("nodeenv: %w", err)
		}
	}
	if err := writeRecord(p, rec); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.config(), []byte(containerdConfig(p, images.Pause)), 0o644); err != nil {
		return nil, fmt.Errorf("nodeenv: write containerd config: %w", err)
	}
	conflist, err := cniConflist(rec)
	if err != nil {
		return nil, fmt.Errorf("nodeenv: CNI config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p.cniConfDir(), "10-"+rec.NetworkName+".conflist"), conflist, 0o644); err != nil {
		return nil, fmt.Errorf("nodeenv: write CNI config: %w", err)
	}
	if o.RegistryAddr != "" {
		for _, h := range registryHosts(o) {
			dir := filepath.Join(p.certsDir(), h)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("nodeenv: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hostsToml(h, o.RegistryAddr)), 0o644); err != nil {
				return nil, fmt.Errorf("nodeenv: write hosts.toml for %s: %w", h, err)
			}
		}
	}

	e := &Env{rec: rec, p: p, log: log, done: make(chan error, 1)}
	out := o.Output
	if out == nil {
		f, err := os.OpenFile(filepath.Join(p.root, containerdLogFileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("nodeenv: containerd log: %w", err)
		}
		out, e.out = f, f
	}
	_ = os.Remove(p.socket())
	// Not CommandContext: containerd must outlive a Start whose ctx only bounds the start-up.
	e.cmd = exec.Command(bin, "--config", p.config())
	e.cmd.Stdout, e.cmd.Stderr = out, out
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		e.closeOutput()
		return nil, fmt.Errorf("nodeenv: start containerd: %w", err)
	}
	go func() { e.done <- e.cmd.Wait() }()
	rec.ContainerdPID = e.cmd.Process.Pid
	e.rec = rec
	if err := writeRecord(p, rec); err != nil {
		e.kill()
		return nil, err
	}
	log.Info("containerd started", zap.Int("pid", rec.ContainerdPID), zap.String("endpoint", e.Endpoint()))

	if err := e.waitReady(ctx); err != nil {
		e.kill()
		return nil, err
	}
	return e, nil
}

// waitReady polls CRI Status until the runtime and the network report ready.
func (e *Env) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		select {
		case err := <-e.done:
			e.done <- err
			return fmt.Errorf("nodeenv: containerd exited during start-up (%v); see its log in %s", err, e.p.root)
		default:
		}
		if _, err := os.Stat(e.p.socket()); err == nil {
			last = checkCRI(ctx, e.Endpoint())
			if last == nil {
				return nil
			}
		} else {
			last = fmt.Errorf("socket %s not there yet", e.p.socket())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodeenv: containerd's CRI plugin not ready: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkCRI proves the CRI plugin is loaded (containerd runs on without it when its config is
// wrong) and that runc and the CNI network are usable.
func checkCRI(ctx context.Context, endpoint string) error {
	rs, err := Dial(ctx, endpoint, 2*time.Second)
	if err != nil {
		return err
	}
	defer rs.Close(ctx)
	v, err := rs.Version(ctx, "v1")
	if err != nil {
		return fmt.Errorf("CRI Version: %w", err)
	}
	st, err := rs.Status(ctx, false)
	if err != nil {
		return fmt.Errorf("CRI Status: %w", err)
	}
	for _, want := range []string{runtimeapi.RuntimeReady, runtimeapi.NetworkReady} {
		ok := false
		for _, c := range st.GetStatus().GetConditions() {
			if c.GetType() == want && c.GetStatus() {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("CRI %s %s: condition %s is not true: %v", v.GetRuntimeName(), v.GetRuntimeVersion(), want, st.GetStatus().GetConditions())
		}
	}
	return nil
}

// Dial connects a CRI runtime client to endpoint; timeout also bounds each call.
func Dial(ctx context.Context, endpoint string, timeout time.Duration) (internalapi.RuntimeService, error) {
	rs, err := criclient.NewRemoteRuntimeServiceBuilder().
		WithEndpoint(endpoint).
		WithConnectionTimeout(timeout).
		WithTracerProvider(nil).
		Build(ctx)
	if err != nil {
		return nil, fmt.Errorf("CRI connect %s: %w", endpoint, err)
	}
	return rs, nil
}

// Endpoint is containerd's CRI endpoint, unix://<StateDir>/containerd.sock.
func (e *Env) Endpoint() string { return "unix://" + e.p.socket() }

// StateDir is the environment's absolute state directory.
func (e *Env) StateDir() string { return e.rec.StateDir }

// NetworkName is the CNI network's name; BridgeName its bridge; PodCIDR its IPAM range.
func (e *Env) NetworkName() string { return e.rec.NetworkName }
func (e *Env) BridgeName() string  { return e.rec.BridgeName }
func (e *Env) PodCIDR() string     { return e.rec.PodCIDR }

// ContainerdPID is the pid of the containerd child.
func (e *Env) ContainerdPID() int { return e.rec.ContainerdPID }

// Done delivers containerd's exit status once it has exited (to one receiver).
func (e *Env) Done() <-chan error { return e.done }

// Stop removes all pod sandboxes over CRI (their containers would outlive containerd) and
// stops containerd. The state directory stays; Teardown removes it.
func (e *Env) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	if err := removeAllPods(ctx, e.Endpoint(), e.log); err != nil {
		errs = append(errs, err)
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		e.log.Warn("containerd ignored SIGTERM, killing it")
		e.kill()
	}
	e.closeOutput()
	return errors.Join(errs...)
}

func (e *Env) kill() {
	_ = e.cmd.Process.Kill()
	select {
	case err := <-e.done:
		e.done <- err
	case <-time.After(5 * time.Second):
	}
	e.closeOutput()
}

func (e *Env) closeOutput() {
	if e.out != nil {
		_ = e.out.Close()
		e.out = nil
	}
}

// removeAllPods stops and removes every pod sandbox containerd knows.
func removeAllPods(ctx context.Context, endpoint string, log *zap.Logger) error {
	rs, err := Dial(ctx, endpoint, 20*time.Second)
	if err != nil {
		return err
	}
	defer rs.Close(ctx)
	pods, err := rs.ListPodSandbox(ctx, nil)
	if err != nil {
		return fmt.Errorf("nodeenv: list pod sandboxes: %w", err)
	}
	var errs []error
	for _, p := range pods {
		if err := rs.StopPodSandbox(ctx, p.GetId()); err != nil {
			errs = append(errs, fmt.Errorf("nodeenv: stop pod sandbox %s (%s/%s): %w", p.GetId(), p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(), err))
			continue
		}
		if err := rs.RemovePodSandbox(ctx, p.GetId()); err != nil {
			errs = append(errs, fmt.Errorf("nodeenv: remove pod sandbox %s: %w", p.GetId(), err))
		}
	}
	log.Info("pod sandboxes removed", zap.Int("count", len(pods)), zap.Int("errors", len(errs)))
	return errors.Join(errs...)
}

func writeRecord(p paths, r record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("nodeenv: %w", err)
	}
	tmp := p.record() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("nodeenv: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p.record()); err != nil {
		return fmt.Errorf("nodeenv: %w", err)
	}
	return nil
}

// readRecord loads what Start wrote; without one, the names derived from stateDir.
func readRecord(stateDir string) (record, error) {
	data, err := os.ReadFile(paths{root: stateDir}.record())
	if errors.Is(err, os.ErrNotExist) {
		return defaultRecord(stateDir), nil
	}
	if err != nil {
		return record{}, fmt.Errorf("nodeenv: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return record{}, fmt.Errorf("nodeenv: %s: %w", paths{root: stateDir}.record(), err)
	}
	if r.StateDir != stateDir {
		return record{}, fmt.Errorf("nodeenv: %s belongs to state dir %q, not %q", paths{root: stateDir}.record(), r.StateDir, stateDir)
	}
	return r, nil
}
