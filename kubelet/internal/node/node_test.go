package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func ready(n *v1.Node) v1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c
		}
	}
	return v1.NodeCondition{}
}

func TestRegisterStatusAndLease(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var healthErr error
	capacity := Machine{CPUs: 2, MemoryBytes: 4 << 30, EphemeralBytes: 100 << 30}.Capacity(110)
	c, err := New(Config{
		Name: "node-1", IPs: []string{"192.0.2.10"}, Labels: map[string]string{"tier": "edge"},
		Taints:   []v1.Taint{{Key: "dedicated", Value: "x", Effect: v1.TaintEffectNoSchedule}},
		Capacity: capacity, Allocatable: capacity, KubeletVersion: "v0.1.0", RuntimeVersion: "containerd://1.6.20",
		Machine: Machine{MachineID: "mid", BootID: "bid", OperatingSystem: "linux", Architecture: "amd64"},
	}, client, func(context.Context) error { return healthErr }, func() time.Time { return now }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[v1.LabelHostname] != "node-1" || n.Labels[v1.LabelOSStable] == "" || n.Labels["tier"] != "edge" {
		t.Errorf("labels = %v", n.Labels)
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "dedicated" {
		t.Errorf("taints = %v", n.Spec.Taints)
	}
	if r := ready(n); r.Status != v1.ConditionTrue || r.Reason != "KubeletReady" {
		t.Errorf("Ready = %+v", r)
	}
	if n.Status.NodeInfo.ContainerRuntimeVersion != "containerd://1.6.20" || n.Status.NodeInfo.BootID != "bid" {
		t.Errorf("nodeInfo = %+v", n.Status.NodeInfo)
	}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0].Type != v1.NodeInternalIP || n.Status.Addresses[1].Type != v1.NodeHostName {
		t.Errorf("addresses = %v", n.Status.Addresses)
	}
	if p := n.Status.Capacity[v1.ResourcePods]; p.Value() != 110 {
		t.Errorf("pods capacity = %v", p)
	}

	// The runtime goes down: NotReady with the reason, posted at the next sync.
	healthErr = errors.New("container runtime is down: connection refused")
	now = now.Add(10 * time.Second)
	if err := c.SyncStatus(ctx); err != nil {
		t.Fatal(err)
	}
	n, _ = client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if r := ready(n); r.Status != v1.ConditionFalse || r.Reason != "KubeletNotReady" || r.Message != healthErr.Error() {
		t.Errorf("Ready after runtime failure = %+v", r)
	}

	// Unchanged status within the report period is not posted again.
	updates := func() int {
		k := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				k++
			}
		}
		return k
	}
	before := updates()
	now = now.Add(10 * time.Second)
	if err := c.SyncStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if updates() != before {
		t.Errorf("unchanged status was posted")
	}
	now = now.Add(6 * time.Minute)
	if err := c.SyncStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if updates() != before+1 {
		t.Errorf("status not posted after the report period")
	}

	// Lease: created, then renewed with a later time.
	if err := c.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := l.Spec.RenewTime.Time
	if *l.Spec.LeaseDurationSeconds != 40 || *l.Spec.HolderIdentity != "node-1" {
		t.Errorf("lease spec = %+v", l.Spec)
	}
	now = now.Add(10 * time.Second)
	if err := c.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	l, _ = client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "node-1", metav1.GetOptions{})
	if !l.Spec.RenewTime.Time.After(first) {
		t.Errorf("lease not renewed: %v then %v", first, l.Spec.RenewTime.Time)
	}
}

func TestRegisterExistingNodeKeepsIt(t *testing.T) {
	ctx := context.Background()
	existing := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "old-uid", Labels: map[string]string{"keep": "me"}}}
	client := fake.NewSimpleClientset(existing)
	c, _ := New(Config{Name: "node-1"}, client, nil, time.Now, zap.NewNop())
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if _, ok := a.(k8stesting.DeleteAction); ok {
			t.Fatal("registration deleted the existing node")
		}
	}
	n, _ := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if n.Labels["keep"] != "me" || n.Labels[v1.LabelHostname] != "node-1" {
		t.Errorf("labels = %v", n.Labels)
	}
}

func TestAllocatable(t *testing.T) {
	capacity := Machine{CPUs: 2, MemoryBytes: 4 << 30, EphemeralBytes: 100 << 30}.Capacity(110)
	sys, err := ParseResourceList("systemReserved", map[string]string{"cpu": "500m", "memory": "512Mi"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := EvictionReserve(map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"}, capacity)
	if err != nil {
		t.Fatal(err)
	}
	a := Allocatable(capacity, sys, ev)
	if got := a.Cpu().MilliValue(); got != 1500 {
		t.Errorf("cpu = %dm, want 1500m", got)
	}
	if got, want := a.Memory().Value(), int64(4<<30-512<<20-100<<20); got != want {
		t.Errorf("memory = %d, want %d", got, want)
	}
	if got, want := a.StorageEphemeral().Value(), int64(90<<30); got != want {
		t.Errorf("ephemeral = %d, want %d", got, want)
	}
	if _, err := ParseResourceList("kubeReserved", map[string]string{"cpu": "lots"}); err == nil {
		t.Error("bad quantity accepted")
	}
}

func TestReadMachine(t *testing.T) {
	root := t.TempDir()
	for p, content := range map[string]string{
		"proc/meminfo":                   "MemTotal:        2048 kB\nMemFree: 1 kB\n",
		"etc/machine-id":                 "abc123\n",
		"proc/sys/kernel/random/boot_id": "boot-1\n",
		"etc/os-release":                 "NAME=Debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
	} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := ReadMachine(root, root)
	if err != nil {
		t.Fatal(err)
	}
	if m.MemoryBytes != 2048*1024 || m.MachineID != "abc123" || m.BootID != "boot-1" || m.OSImage != "Debian GNU/Linux 12 (bookworm)" || m.EphemeralBytes <= 0 || m.CPUs < 1 {
		t.Fatalf("machine = %+v", m)
	}
	if _, err := ReadMachine(t.TempDir(), ""); err == nil {
		t.Fatal("missing meminfo accepted")
	}
}

func TestPressureConditions(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pressure []v1.NodeConditionType
	c, err := New(Config{Name: "node-1", Pressure: func() []v1.NodeConditionType { return pressure }},
		client, nil, func() time.Time { return now }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	get := func() map[v1.NodeConditionType]v1.NodeCondition {
		n, err := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[v1.NodeConditionType]v1.NodeCondition{}
		for _, c := range n.Status.Conditions {
			out[c.Type] = c
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		on     []v1.NodeConditionType
		status map[v1.NodeConditionType]v1.ConditionStatus
		reason map[v1.NodeConditionType]string
	}{
		{"no pressure", nil,
			map[v1.NodeConditionType]v1.ConditionStatus{v1.NodeMemoryPressure: v1.ConditionFalse, v1.NodeDiskPressure: v1.ConditionFalse, v1.NodePIDPressure: v1.ConditionFalse},
			map[v1.NodeConditionType]string{v1.NodeMemoryPressure: "KubeletHasSufficientMemory", v1.NodeDiskPressure: "KubeletHasNoDiskPressure", v1.NodePIDPressure: "KubeletHasSufficientPID"}},
		{"memory and disk", []v1.NodeConditionType{v1.NodeDiskPressure, v1.NodeMemoryPressure},
			map[v1.NodeConditionType]v1.ConditionStatus{v1.NodeMemoryPressure: v1.ConditionTrue, v1.NodeDiskPressure: v1.ConditionTrue, v1.NodePIDPressure: v1.ConditionFalse},
			map[v1.NodeConditionType]string{v1.NodeMemoryPressure: "KubeletHasInsufficientMemory", v1.NodeDiskPressure: "KubeletHasDiskPressure", v1.NodePIDPressure: "KubeletHasSufficientPID"}},
		{"pids", []v1.NodeConditionType{v1.NodePIDPressure},
			map[v1.NodeConditionType]v1.ConditionStatus{v1.NodeMemoryPressure: v1.ConditionFalse, v1.NodeDiskPressure: v1.ConditionFalse, v1.NodePIDPressure: v1.ConditionTrue},
			map[v1.NodeConditionType]string{v1.NodeMemoryPressure: "KubeletHasSufficientMemory", v1.NodeDiskPressure: "KubeletHasNoDiskPressure", v1.NodePIDPressure: "KubeletHasInsufficientPID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pressure = tc.on
			now = now.Add(time.Minute)
			if err := c.SyncStatus(ctx); err != nil {
				t.Fatal(err)
			}
			got := get()
			for typ, st := range tc.status {
				if got[typ].Status != st || got[typ].Reason != tc.reason[typ] {
					t.Errorf("%s = %s/%s, want %s/%s", typ, got[typ].Status, got[typ].Reason, st, tc.reason[typ])
				}
			}
			if got[v1.NodeReady].Status != v1.ConditionTrue {
				t.Errorf("Ready = %+v", got[v1.NodeReady])
			}
		})
	}
}
