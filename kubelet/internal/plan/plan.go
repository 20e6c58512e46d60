// Package plan decides what the kubelet does next for one pod. It is pure: the desired pod, what
// the runtime reports for it, the crash-loop back-off state and the current time go in; a list of
// actions, the waiting reasons to report and the new back-off state come out. The pod worker
// executes the actions; nothing here does I/O or reads a clock.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
)

// ContainerState is the runtime state of one container instance.
type ContainerState string

// Runtime states, as CRI reports them.
const (
	StateCreated ContainerState = "created"
	StateRunning ContainerState = "running"
	StateExited  ContainerState = "exited"
	StateUnknown ContainerState = "unknown"
)

// Sandbox is one pod sandbox instance as the runtime reports it.
type Sandbox struct {
	ID        string
	Ready     bool
	Attempt   uint32
	CreatedAt time.Time
	IP        string
	// HostNetwork is what the sandbox was created with; a change means a new sandbox.
	HostNetwork bool
}

// Container is one container instance as the runtime reports it.
type Container struct {
	ID         string
	SandboxID  string
	Name       string
	State      ContainerState
	Attempt    uint32 // restart count the kubelet stamped when creating it
	Hash       string // ContainerHash of the spec it was created from
	ExitCode   int32
	Reason     string // runtime reason, e.g. OOMKilled
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
}

// Observed is everything the runtime reports for one pod.
type Observed struct {
	Sandboxes  []Sandbox
	Containers []Container
}

// BackoffEntry is the crash-loop back-off state of one container of one pod.
type BackoffEntry struct {
	// Delay is the wait imposed after the next exit.
	Delay time.Duration
	// LastRestart is when the kubelet last restarted the container because of it.
	LastRestart time.Time
}

// BackoffConfig bounds the crash-loop back-off.
type BackoffConfig struct {
	Initial time.Duration // first wait, 10 s upstream
	Max     time.Duration // cap, 5 min upstream
	// ResetAfter: a container that ran this long before exiting starts over at Initial.
	ResetAfter time.Duration
}

// DefaultBackoff matches upstream's kubelet.
func DefaultBackoff() BackoffConfig {
	return BackoffConfig{Initial: 10 * time.Second, Max: 5 * time.Minute, ResetAfter: 10 * time.Minute}
}

// Input is one planning request.
type Input struct {
	Pod      *v1.Pod
	Observed Observed
	// Backoff is keyed by container name (the map belongs to one pod).
	Backoff map[string]BackoffEntry
	// Liveness lists containers (by ID) whose liveness or startup probe failed.
	LivenessFailed map[string]bool
	// Started lists containers (by ID) whose startup probe succeeded; a container without a
	// startup probe counts as started when running.
	StartupPending map[string]bool
	// Terminate asks for the pod to be stopped (deleted, evicted, rejected, or terminal).
	Terminate bool
	Now       time.Time
	Config    BackoffConfig
}

// Kind names one action.
type Kind string

// Action kinds, executed in list order.
const (
	KillPod         Kind = "KillPod"         // stop every container, then the sandbox(es)
	CreateSandbox   Kind = "CreateSandbox"   // run a new sandbox with Attempt
	StartContainer  Kind = "StartContainer"  // pull, create and start Container with Attempt
	KillContainer   Kind = "KillContainer"   // stop ContainerID with Grace
	RemoveContainer Kind = "RemoveContainer" // delete an exited instance no longer needed
	RemoveSandbox   Kind = "RemoveSandbox"   // delete a stopped sandbox no longer needed
)

// Action is one step for the pod worker.
type Action struct {
	Kind      Kind
	Container string // container name
	Init      bool   // Container is an init container (sidecars included)
	// Ephemeral: Container is an ephemeral (debug) container, started once, never restarted.
	Ephemeral bool
	// TargetID is the container whose PID namespace an ephemeral container joins ("" none).
	TargetID    string
	ContainerID string
	SandboxID   string
	Attempt     uint32
	Grace       int64 // seconds, for kills
	Reason      string
}

// String is for logs and test failures.
func (a Action) String() string {
	s := string(a.Kind)
	if a.Container != "" {
		s += " " + a.Container
	}
	if a.ContainerID != "" {
		s += " id=" + a.ContainerID
	}
	if a.SandboxID != "" {
		s += " sandbox=" + a.SandboxID
	}
	if a.Ephemeral {
		s += " ephemeral"
	}
	if a.TargetID != "" {
		s += " target=" + a.TargetID
	}
	if a.Kind == CreateSandbox || a.Kind == StartContainer {
		s += fmt.Sprintf(" attempt=%d", a.Attempt)
	}
	if a.Reason != "" {
		s += " (" + a.Reason + ")"
	}
	return s
}

// Waiting is why a container is not running, for the status.
type Waiting struct {
	Reason  string
	Message string
}

// Result is the plan for one sync.
type Result struct {
	Actions []Action
	// Waiting is keyed by container name.
	Waiting map[string]Waiting
	// Backoff is the new back-off state for the pod (a full replacement).
	Backoff map[string]BackoffEntry
	// RequeueAfter asks for another sync after this long (0: only on events).
	RequeueAfter time.Duration
	// InitFailed: an init container failed and the pod's restart policy forbids retrying.
	InitFailed bool
	// Done: every container has finished for good (restartPolicy Never/OnFailure) or the pod is
	// terminated; nothing in it runs any more.
	Done bool
}

// Grace returns the termination grace for the pod in seconds: the deletion grace when the pod
// is being deleted, else terminationGracePeriodSeconds (30 when unset).
func Grace(pod *v1.Pod) int64 {
	if pod.DeletionTimestamp != nil && pod.DeletionGracePeriodSeconds != nil {
		return *pod.DeletionGracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return 30
}

// ContainerHash identifies a container spec, so a changed spec restarts the container. Only
// fields that the API lets change on a running pod and that need a restart matter; hashing the
// whole spec is simpler and equally right because the rest is immutable.
func ContainerHash(c *v1.Container) string {
	cc := c.DeepCopy()
	// Resources may be resized in place; a resize is not a restart.
	cc.Resources = v1.ResourceRequirements{}
	cc.ResizePolicy = nil
	b, _ := json.Marshal(cc)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// IsSidecar reports whether an init container is a restartable one (restartPolicy Always).
func IsSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// Compute plans the next steps for one pod.
func Compute(in Input) Result {
	p := planner{in: in, res: Result{Waiting: map[string]Waiting{}, Backoff: map[string]BackoffEntry{}}}
	for k, v := range in.Backoff {
		p.res.Backoff[k] = v
	}
	p.run()
	return p.res
}

type planner struct {
	in  Input
	res Result
}

func (p *planner) add(a Action) { p.res.Actions = append(p.res.Actions, a) }

func (p *planner) requeue(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	if p.res.RequeueAfter == 0 || d < p.res.RequeueAfter {
		p.res.RequeueAfter = d
	}
}

// latestSandbox returns the newest sandbox (highest attempt, then newest).
func latestSandbox(sbs []Sandbox) (Sandbox, bool) {
	if len(sbs) == 0 {
		return Sandbox{}, false
	}
	s := append([]Sandbox(nil), sbs...)
	sort.Slice(s, func(i, j int) bool {
		if s[i].Attempt != s[j].Attempt {
			return s[i].Attempt > s[j].Attempt
		}
		return s[i].CreatedAt.After(s[j].CreatedAt)
	})
	return s[0], true
}

// instances returns the containers of one name in one sandbox, newest first.
func (p *planner) instances(sandboxID, name string) []Container {
	var out []Container
	for _, c := range p.in.Observed.Containers {
		if c.SandboxID == sandboxID && c.Name == name {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Attempt != out[j].Attempt {
			return out[i].Attempt > out[j].Attempt
		}
		return out[i].CreatedAt.After(out[j].CreatedAt)
	})
	return out
}

func (p *planner) anyRunning() bool {
	for _, c := range p.in.Observed.Containers {
		if c.State == StateRunning || c.State == StateCreated || c.State == StateUnknown {
			return true
		}
	}
	for _, s := range p.in.Observed.Sandboxes {
		if s.Ready {
			return true
		}
	}
	return false
}

func (p *planner) run() {
	pod := p.in.Pod
	if p.in.Terminate {
		if p.anyRunning() {
			p.add(Action{Kind: KillPod, Grace: Grace(pod), Reason: "pod is terminating"})
		}
		p.res.Done = true
		return
	}

	sb, haveSB := latestSandbox(p.in.Observed.Sandboxes)
	readySandboxes := 0
	for _, s := range p.in.Observed.Sandboxes {
		if s.Ready {
			readySandboxes++
		}
	}
	needSandbox := !haveSB || !sb.Ready || readySandboxes > 1 || sb.HostNetwork != pod.Spec.HostNetwork

	if needSandbox {
		if haveSB && !p.podMayRestart(sb) {
			// restartPolicy Never: a pod whose containers all ran once is not restarted in a
			// new sandbox; make sure nothing is left running.
			if p.anyRunning() {
				p.add(Action{Kind: KillPod, Grace: Grace(pod), Reason: "pod has completed"})
			}
			p.res.Done = true
			return
		}
		attempt := uint32(0)
		reason := "no sandbox"
		if haveSB {
			attempt = sb.Attempt + 1
			reason = "sandbox changed"
			if p.anyRunning() {
				p.add(Action{Kind: KillPod, Grace: Grace(pod), Reason: reason})
			}
		}
		p.add(Action{Kind: CreateSandbox, Attempt: attempt, Reason: reason})
		// Everything starts over in the new sandbox: first init container (or all containers).
		p.startFresh()
		p.gcOldSandboxes("")
		return
	}

	p.gcOldSandboxes(sb.ID)
	initDone, _ := p.initContainers(sb)
	if p.res.InitFailed {
		return
	}
	if !initDone {
		for _, c := range pod.Spec.Containers {
			p.res.Waiting[c.Name] = Waiting{Reason: "PodInitializing"}
		}
		// Like upstream, a debug container may start before initialization is complete:
		// that is when a stuck init container most needs debugging.
		p.ephemeralContainers(sb)
		return
	}
	p.regularContainers(sb)
	if !p.res.Done {
		p.ephemeralContainers(sb)
	}
}

// podMayRestart reports whether a dead sandbox may be replaced: always for restartPolicy
// Always; for the others only while some container still has to run.
func (p *planner) podMayRestart(sb Sandbox) bool {
	pod := p.in.Pod
	if pod.Spec.RestartPolicy == v1.RestartPolicyAlways || pod.Spec.RestartPolicy == "" {
		return true
	}
	for _, c := range pod.Spec.Containers {
		inst := p.instances(sb.ID, c.Name)
		if len(inst) == 0 {
			return true
		}
		last := inst[0]
		if last.State != StateExited {
			return true
		}
		if pod.Spec.RestartPolicy == v1.RestartPolicyOnFailure && last.ExitCode != 0 {
			return true
		}
	}
	return false
}

// startFresh plans the first containers of a new sandbox: the first init container when there
// are any (a sidecar must be running, a regular one must finish, before the next starts),
// else every container.
func (p *planner) startFresh() {
	pod := p.in.Pod
	if len(pod.Spec.InitContainers) > 0 {
		c := &pod.Spec.InitContainers[0]
		p.add(Action{Kind: StartContainer, Container: c.Name, Init: true, Attempt: p.nextAttempt(c.Name)})
		if IsSidecar(c) {
			p.requeue(time.Second) // check soon whether it runs
		}
		for _, rc := range pod.Spec.Containers {
			p.res.Waiting[rc.Name] = Waiting{Reason: "PodInitializing"}
		}
		return
	}
	for _, c := range pod.Spec.Containers {
		p.add(Action{Kind: StartContainer, Container: c.Name, Attempt: p.nextAttempt(c.Name)})
		p.res.Waiting[c.Name] = Waiting{Reason: "ContainerCreating"}
	}
}

// nextAttempt continues a container's restart count across sandboxes: 0 for its first run.
func (p *planner) nextAttempt(name string) uint32 {
	var n uint32
	found := false
	for _, c := range p.in.Observed.Containers {
		if c.Name == name && (!found || c.Attempt >= n) {
			n, found = c.Attempt, true
		}
	}
	if !found {
		return 0
	}
	return n + 1
}

// gcOldSandboxes removes stopped sandboxes other than keep (and their exited containers, which
// the runtime removes with the sandbox).
func (p *planner) gcOldSandboxes(keep string) {
	for _, s := range p.in.Observed.Sandboxes {
		if s.ID == keep || s.Ready {
			continue
		}
		if keep == "" {
			// Keep the most recent dead sandbox until a new one replaces it, so the status keeps
			// its containers' last states.
			continue
		}
		running := false
		for _, c := range p.in.Observed.Containers {
			if c.SandboxID == s.ID && c.State != StateExited {
				running = true
			}
		}
		if !running {
			p.add(Action{Kind: RemoveSandbox, SandboxID: s.ID})
		}
	}
}

// gcInstances removes exited instances of a container beyond the newest two (the newest is the
// current state or lastState; older ones are history nobody reads).
func (p *planner) gcInstances(inst []Container) {
	kept := 0
	for _, c := range inst {
		if c.State != StateExited {
			continue
		}
		kept++
		if kept > 2 {
			p.add(Action{Kind: RemoveContainer, Container: c.Name, ContainerID: c.ID})
		}
	}
}

// backoffFor decides whether an exited container may restart now. It updates the back-off
// state when it may.
func (p *planner) backoffFor(name string, last Container) (wait time.Duration, ok bool) {
	cfg := p.in.Config
	if cfg.Initial == 0 {
		cfg = DefaultBackoff()
	}
	e, had := p.res.Backoff[name]
	if had && !last.StartedAt.IsZero() && last.FinishedAt.Sub(last.StartedAt) >= cfg.ResetAfter {
		had = false // it ran long enough: forget past crashes
	}
	if had {
		until := last.FinishedAt.Add(e.Delay)
		if p.in.Now.Before(until) {
			return until.Sub(p.in.Now), false
		}
		next := e.Delay * 2
		if next > cfg.Max {
			next = cfg.Max
		}
		p.res.Backoff[name] = BackoffEntry{Delay: next, LastRestart: p.in.Now}
		return 0, true
	}
	p.res.Backoff[name] = BackoffEntry{Delay: cfg.Initial, LastRestart: p.in.Now}
	return 0, true
}

func (p *planner) crashLoop(name string, wait time.Duration) {
	e := p.res.Backoff[name]
	p.res.Waiting[name] = Waiting{
		Reason:  "CrashLoopBackOff",
		Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", e.Delay, name, p.in.Pod.Name, p.in.Pod.Namespace, p.in.Pod.UID),
	}
	p.requeue(wait)
}

// initContainers walks the init containers in order. It returns initDone when every regular
// init container has succeeded and every sidecar is started, and stop when the sync must end
// here (something was started or the pod failed).
func (p *planner) initContainers(sb Sandbox) (initDone, stop bool) {
	pod := p.in.Pod
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		inst := p.instances(sb.ID, c.Name)
		p.gcInstances(inst)
		hash := ContainerHash(c)
		if IsSidecar(c) {
			if len(inst) == 0 {
				p.add(Action{Kind: StartContainer, Container: c.Name, Init: true, Attempt: p.nextAttempt(c.Name)})
				p.requeue(time.Second)
				return false, true
			}
			last := inst[0]
			switch last.State {
			case StateRunning:
				if last.Hash != hash || p.in.LivenessFailed[last.ID] {
					p.add(Action{Kind: KillContainer, Container: c.Name, ContainerID: last.ID, Grace: Grace(pod), Reason: p.killReason(last, hash)})
					p.requeue(time.Second)
					return false, true
				}
				if p.in.StartupPending[last.ID] {
					p.requeue(time.Second)
					return false, true
				}
				continue
			case StateExited:
				if wait, ok := p.backoffFor(c.Name, last); !ok {
					p.crashLoop(c.Name, wait)
					// A crash-looping sidecar that had started before does not hold back the
					// rest once init is done; before that it blocks the next one.
					if p.allRegularInitDone(sb) && p.anyRegularStarted(sb) {
						continue
					}
					return false, true
				}
				p.add(Action{Kind: StartContainer, Container: c.Name, Init: true, Attempt: last.Attempt + 1})
				if p.allRegularInitDone(sb) && p.anyRegularStarted(sb) {
					continue
				}
				return false, true
			default:
				p.add(Action{Kind: KillContainer, Container: c.Name, ContainerID: last.ID, Grace: Grace(pod), Reason: "container in state " + string(last.State)})
				p.add(Action{Kind: StartContainer, Container: c.Name, Init: true, Attempt: last.Attempt + 1})
				return false, true
			}
		}
		if len(inst) == 0 {
			p.add(Action{Kind: StartContainer, Container: c.Name, Init: true, Attempt: p.nextAttempt(c.Name)})
			return false, true
		}
		last := inst[0]
		switch last.State {
		case StateRunning:
			return false, false // wait for it to finish
		case StateExited:
			if last.ExitCode == 0 {
				continue
			}
			if pod.Spec.RestartPolicy == v1.RestartPolicyNever {
				p.res.InitFailed = true
				p.res.Done = true
				if p.anyRunning() {
					p.add(Action{Kind: KillPod, Grace: Grace(pod), Reason: "init container " + c.Name + " failed"})
				}
				return false, true
			}
			if wait, ok := p.backoffFor(c.Name, last); !ok {
				p.crashLoop(c.Name, wait)
				return false, true
			}
			p.add(Action{Kind: StartContainer, Container: c.Name, Init: true, Attempt: last.Attempt + 1})
			return false, true
		default:
			p.add(Action{Kind: KillContainer, Container: c.Name, ContainerID: last.ID, Grace: Grace(pod), Reason: "container in state " + string(last.State)})
			p.add(Action{Kind: StartContainer, Container: c.Name, Init: true, Attempt: last.Attempt + 1})
			return false, true
		}
	}
	return true, false
}

func (p *planner) allRegularInitDone(sb Sandbox) bool {
	for i := range p.in.Pod.Spec.InitContainers {
		c := &p.in.Pod.Spec.InitContainers[i]
		if IsSidecar(c) {
			continue
		}
		inst := p.instances(sb.ID, c.Name)
		if len(inst) == 0 || inst[0].State != StateExited || inst[0].ExitCode != 0 {
			return false
		}
	}
	return true
}

func (p *planner) anyRegularStarted(sb Sandbox) bool {
	for _, c := range p.in.Pod.Spec.Containers {
		if len(p.instances(sb.ID, c.Name)) > 0 {
			return true
		}
	}
	return false
}

func (p *planner) killReason(c Container, hash string) string {
	if c.Hash != hash {
		return "container spec changed"
	}
	return "liveness probe failed"
}

func (p *planner) regularContainers(sb Sandbox) {
	pod := p.in.Pod
	policy := pod.Spec.RestartPolicy
	if policy == "" {
		policy = v1.RestartPolicyAlways
	}
	finished := 0
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		inst := p.instances(sb.ID, c.Name)
		p.gcInstances(inst)
		hash := ContainerHash(c)
		if len(inst) == 0 {
			p.add(Action{Kind: StartContainer, Container: c.Name, Attempt: p.nextAttempt(c.Name)})
			p.res.Waiting[c.Name] = Waiting{Reason: "ContainerCreating"}
			continue
		}
		last := inst[0]
		switch last.State {
		case StateRunning:
			if last.Hash != hash || p.in.LivenessFailed[last.ID] {
				p.add(Action{Kind: KillContainer, Container: c.Name, ContainerID: last.ID, Grace: Grace(pod), Reason: p.killReason(last, hash)})
				// The restart follows on the next sync, after the exit is observed, so it goes
				// through the restart policy and back-off like any exit.
				p.requeue(time.Second)
			}
		case StateExited:
			restart := policy == v1.RestartPolicyAlways || (policy == v1.RestartPolicyOnFailure && last.ExitCode != 0)
			if !restart {
				finished++
				continue
			}
			if wait, ok := p.backoffFor(c.Name, last); !ok {
				p.crashLoop(c.Name, wait)
				continue
			}
			p.add(Action{Kind: StartContainer, Container: c.Name, Attempt: last.Attempt + 1})
		default:
			// Created but never started, or unknown: replace it.
			p.add(Action{Kind: KillContainer, Container: c.Name, ContainerID: last.ID, Grace: Grace(pod), Reason: "container in state " + string(last.State)})
			p.add(Action{Kind: RemoveContainer, Container: c.Name, ContainerID: last.ID})
			p.add(Action{Kind: StartContainer, Container: c.Name, Attempt: last.Attempt + 1})
		}
	}
	if finished == len(pod.Spec.Containers) && len(pod.Spec.Containers) > 0 {
		// Every regular container is done for good: stop sidecars and the sandbox.
		p.res.Done = true
		p.res.Waiting = map[string]Waiting{}
		p.res.Actions = nil
		if p.anyRunning() {
			p.add(Action{Kind: KillPod, Grace: Grace(pod), Reason: "all containers finished"})
		}
	}
}
