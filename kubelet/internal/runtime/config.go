package runtime

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/cm"
	"github.com/kubenode/kubenode/kubelet/internal/plan"
)

// NodeFacts are what the configs need to know about the node.
type NodeFacts struct {
	DNS            DNSSettings
	LogRoot        string // pod log directories live under it: <LogRoot>/<ns>_<name>_<uid>
	MemoryCapacity int64
	NodeName       string
	// PodsDir holds each pod's node directory, <PodsDir>/<uid> (the kubelet's <root>/pods), where
	// the hosts file and termination-message files are kept; "" keeps none.
	PodsDir string
	// NodeHostsFile is the node's hosts file that host-network pods get (with their hostAliases);
	// "" means /etc/hosts.
	NodeHostsFile string
}

// PodLogDir is the directory of one pod's container logs.
func PodLogDir(logRoot string, pod *v1.Pod) string {
	return filepath.Join(logRoot, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
}

// SandboxConfig translates a pod into a CRI sandbox config.
func SandboxConfig(pod *v1.Pod, attempt uint32, cgroupParent string, n NodeFacts) (*runtimeapi.PodSandboxConfig, error) {
	hostname, _ := PodHostname(pod, "")
	if pod.Spec.HostNetwork {
		hostname = "" // the runtime uses the node's
	}
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	labels[LabelPodName] = pod.Name
	labels[LabelPodNamespace] = pod.Namespace
	labels[LabelPodUID] = string(pod.UID)
	annotations := map[string]string{}
	for k, v := range pod.Annotations {
		annotations[k] = v
	}
	annotations[AnnotationHostNetwork] = strconv.FormatBool(pod.Spec.HostNetwork)
	annotations[AnnotationGrace] = strconv.FormatInt(plan.Grace(pod), 10)

	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		Hostname:     hostname,
		LogDirectory: PodLogDir(n.LogRoot, pod),
		DnsConfig:    DNSConfig(pod, n.DNS),
		Labels:       labels,
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: namespaceOptions(pod),
			},
			Sysctls: map[string]string{},
		},
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		lsc := cfg.Linux.SecurityContext
		if sc.RunAsUser != nil {
			lsc.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
		}
		if sc.RunAsGroup != nil {
			lsc.RunAsGroup = &runtimeapi.Int64Value{Value: *sc.RunAsGroup}
		}
		lsc.SupplementalGroups = supplementalGroups(sc)
		for _, s := range sc.Sysctls {
			cfg.Linux.Sysctls[s.Name] = s.Value
		}
	}
	seen := map[string]bool{}
	for _, c := range append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, p := range c.Ports {
			if p.HostPort == 0 && !pod.Spec.HostNetwork {
				continue
			}
			if pod.Spec.HostNetwork {
				continue // nothing to map: the container binds on the node
			}
			proto, err := protocol(p.Protocol)
			if err != nil {
				return nil, fmt.Errorf("pod %s/%s container %q port %d: %w", pod.Namespace, pod.Name, c.Name, p.ContainerPort, err)
			}
			key := fmt.Sprintf("%s/%s/%d", p.HostIP, proto, p.HostPort)
			if seen[key] {
				continue
			}
			seen[key] = true
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{Protocol: proto, ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	return cfg, nil
}

func supplementalGroups(sc *v1.PodSecurityContext) []int64 {
	var g []int64
	if sc.FSGroup != nil {
		g = append(g, *sc.FSGroup)
	}
	return append(g, sc.SupplementalGroups...)
}

func protocol(p v1.Protocol) (runtimeapi.Protocol, error) {
	switch p {
	case v1.ProtocolTCP, "":
		return runtimeapi.Protocol_TCP, nil
	case v1.ProtocolUDP:
		return runtimeapi.Protocol_UDP, nil
	case v1.ProtocolSCTP:
		return runtimeapi.Protocol_SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", p)
}

func namespaceOptions(pod *v1.Pod) *runtimeapi.NamespaceOption {
	o := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	if pod.Spec.HostNetwork {
		o.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		o.Pid = runtimeapi.NamespaceMode_NODE
	} else if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		o.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostIPC {
		o.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return o
}

// FindContainer returns the spec of a container, init container or ephemeral container by
// name (an ephemeral one as a copy in the plain container type).
func FindContainer(pod *v1.Pod, name string) (*v1.Container, bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], true
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		if pod.Spec.EphemeralContainers[i].Name == name {
			return plan.EphemeralAsContainer(&pod.Spec.EphemeralContainers[i]), true
		}
	}
	return nil, false
}

// ContainerInput is what ContainerConfig needs besides the pod.
type ContainerInput struct {
	Container *v1.Container
	Init      bool
	Attempt   uint32
	Env       []*runtimeapi.KeyValue
	// Volumes maps a pod volume name to its directory (or file) on the node.
	Volumes map[string]string
	// ImageRef is the resolved image (from the pull).
	ImageRef string
	// Files are the node files to mount besides volumes (PrepareContainerFiles makes them).
	Files ContainerFiles
	// TargetID is the running container whose PID namespace an ephemeral container joins
	// (its targetContainerName); "" for every other container.
	TargetID string
}

// ContainerConfig translates one container of a pod into a CRI container config.
func ContainerConfig(pod *v1.Pod, in ContainerInput, n NodeFacts) (*runtimeapi.ContainerConfig, error) {
	c := in.Container
	where := fmt.Sprintf("pod %s/%s container %q", pod.Namespace, pod.Name, c.Name)
	mounts, err := mounts(pod, c, in.Volumes, in.Files)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	annotations := map[string]string{
		AnnotationHash:         plan.ContainerHash(c),
		AnnotationRestartCount: strconv.FormatUint(uint64(in.Attempt), 10),
		AnnotationGrace:        strconv.FormatInt(plan.Grace(pod), 10),
	}
	// The status reads the message back from these (AddTerminationMessage).
	if in.Files.TerminationMessage != "" {
		annotations[AnnotationTermMsgPath] = c.TerminationMessagePath
	}
	policy := c.TerminationMessagePolicy
	if policy == "" {
		policy = v1.TerminationMessageReadFile
	}
	annotations[AnnotationTermMsgPolicy] = string(policy)
	if in.Init {
		annotations[AnnotationInit] = "init"
		if plan.IsSidecar(c) {
			annotations[AnnotationInit] = "sidecar"
		}
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		b, err := json.Marshal(c.Lifecycle.PreStop)
		if err == nil {
			annotations[AnnotationPreStop] = string(b)
		}
	}
	image := in.ImageRef
	if image == "" {
		image = c.Image
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: in.Attempt},
		Image:      &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: c.Image},
		Command:    c.Command,
		Args:       c.Args,
		WorkingDir: c.WorkingDir,
		Envs:       in.Env,
		Mounts:     mounts,
		Labels: map[string]string{
			LabelPodName:       pod.Name,
			LabelPodNamespace:  pod.Namespace,
			LabelPodUID:        string(pod.UID),
			LabelContainerName: c.Name,
		},
		Annotations: annotations,
		LogPath:     filepath.Join(c.Name, strconv.FormatUint(uint64(in.Attempt), 10)+".log"),
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.TTY,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       Resources(pod, c, n.MemoryCapacity),
			SecurityContext: securityContext(pod, c),
		},
	}
	if ns := cfg.Linux.SecurityContext.NamespaceOptions; in.TargetID != "" && ns.Pid == runtimeapi.NamespaceMode_CONTAINER {
		// A debug container sees its target's processes. A pod that shares one PID namespace
		// (or the node's) already shows them, so only the per-container mode changes.
		ns.Pid = runtimeapi.NamespaceMode_TARGET
		ns.TargetId = in.TargetID
	}
	return cfg, nil
}

func mounts(pod *v1.Pod, c *v1.Container, volumes map[string]string, files ContainerFiles) ([]*runtimeapi.Mount, error) {
	var out []*runtimeapi.Mount
	if files.Hosts != "" {
		out = append(out, &runtimeapi.Mount{ContainerPath: etcHosts, HostPath: files.Hosts})
	}
	if files.TerminationMessage != "" && c.TerminationMessagePath != "" {
		out = append(out, &runtimeapi.Mount{ContainerPath: c.TerminationMessagePath, HostPath: files.TerminationMessage})
	}
	for _, m := range c.VolumeMounts {
		host, ok := volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q: no volume of that name is set up", m.Name)
		}
		if m.SubPath != "" {
			if filepath.IsAbs(m.SubPath) || strings.Contains(m.SubPath, "..") {
				return nil, fmt.Errorf("volumeMount %q: subPath %q must be a relative path without '..'", m.Name, m.SubPath)
			}
			host = filepath.Join(host, m.SubPath)
		}
		mt := &runtimeapi.Mount{ContainerPath: m.MountPath, HostPath: host, Readonly: m.ReadOnly}
		if m.MountPropagation != nil {
			switch *m.MountPropagation {
			case v1.MountPropagationHostToContainer:
				mt.Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
			case v1.MountPropagationBidirectional:
				mt.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			}
		}
		out = append(out, mt)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].ContainerPath) < len(out[j].ContainerPath) })
	return out, nil
}

// Resources maps requests and limits onto cgroup values: cpu shares from the request (2 when
// none), CFS quota from the limit over a 100 ms period, the memory limit, and the OOM score
// adjustment of the pod's QoS class.
func Resources(pod *v1.Pod, c *v1.Container, memoryCapacity int64) *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{OomScoreAdj: cm.OOMScoreAdj(pod, c, memoryCapacity)}
	cpuReq := c.Resources.Requests.Cpu().MilliValue()
	if _, ok := c.Resources.Requests[v1.ResourceCPU]; !ok {
		// A limit without a request defaults the request to the limit (the API does this for
		// pods; do it here too for static pods that skip defaulting).
		cpuReq = c.Resources.Limits.Cpu().MilliValue()
	}
	r.CpuShares = cm.MilliCPUToShares(cpuReq)
	if lim, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		r.CpuPeriod = cm.CPUPeriod
		r.CpuQuota = cm.MilliCPUToQuota(lim.MilliValue())
	}
	if lim, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		r.MemoryLimitInBytes = lim.Value()
	}
	return r
}

func securityContext(pod *v1.Pod, c *v1.Container) *runtimeapi.LinuxContainerSecurityContext {
	out := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			out.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			out.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		out.SupplementalGroups = supplementalGroups(psc)
	}
	sc := c.SecurityContext
	if sc == nil {
		return out
	}
	if sc.RunAsUser != nil {
		out.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
	}
	if sc.RunAsGroup != nil {
		out.RunAsGroup = &runtimeapi.Int64Value{Value: *sc.RunAsGroup}
	}
	if sc.Privileged != nil {
		out.Privileged = *sc.Privileged
	}
	if sc.ReadOnlyRootFilesystem != nil {
		out.ReadonlyRootfs = *sc.ReadOnlyRootFilesystem
	}
	if sc.Capabilities != nil {
		out.Capabilities = &runtimeapi.Capability{}
		for _, a := range sc.Capabilities.Add {
			out.Capabilities.AddCapabilities = append(out.Capabilities.AddCapabilities, capName(a))
		}
		for _, d := range sc.Capabilities.Drop {
			out.Capabilities.DropCapabilities = append(out.Capabilities.DropCapabilities, capName(d))
		}
	}
	if sc.AllowPrivilegeEscalation != nil {
		out.NoNewPrivs = !*sc.AllowPrivilegeEscalation
	}
	return out
}

// capName accepts NET_ADMIN and CAP_NET_ADMIN alike; CRI wants the bare name upper-cased.
func capName(c v1.Capability) string {
	return strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_")
}
