package eviction

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// DefaultMaxWalkEntries caps one directory walk: a volume holding more entries than this is
// counted up to there (a lower bound), so one pod's million files cannot stall the pass.
const DefaultMaxWalkEntries = 200000

// LocalDisk measures pods' local ephemeral storage on the node: volume and log directories by
// walking them (allocated blocks, symlinks not followed, hard links once), writable layers from
// CRI ListContainerStats.
type LocalDisk struct {
	// PodsDir holds <pod UID>/volumes/<plugin>/<name> and <pod UID>/etc-hosts.
	PodsDir string
	// LogRoot holds <namespace>_<name>_<UID>/<container>/<attempt>.log.
	LogRoot string
	Stats   ContainerStats
	// MaxWalkEntries caps each walk (0: DefaultMaxWalkEntries).
	MaxWalkEntries int
}

// volumePlugin is the directory of a local ephemeral volume under the pod's volumes dir ("": not one).
func volumePlugin(v v1.Volume) string {
	switch {
	case diskEmptyDir(v):
		return "kubernetes.io~empty-dir"
	case v.ConfigMap != nil:
		return "kubernetes.io~configmap"
	case v.DownwardAPI != nil:
		return "kubernetes.io~downward-api"
	}
	return ""
}

// Usage measures the pods. A failed CRI call leaves the containers' writable layers out (the
// volumes and logs still count) and is returned with the usage.
func (l LocalDisk) Usage(ctx context.Context, pods []*v1.Pod) (map[types.UID]DiskUsage, error) {
	out := make(map[types.UID]DiskUsage, len(pods))
	if len(pods) == 0 {
		return out, nil
	}
	var errs []error
	stats, err := l.Stats.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
	if err != nil {
		errs = append(errs, fmt.Errorf("CRI ListContainerStats: %w", err))
	}
	layers := WritableLayers(stats)
	for _, pod := range pods {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		u := DiskUsage{Volumes: map[string]int64{}, Containers: map[string]ContainerDisk{}}
		podDir := filepath.Join(l.PodsDir, string(pod.UID))
		for _, v := range pod.Spec.Volumes {
			plugin := volumePlugin(v)
			if plugin == "" {
				continue
			}
			n, err := l.du(filepath.Join(podDir, "volumes", plugin, v.Name))
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
				continue
			}
			u.Volumes[v.Name] = n
		}
		if n, err := l.du(filepath.Join(podDir, "etc-hosts")); err == nil {
			u.Other = n
		}
		logDir := runtime.PodLogDir(l.LogRoot, pod)
		for _, c := range allContainers(pod) {
			var d ContainerDisk
			have := false
			if n, ok := layers[layerKey{string(pod.UID), c.Name}]; ok {
				d.Rootfs, have = n, true
			}
			if n, err := l.du(filepath.Join(logDir, c.Name)); err == nil {
				d.Logs, have = n, true
			} else if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			if have {
				u.Containers[c.Name] = d
			}
		}
		out[pod.UID] = u
	}
	return out, errors.Join(errs...)
}

func allContainers(pod *v1.Pod) []v1.Container {
	return append(append([]v1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
}

type layerKey struct{ uid, name string }

// WritableLayers returns each container's writable layer bytes by pod UID and container name,
// from its newest attempt's stats: an exited earlier attempt's layer stays on disk until
// container GC, but is not what the container uses now (upstream drops it the same way).
func WritableLayers(stats []*runtimeapi.ContainerStats) map[layerKey]int64 {
	out := map[layerKey]int64{}
	attempt := map[layerKey]uint32{}
	for _, s := range stats {
		a := s.GetAttributes()
		k := layerKey{a.GetLabels()[runtime.LabelPodUID], a.GetLabels()[runtime.LabelContainerName]}
		if k.uid == "" || k.name == "" || s.GetWritableLayer().GetUsedBytes() == nil {
			continue
		}
		if prev, ok := attempt[k]; ok && prev > a.GetMetadata().GetAttempt() {
			continue
		}
		attempt[k] = a.GetMetadata().GetAttempt()
		out[k] = int64(s.GetWritableLayer().GetUsedBytes().GetValue())
	}
	return out
}

// du is the bytes allocated under path (a file or a directory): st_blocks*512 of every entry,
// symlinks themselves but not what they point to, mount points not crossed, each inode once.
func (l LocalDisk) du(path string) (int64, error) {
	limit := l.MaxWalkEntries
	if limit <= 0 {
		limit = DefaultMaxWalkEntries
	}
	var root syscall.Stat_t
	if err := syscall.Lstat(path, &root); err != nil {
		return 0, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	var total int64
	seen := map[uint64]bool{}
	entries := 0
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// A file removed mid-walk or an unreadable dir: count what can be read.
			if p == path {
				return err
			}
			return nil
		}
		entries++
		if entries > limit {
			return fs.SkipAll
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if d.IsDir() && p != path && st.Dev != root.Dev {
			// Another filesystem (a tmpfs or a bind mount) is not this disk's usage.
			return fs.SkipDir
		}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("measuring %s: %w", path, err)
	}
	return total, nil
}

var _ DiskUsager = LocalDisk{}
