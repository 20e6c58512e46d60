package kubeletbench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/common/startqueue"
)

// floorPod is the shape of one CRI-floor pod: what the kubelet would ask of the runtime for a
// one-container best-effort pod, without anything the kubelet adds on top (volumes, API, status).
type floorPod struct {
	name, uid    string
	cgroupParent string
	logDir       string
	image        string
}

func (p floorPod) sandboxConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: p.name, Namespace: "kubelet-bench-floor", Uid: p.uid},
		Hostname:     p.name,
		LogDirectory: p.logDir,
		DnsConfig: &runtimeapi.DNSConfig{
			Servers:  []string{"10.96.0.10"},
			Searches: []string{"kubelet-bench-floor.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options:  []string{"ndots:5"},
		},
		Labels: map[string]string{"kubenode.io/bench": "cri-floor"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: p.cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
			},
		},
	}
}

func (p floorPod) containerConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "pause"},
		Image:    &runtimeapi.ImageSpec{Image: p.image, UserSpecifiedImage: p.image},
		LogPath:  filepath.Join("pause", "0.log"),
		Labels:   map[string]string{"kubenode.io/bench": "cri-floor"},
		Linux: &runtimeapi.LinuxContainerConfig{
			// A best-effort container's resources, as the kubelet sets them.
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2, CpuPeriod: 100000},
		},
	}
}

// floorSample is one CRI-floor pod: the time from the burst's start to its
// container's CreatedAt and StartedAt (the runtime's clock, which is this machine's).
type floorSample struct{ created, started time.Duration }

// criFloor starts n one-container pods straight over CRI and returns a sample per pod. With
// paced 0 all n start at once; with paced k at most k start calls are in flight, as the kubelet
// paces them (with the kubelet's own common/startqueue, a pod's index as its ticket): each pod holds a slot for its RunPodSandbox, gives it back, then
// waits for one again for CreateContainer+StartContainer. Every sample counts from the burst's
// start, so time spent waiting for a slot counts. The pods are removed before it returns.
func criFloor(ctx context.Context, rs internalapi.RuntimeService, n, paced int, image, cgroupRoot, logRoot string) ([]floorSample, error) {
	pods := make([]floorPod, n)
	for i := range pods {
		uid, err := randomHex(16)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("floor-%02d", i)
		pods[i] = floorPod{name: name, uid: uid, cgroupParent: cgroupRoot + "/cri-floor/pod" + uid, logDir: filepath.Join(logRoot, name+"_"+uid), image: image}
	}
	type result struct {
		sandbox string
		d       floorSample
		err     error
	}
	results := make([]result, n)
	slots := startqueue.New(paced)
	// The sandbox slots are asked for here, in pod order, so the first grants follow the pods'
	// order rather than which goroutine happens to run first.
	first := make([]*startqueue.Waiter, n)
	for i := range pods {
		first[i] = slots.Enqueue(uint64(i))
	}
	start := make(chan struct{})
	var t0 time.Time
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			release, err := first[i].Wait(ctx)
			if err != nil {
				results[i].err = fmt.Errorf("%s waiting to start: %w", p.name, err)
				return
			}
			sc := p.sandboxConfig()
			id, err := rs.RunPodSandbox(ctx, sc, "")
			release()
			if err != nil {
				results[i].err = fmt.Errorf("RunPodSandbox %s: %w", p.name, err)
				return
			}
			results[i].sandbox = id
			release, err = slots.Acquire(ctx, uint64(i))
			if err != nil {
				results[i].err = fmt.Errorf("%s waiting to create its container: %w", p.name, err)
				return
			}
			cid, err := createAndStart(ctx, rs, id, p, sc)
			release()
			if err != nil {
				results[i].err = err
				return
			}
			st, err := rs.ContainerStatus(ctx, cid, false)
			if err != nil {
				results[i].err = fmt.Errorf("ContainerStatus in %s: %w", p.name, err)
				return
			}
			results[i].d = floorSample{
				created: time.Unix(0, st.GetStatus().GetCreatedAt()).Sub(t0),
				started: time.Unix(0, st.GetStatus().GetStartedAt()).Sub(t0),
			}
		}()
	}
	t0 = time.Now()
	close(start)
	wg.Wait()

	var out []floorSample
	var errs, sandboxes []string
	var firstErr error
	for _, r := range results {
		if r.sandbox != "" {
			sandboxes = append(sandboxes, r.sandbox)
		}
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			errs = append(errs, r.err.Error())
			continue
		}
		out = append(out, r.d)
	}
	rmErr := removeSandboxes(ctx, rs, sandboxes)
	if firstErr != nil {
		return nil, errors.Join(fmt.Errorf("CRI floor: %d of %d pods failed, first: %w", len(errs), n, firstErr), rmErr)
	}
	return out, rmErr
}

func createAndStart(ctx context.Context, rs internalapi.RuntimeService, sandbox string, p floorPod, sc *runtimeapi.PodSandboxConfig) (string, error) {
	cid, err := rs.CreateContainer(ctx, sandbox, p.containerConfig(), sc)
	if err != nil {
		return "", fmt.Errorf("CreateContainer in %s: %w", p.name, err)
	}
	if err := rs.StartContainer(ctx, cid); err != nil {
		return "", fmt.Errorf("StartContainer in %s: %w", p.name, err)
	}
	return cid, nil
}

// removeSandboxes stops and removes the sandboxes concurrently (StopPodSandbox takes a few
// hundred ms each here).
func removeSandboxes(ctx context.Context, rs internalapi.RuntimeService, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rs.StopPodSandbox(ctx, id); err != nil {
				errs[i] = fmt.Errorf("StopPodSandbox %s: %w", id, err)
				return
			}
			if err := rs.RemovePodSandbox(ctx, id); err != nil {
				errs[i] = fmt.Errorf("RemovePodSandbox %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
