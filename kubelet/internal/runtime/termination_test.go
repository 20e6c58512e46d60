package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criLog renders lines as the runtime writes them.
func criLog(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "2026-01-01T00:00:00.000000000Z stdout F %s\n", l)
	}
	return b.String()
}

func TestAddTerminationMessage(t *testing.T) {
	var many []string
	for i := 1; i <= 100; i++ {
		many = append(many, fmt.Sprintf("line %03d", i))
	}
	long := strings.Repeat("x", 5000) + "END"
	var wide []string
	for i := 0; i < 80; i++ {
		wide = append(wide, fmt.Sprintf("%02d%s", i, strings.Repeat("w", 40)))
	}
	cases := []struct {
		name       string
		file       *string // nil: no file on the node
		noMount    bool
		policy     v1.TerminationMessagePolicy
		state      runtimeapi.ContainerState
		exit       int32
		runtimeMsg string
		log        string
		want       string
	}{
		{name: "file content on a failed exit", file: ptrTo("bye"), exit: 1, want: "bye"},
		{name: "file content on success", file: ptrTo("done\n"), want: "done\n"},
		{name: "running containers are not read", file: ptrTo("bye"), state: runtimeapi.ContainerState_CONTAINER_RUNNING, want: ""},
		{name: "only the last 4 KiB of the file", file: &long, exit: 1, want: long[len(long)-MaxTerminationMessage:]},
		{name: "runtime message comes first", file: ptrTo("bye"), exit: 137, runtimeMsg: "OOMKilled", want: "OOMKilled: bye"},
		{name: "ReadFile ignores the log", file: ptrTo(""), exit: 1, log: criLog("boom"), want: ""},
		{name: "fallback: empty file and failure take the log", file: ptrTo(""), policy: v1.TerminationMessageFallbackToLogsOnError, exit: 2, log: criLog("a", "boom"), want: "a\nboom\n"},
		{name: "fallback: the file wins when written", file: ptrTo("bye"), policy: v1.TerminationMessageFallbackToLogsOnError, exit: 2, log: criLog("boom"), want: "bye"},
		{name: "fallback: not on success", file: ptrTo(""), policy: v1.TerminationMessageFallbackToLogsOnError, exit: 0, log: criLog("fine"), want: ""},
		{name: "fallback: missing file takes the log", policy: v1.TerminationMessageFallbackToLogsOnError, exit: 1, log: criLog("gone"), want: "gone\n"},
		{name: "fallback: no mount takes the log", noMount: true, policy: v1.TerminationMessageFallbackToLogsOnError, exit: 1, log: criLog("nomount"), want: "nomount\n"},
		{name: "fallback: last 80 lines", file: ptrTo(""), policy: v1.TerminationMessageFallbackToLogsOnError, exit: 1, log: criLog(many...), want: strings.Join(many[20:], "\n") + "\n"},
		{name: "fallback: of those, the last 2 KiB", file: ptrTo(""), policy: v1.TerminationMessageFallbackToLogsOnError, exit: 1, log: criLog(wide...),
			want: func() string { s := strings.Join(wide, "\n") + "\n"; return s[len(s)-MaxTerminationLogLength:] }()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			hostFile := filepath.Join(dir, "termination")
			if tc.file != nil {
				if err := os.WriteFile(hostFile, []byte(*tc.file), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			logPath := filepath.Join(dir, "0.log")
			if err := os.WriteFile(logPath, []byte(tc.log), 0o644); err != nil {
				t.Fatal(err)
			}
			policy := tc.policy
			if policy == "" {
				policy = v1.TerminationMessageReadFile
			}
			state := tc.state
			if state == 0 {
				state = runtimeapi.ContainerState_CONTAINER_EXITED
			}
			st := &runtimeapi.ContainerStatus{
				State: state, ExitCode: tc.exit, Message: tc.runtimeMsg, LogPath: logPath,
				Annotations: map[string]string{AnnotationTermMsgPath: "/dev/termination-log", AnnotationTermMsgPolicy: string(policy)},
			}
			if !tc.noMount {
				st.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: dir}, {ContainerPath: "/dev/termination-log", HostPath: hostFile}}
			}
			AddTerminationMessage(st)
			want := tc.want
			if tc.runtimeMsg != "" && want == "" {
				want = tc.runtimeMsg
			}
			if st.Message != want {
				t.Fatalf("message = %q, want %q", st.Message, want)
			}
		})
	}
}

func TestContainerConfigMountsPodFiles(t *testing.T) {
	p := testPod()
	c := &p.Spec.Containers[0]
	c.TerminationMessagePath = "/tmp/msg"
	c.TerminationMessagePolicy = v1.TerminationMessageFallbackToLogsOnError
	c.VolumeMounts = []v1.VolumeMount{{Name: "data", MountPath: "/data"}}
	in := ContainerInput{Container: c, Volumes: map[string]string{"data": "/v/data"}, Files: ContainerFiles{TerminationMessage: "/pods/uid-1/containers/c/ab", Hosts: "/pods/uid-1/etc-hosts"}}
	cfg, err := ContainerConfig(p, in, NodeFacts{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range cfg.Mounts {
		got[m.ContainerPath] = m.HostPath
	}
	want := map[string]string{"/data": "/v/data", "/tmp/msg": "/pods/uid-1/containers/c/ab", "/etc/hosts": "/pods/uid-1/etc-hosts"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mounts = %v, want %v", got, want)
	}
	if cfg.Annotations[AnnotationTermMsgPath] != "/tmp/msg" || cfg.Annotations[AnnotationTermMsgPolicy] != "FallbackToLogsOnError" {
		t.Errorf("annotations = %v, want the termination path and policy", cfg.Annotations)
	}
	cfg, err = ContainerConfig(p, ContainerInput{Container: c, Volumes: map[string]string{"data": "/v/data"}}, NodeFacts{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Mounts) != 1 || cfg.Annotations[AnnotationTermMsgPath] != "" {
		t.Errorf("without prepared files only volumes are mounted: %v %v", cfg.Mounts, cfg.Annotations)
	}
}

func ptrTo[T any](v T) *T { return &v }
