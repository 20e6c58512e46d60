package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strings"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/server/machine"
)

// Machine reads the facts /spec serves.
type Machine interface {
	Info() (machine.Info, error)
}

// nodeLogs serves the node's log directory with listings, as upstream's /logs/ (an
// http.FileServer on /var/log). Unlike upstream, paths are resolved inside the directory with
// os.Root, so a symlink in it cannot expose files elsewhere on the node.
func (s *Server) nodeLogs(w http.ResponseWriter, r *http.Request) {
	root, err := os.OpenRoot(s.cfg.LogDir)
	if err != nil {
		s.fail(w, r, notFound("log directory %s: %v", s.cfg.LogDir, err))
		return
	}
	defer root.Close()
	fsys := confinedFS{fs: root.FS(), log: s.cfg.Log}
	http.StripPrefix("/logs/", http.FileServerFS(fsys)).ServeHTTP(w, r)
}

// confinedFS reports a path that escapes the root (through a symlink) as not found: the file
// server would otherwise answer 500 and say why.
type confinedFS struct {
	fs  fs.FS
	log *zap.Logger
}

func (c confinedFS) Open(name string) (fs.File, error) {
	f, err := c.fs.Open(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		c.log.Debug("node log", zap.String("path", name), zap.Error(err))
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, err
}

func (s *Server) spec(w http.ResponseWriter, r *http.Request) {
	info, err := s.cfg.Machine.Info()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, info)
}

// runningPods lists the pods the runtime runs (ready sandboxes and their running containers),
// not the pods the kubelet was asked for: the difference is what the endpoint is for.
func (s *Server) runningPods(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	defer cancel()
	sbs, err := s.cfg.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
	if err != nil {
		s.fail(w, r, fmt.Errorf("CRI ListPodSandbox: %w", err))
		return
	}
	cs, err := s.cfg.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		s.fail(w, r, fmt.Errorf("CRI ListContainers: %w", err))
		return
	}
	bySandbox := map[string][]*runtimeapi.Container{}
	for _, c := range cs {
		bySandbox[c.PodSandboxId] = append(bySandbox[c.PodSandboxId], c)
	}
	list := v1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []v1.Pod{}}
	for _, sb := range sbs {
		md := sb.GetMetadata()
		pod := v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: md.GetName(), Namespace: md.GetNamespace(), UID: types.UID(md.GetUid())}}
		ctrs := bySandbox[sb.Id]
		sort.Slice(ctrs, func(i, j int) bool { return ctrs[i].GetMetadata().GetName() < ctrs[j].GetMetadata().GetName() })
		for _, c := range ctrs {
			image := s.imageName(ctx, c)
			pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{Name: c.GetMetadata().GetName(), Image: image})
			// The spec has no place for the container's ID; the status does, in the
			// <runtime>://<id> form the API server's pod status uses.
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, v1.ContainerStatus{
				Name: c.GetMetadata().GetName(), Image: image, ImageID: c.GetImageRef(),
				ContainerID: s.cfg.RuntimeName + "://" + c.Id, Ready: true,
				State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.Unix(0, c.CreatedAt)}},
			})
		}
		list.Items = append(list.Items, pod)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := list.Items[i], list.Items[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	writeJSON(w, list)
}

// imageName is the image a container runs, by name when the runtime knows it: containerd lists
// containers by image ID and names the image only in the container's status.
func (s *Server) imageName(ctx context.Context, c *runtimeapi.Container) string {
	img := c.GetImage()
	if n := img.GetUserSpecifiedImage(); n != "" {
		return n
	}
	if n := img.GetImage(); n != "" && !strings.HasPrefix(n, "sha256:") {
		return n
	}
	st, err := s.cfg.Runtime.ContainerStatus(ctx, c.Id, false)
	if err == nil {
		si := st.GetStatus().GetImage()
		if n := si.GetUserSpecifiedImage(); n != "" {
			return n
		}
		if n := si.GetImage(); n != "" {
			return n
		}
	}
	if n := img.GetImage(); n != "" {
		return n
	}
	return c.GetImageRef()
}

// run is upstream's legacy POST /run/<namespace>/<pod>[/<uid>]/<container>?cmd=...: it runs
// the command (split on spaces, as upstream) to completion and answers its stdout and stderr.
func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	cmd := strings.Fields(r.URL.Query().Get("cmd"))
	if len(cmd) == 0 {
		s.fail(w, r, badRequest("query parameter cmd: required"))
		return
	}
	pod, id, err := s.runningContainer(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	defer cancel()
	stdout, stderr, err := s.cfg.Runtime.ExecSync(ctx, id, cmd, s.cfg.RuntimeTimeout)
	if err != nil {
		s.fail(w, r, fmt.Errorf("run %q in container %q of pod %s/%s: %w", strings.Join(cmd, " "), r.PathValue("container"), pod.Namespace, pod.Name, err))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(append(stdout, stderr...))
}
