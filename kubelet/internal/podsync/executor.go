package podsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/probe"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// executor carries out one sync's actions.
type executor struct {
	s            *Syncer
	pod          *v1.Pod
	ref          *v1.Pod // object events are recorded on
	rs           *runtime.PodState
	vols         *pendingVolumes // nil: the pod is terminating, no volumes
	volumes      map[string]string
	cgroupParent string
	log          *zap.Logger

	sandboxID  string
	sandboxCfg *runtimeapi.PodSandboxConfig
	podIPs     []string
	// waiting collects start errors by container ("" reason clears a previous error).
	waiting map[string]plan.Waiting
	retry   bool
	// started maps containers started in this sync to their names.
	started map[string]string
	// ticket is this sync's place in the start queue (0: not taken yet).
	ticket uint64
}

// startSlot waits for a slot for one pod-starting runtime call; call the result when it returns.
// Only the runtime calls hold a slot: pulls, volume set-up, hooks and API lookups run outside,
// so a slow registry or API server cannot hold up other pods' starts.
func (e *executor) startSlot(ctx context.Context) (func(), error) {
	q := e.s.d.StartSlots
	if q == nil {
		return func() {}, nil
	}
	if e.ticket == 0 {
		e.ticket = q.Ticket()
	}
	return q.Acquire(ctx, e.ticket)
}

func (e *executor) event(typ, reason, msg string) {
	if e.ref != nil {
		e.s.d.Recorder.Event(e.ref, typ, reason, msg)
	}
}

func (e *executor) init() {
	e.waiting = map[string]plan.Waiting{}
	e.started = map[string]string{}
	if e.rs != nil {
		for _, sb := range e.rs.Observed.Sandboxes {
			if sb.Ready {
				e.sandboxID = sb.ID
				e.podIPs = e.rs.IPs
				break
			}
		}
	}
}

// runResize applies an accepted resize to a steady pod (its volumes are set up already).
func (e *executor) runResize(ctx context.Context, steps []plan.ContainerResize, cur *v1.Pod) error {
	e.init()
	if e.vols != nil {
		paths, err := e.vols.wait()
		if err != nil {
			return err
		}
		e.volumes = paths
	}
	return e.resize(ctx, steps, cur)
}

func (e *executor) run(ctx context.Context, actions []plan.Action) error {
	e.init()
	var errs []error
	volumesReady := e.vols == nil
	for _, a := range actions {
		if !volumesReady && a.Kind != plan.CreateSandbox {
			// Everything but the sandbox waits for the volumes; when they failed nothing more
			// runs (the sync reports it and retries).
			paths, err := e.vols.wait()
			if err != nil {
				return nil
			}
			e.volumes, volumesReady = paths, true
		}
		switch a.Kind {
		case plan.KillPod:
			if err := e.killPod(ctx, a.Grace); err != nil {
				return err
			}
			e.sandboxID = ""
		case plan.CreateSandbox:
			if err := e.createSandbox(ctx, a.Attempt); err != nil {
				e.event(v1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
				return err
			}
		case plan.StartContainer:
			if err := e.startContainer(ctx, a); err != nil {
				errs = append(errs, err)
			}
		case plan.KillContainer:
			c, _ := runtime.FindContainer(e.pod, a.Container)
			e.event(v1.EventTypeNormal, "Killing", fmt.Sprintf("Stopping container %s: %s", a.Container, a.Reason))
			if err := e.stopContainer(ctx, a.ContainerID, c, a.Grace); err != nil {
				return err
			}
		case plan.RemoveContainer:
			if err := e.s.d.Runtime.RemoveContainer(ctx, a.ContainerID); err != nil {
				e.log.Warn("remove container", zap.Error(err))
			}
		case plan.RemoveSandbox:
			if err := e.s.d.Runtime.RemoveSandbox(ctx, a.SandboxID); err != nil {
				e.log.Warn("remove sandbox", zap.Error(err))
			}
		}
	}
	// Start errors are reported through the status, not as sync failures.
	if len(errs) > 0 {
		e.retry = true
	}
	return nil
}

func (e *executor) sandboxConfig(attempt uint32) (*runtimeapi.PodSandboxConfig, error) {
	return runtime.SandboxConfig(e.pod, attempt, e.cgroupParent, e.s.d.Node.Facts)
}

// handlerRuntime runs sandboxes with a CRI runtime handler (a RuntimeClass's).
type handlerRuntime interface {
	RunSandboxWithHandler(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, []string, error)
}

func (e *executor) createSandbox(ctx context.Context, attempt uint32) error {
	cfg, err := e.sandboxConfig(attempt)
	if err != nil {
		return err
	}
	// An unknown RuntimeClass fails the sandbox like upstream (FailedCreatePodSandBox, retried
	// with back-off): the class may yet be created.
	handler, err := runtime.RuntimeHandler(ctx, e.pod, e.s.d.RuntimeClasses)
	if err != nil {
		return err
	}
	release, err := e.startSlot(ctx)
	if err != nil {
		return fmt.Errorf("create sandbox for pod %s/%s: waiting to start: %w", e.pod.Namespace, e.pod.Name, err)
	}
	defer release()
	var id string
	var ips []string
	if hr, ok := e.s.d.Runtime.(handlerRuntime); ok && handler != "" {
		id, ips, err = hr.RunSandboxWithHandler(ctx, cfg, handler)
	} else if handler != "" {
		err = fmt.Errorf("runtime handler %q: this runtime adapter cannot select one", handler)
	} else {
		id, ips, err = e.s.d.Runtime.RunSandbox(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("create sandbox for pod %s/%s: %w", e.pod.Namespace, e.pod.Name, err)
	}
	e.sandboxID, e.sandboxCfg, e.podIPs = id, cfg, ips
	return nil
}

func (e *executor) startContainer(ctx context.Context, a plan.Action) error {
	c, ok := runtime.FindContainer(e.pod, a.Container)
	if !ok {
		return fmt.Errorf("no container %q in pod", a.Container)
	}
	fail := func(reason string, err error) error {
		msg := err.Error()
		var ce *runtime.ContainerError
		if errors.As(err, &ce) {
			reason, msg = ce.Reason, ce.Message
		}
		e.waiting[c.Name] = plan.Waiting{Reason: reason, Message: msg}
		typ := v1.EventTypeWarning
		ev := "Failed"
		if reason == runtime.ReasonImagePullBackOff {
			ev = "BackOff"
			typ = v1.EventTypeNormal
		}
		e.event(typ, ev, fmt.Sprintf("%s: %s", reason, msg))
		e.log.Info("container start failed", zap.String("container", c.Name), zap.String("reason", reason), zap.String("message", msg))
		return err
	}
	if e.sandboxID == "" {
		return fail(runtime.ReasonCreateContainerErr, errors.New("pod sandbox is not ready"))
	}
	if e.sandboxCfg == nil {
		// The sandbox existed before this sync: its config is deterministic from the pod.
		var attempt uint32
		if e.rs != nil {
			for _, sb := range e.rs.Observed.Sandboxes {
				if sb.ID == e.sandboxID {
					attempt = sb.Attempt
				}
			}
		}
		cfg, err := e.sandboxConfig(attempt)
		if err != nil {
			return fail(runtime.ReasonCreateConfigError, err)
		}
		e.sandboxCfg = cfg
	}
	// Like upstream: Pulling/Pulled around a real pull, only Pulled when the image is present.
	var pullStart time.Time
	imageRef, err := e.s.d.Images.EnsureImageNotify(ctx, e.pod, c, e.sandboxCfg, func() {
		pullStart = e.s.d.Now()
		e.event(v1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", c.Image))
	})
	if err != nil {
		return fail(runtime.ReasonErrImagePull, err)
	}
	if pullStart.IsZero() {
		e.event(v1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", c.Image))
	} else {
		e.event(v1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s", c.Image, e.s.d.Now().Sub(pullStart).Round(time.Millisecond)))
	}
	facts := runtime.PodFacts{PodIPs: e.podIPs, HostIPs: e.s.d.Node.HostIPs, NodeName: e.s.d.Node.Name}
	if e.pod.Spec.HostNetwork {
		facts.PodIPs = e.s.d.Node.HostIPs
	}
	if e.s.d.Services != nil {
		facts.ServiceEnv = runtime.ServiceEnv(e.pod, e.s.d.Services.ForPod(e.pod.Namespace))
	}
	env, err := runtime.Env(ctx, e.s.d.Objects, e.pod, c, facts, e.s.d.Node.Allocatable)
	if err != nil {
		return fail(runtime.ReasonCreateConfigError, err)
	}
	files, err := runtime.PrepareContainerFiles(e.pod, c, e.podIPs, e.s.d.Node.Facts)
	if err != nil {
		return fail(runtime.ReasonCreateConfigError, err)
	}
	cfg, err := runtime.ContainerConfig(e.pod, runtime.ContainerInput{Container: c, Init: a.Init, Attempt: a.Attempt, Env: env, Volumes: e.volumes, ImageRef: imageRef, Files: files, TargetID: a.TargetID}, e.s.d.Node.Facts)
	if err != nil {
		return fail(runtime.ReasonCreateConfigError, err)
	}
	release, err := e.startSlot(ctx)
	if err != nil {
		return fail(runtime.ReasonCreateContainerErr, fmt.Errorf("waiting to start: %w", err))
	}
	id, err := e.s.d.Runtime.CreateContainer(ctx, e.sandboxID, cfg, e.sandboxCfg)
	if err != nil {
		release()
		return fail(runtime.ReasonCreateContainerErr, err)
	}
	e.event(v1.EventTypeNormal, "Created", "Created container "+c.Name)
	err = e.s.d.Runtime.StartContainer(ctx, id)
	release()
	if err != nil {
		// A container that could not start is useless; remove it so the next try is clean.
		_ = e.s.d.Runtime.RemoveContainer(ctx, id)
		return fail(runtime.ReasonRunContainerError, err)
	}
	e.event(v1.EventTypeNormal, "Started", "Started container "+c.Name)
	e.started[id] = c.Name
	if !a.Ephemeral {
		if err := e.s.recordActual(e.pod.UID, id, c.Resources); err != nil {
			e.log.Warn("record container resources", zap.String("container", c.Name), zap.Error(err))
		}
	}
	e.waiting[c.Name] = plan.Waiting{} // clears an earlier error
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if err := e.runHook(ctx, id, c.Lifecycle.PostStart, plan.Grace(e.pod)); err != nil {
			// Upstream kills a container whose postStart hook fails.
			e.event(v1.EventTypeWarning, "FailedPostStartHook", err.Error())
			_ = e.s.d.Runtime.StopContainer(ctx, id, 0)
			return fail(runtime.ReasonRunContainerError, fmt.Errorf("postStart hook: %w", err))
		}
	}
	return nil
}

// stopContainer runs the preStop hook (within grace), then stops the container with the rest.
func (e *executor) stopContainer(ctx context.Context, id string, c *v1.Container, grace int64) error {
	start := time.Now()
	var hook *v1.LifecycleHandler
	if c != nil && c.Lifecycle != nil {
		hook = c.Lifecycle.PreStop
	}
	if hook == nil && e.rs != nil {
		// Without the spec (pod gone), the handler saved on the container still runs.
		if js := e.rs.Details[id].PreStop; js != "" {
			var h v1.LifecycleHandler
			if json.Unmarshal([]byte(js), &h) == nil {
				hook = &h
			}
		}
	}
	if hook != nil && grace > 0 {
		hctx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second)
		if err := e.runHook(hctx, id, hook, grace); err != nil {
			e.event(v1.EventTypeWarning, "FailedPreStopHook", err.Error())
			e.log.Info("preStop hook failed", zap.String("container", id), zap.Error(err))
		}
		cancel()
		grace -= int64(time.Since(start) / time.Second)
		if grace < 2 {
			grace = 2 // upstream's minimum after a hook
		}
	}
	if err := e.s.d.Runtime.StopContainer(ctx, id, grace); err != nil {
		return err
	}
	return nil
}

// killPod stops every running container (regular ones in parallel, then sidecars in reverse
// order, as upstream does), then every sandbox. grace < 0 takes each container's recorded grace.
func (e *executor) killPod(ctx context.Context, grace int64) error {
	if e.rs == nil {
		return nil
	}
	var regular, sidecars []plan.Container
	for _, c := range e.rs.Observed.Containers {
		if c.State == plan.StateExited {
			continue
		}
		if e.rs.Details[c.ID].Init == "sidecar" {
			sidecars = append(sidecars, c)
		} else {
			regular = append(regular, c)
		}
	}
	start := time.Now()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, c := range regular {
		wg.Add(1)
		go func(c plan.Container) {
			defer wg.Done()
			spec, _ := runtime.FindContainer(e.pod, c.Name)
			g := grace
			if g < 0 {
				// The pod is gone: use the grace it had when the container was made.
				g = e.rs.Details[c.ID].Grace
				if g < 0 {
					g = 30
				}
			}
			e.event(v1.EventTypeNormal, "Killing", "Stopping container "+c.Name)
			if err := e.stopContainer(ctx, c.ID, spec, g); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	for i := len(sidecars) - 1; i >= 0; i-- {
		c := sidecars[i]
		spec, _ := runtime.FindContainer(e.pod, c.Name)
		g := grace - int64(time.Since(start)/time.Second)
		if grace < 0 || g < 2 {
			g = 2
		}
		if err := e.stopContainer(ctx, c.ID, spec, g); err != nil {
			errs = append(errs, err)
		}
	}
	for _, sb := range e.rs.Observed.Sandboxes {
		if !sb.Ready {
			continue
		}
		if err := e.s.d.Runtime.StopSandbox(ctx, sb.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runHook runs an exec, httpGet or sleep lifecycle handler.
func (e *executor) runHook(ctx context.Context, containerID string, h *v1.LifecycleHandler, grace int64) error {
	timeout := time.Duration(grace) * time.Second
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	switch {
	case h.Exec != nil:
		_, stderr, err := e.s.d.Runtime.ExecSync(ctx, containerID, h.Exec.Command, timeout)
		if err != nil {
			return fmt.Errorf("exec %v: %w (stderr %q)", h.Exec.Command, err, strings.TrimSpace(string(stderr)))
		}
		return nil
	case h.HTTPGet != nil:
		return e.httpHook(ctx, containerID, h.HTTPGet, timeout)
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
		return nil
	}
	return errors.New("handler has no action")
}

func (e *executor) httpHook(ctx context.Context, containerID string, g *v1.HTTPGetAction, timeout time.Duration) error {
	host := g.Host
	if host == "" {
		if len(e.podIPs) > 0 && e.podIPs[0] != "" {
			host = e.podIPs[0]
		} else if e.rs != nil && len(e.rs.IPs) > 0 {
			host = e.rs.IPs[0]
		}
	}
	port, err := e.hookPort(g.Port, containerID)
	if err != nil {
		return err
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + g.Path
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("httpGet %s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("httpGet %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// hookPort resolves a hook's port against the ports of the container it belongs to.
func (e *executor) hookPort(p intstr.IntOrString, containerID string) (int, error) {
	c := &v1.Container{}
	if name, ok := e.started[containerID]; ok {
		if spec, found := runtime.FindContainer(e.pod, name); found {
			c = spec
		}
	} else if e.rs != nil {
		for _, oc := range e.rs.Observed.Containers {
			if oc.ID == containerID {
				if spec, found := runtime.FindContainer(e.pod, oc.Name); found {
					c = spec
				}
			}
		}
	}
	return probe.Port(p, c)
}
