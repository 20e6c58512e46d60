package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/server/logs"
)

// AnnotationTermMsgPolicy records the container's terminationMessagePolicy (upstream's key), so
// the status can be built from the runtime alone.
const AnnotationTermMsgPolicy = "io.kubernetes.container.terminationMessagePolicy"

// Limits of a termination message, upstream's: the file's last 4 KiB; for
// FallbackToLogsOnError, the log's last 80 lines and of them the last 2 KiB.
const (
	MaxTerminationMessage   = 4096
	MaxTerminationLogLines  = 80
	MaxTerminationLogLength = 2048
)

// AddTerminationMessage appends an exited container's termination message to st.Message (after
// the runtime's own message and ": "): the file behind its terminationMessagePath, or with
// FallbackToLogsOnError, a failed exit and an empty file, the tail of its log. The container's
// annotations say where the file is mounted and which policy applies; the mount says where
// the file is on the node.
func AddTerminationMessage(st *runtimeapi.ContainerStatus) {
	if st == nil || st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		return
	}
	fallback := st.Annotations[AnnotationTermMsgPolicy] == string(v1.TerminationMessageFallbackToLogsOnError) &&
		st.ExitCode != 0 && st.Reason != "ContainerCannotRun"
	msg, useLogs := terminationFile(st.Mounts, st.Annotations[AnnotationTermMsgPath], fallback)
	if useLogs {
		msg = logTail(st.LogPath)
	}
	if msg == "" {
		return
	}
	if st.Message != "" {
		st.Message += ": "
	}
	st.Message += msg
}

// terminationFile reads the tail of the termination-message file mounted at path. The bool
// says to take the log instead (fallback wanted and nothing in the file).
func terminationFile(mounts []*runtimeapi.Mount, path string, fallback bool) (string, bool) {
	if path == "" {
		return "", fallback
	}
	for _, m := range mounts {
		if filepath.Clean(m.ContainerPath) != filepath.Clean(path) {
			continue
		}
		data, err := readTail(m.HostPath, MaxTerminationMessage)
		if err != nil {
			if os.IsNotExist(err) {
				return "", fallback
			}
			return fmt.Sprintf("Error on reading termination log %s: %v", m.HostPath, err), false
		}
		return string(data), fallback && len(data) == 0
	}
	return "", fallback
}

// readTail returns the last max bytes of a file.
func readTail(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		if _, err := f.Seek(fi.Size()-max, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// logTail is the end of a container's CRI log as text: its last lines, then of them the last bytes.
func logTail(path string) string {
	if path == "" {
		return ""
	}
	lines := int64(MaxTerminationLogLines)
	var buf bytes.Buffer
	if err := logs.Copy(context.Background(), path, logs.Options{TailLines: &lines}, &buf, logs.Follow{}); err != nil {
		return fmt.Sprintf("Error on reading termination message from logs: %v", err)
	}
	b := buf.Bytes()
	if len(b) > MaxTerminationLogLength {
		b = b[len(b)-MaxTerminationLogLength:]
	}
	return string(b)
}
