package podsource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

const manifest = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: kube-system
spec:
  containers:
  - name: c
    image: busybox:1.36
`

func TestReadManifests(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yaml", manifest)
	write("broken.yaml", "kind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c}]}\n")
	write(".hidden.yaml", manifest)
	pods, errs := ReadManifests(dir, "node-1")
	if len(pods) != 1 {
		t.Fatalf("pods = %d, want 1 (errs %v)", len(pods), errs)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "broken.yaml") {
		t.Fatalf("errs = %v, want one naming broken.yaml", errs)
	}
	p := pods[0]
	if p.Name != "web-node-1" || p.Namespace != "kube-system" || p.Spec.NodeName != "node-1" || p.Spec.RestartPolicy != v1.RestartPolicyAlways {
		t.Errorf("pod = %s/%s node %s policy %s", p.Namespace, p.Name, p.Spec.NodeName, p.Spec.RestartPolicy)
	}
	if p.Annotations[AnnotationHash] != string(p.UID) || !IsStatic(p) {
		t.Errorf("annotations = %v uid %s", p.Annotations, p.UID)
	}
	again, _ := ReadManifests(dir, "node-1")
	if again[0].UID != p.UID {
		t.Errorf("UID not stable across reads")
	}
	write("web.yaml", strings.Replace(manifest, "1.36", "1.37", 1))
	changed, _ := ReadManifests(dir, "node-1")
	if changed[0].UID == p.UID {
		t.Errorf("UID unchanged after the manifest changed")
	}
}

func TestManagerMirrorMapping(t *testing.T) {
	var changes []types.UID
	m := NewManager(func(uid types.UID) { changes = append(changes, uid) })
	p, err := DecodeStatic([]byte(manifest), "web.yaml", "node-1")
	if err != nil {
		t.Fatal(err)
	}
	m.SetStatic([]*v1.Pod{p})
	if got, api, ok := m.Get(p.UID); !ok || got != p || api != nil {
		t.Fatalf("static pod before its mirror: %v %v %v", got, api, ok)
	}
	mirror := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: "mirror-uid", Annotations: map[string]string{AnnotationMirror: string(p.UID)}}}
	m.SetAPIPod(mirror)
	if _, api, _ := m.Get(p.UID); api == nil || api.UID != "mirror-uid" {
		t.Fatalf("mirror not mapped to the static pod: %v", api)
	}
	if len(m.List()) != 1 {
		t.Errorf("mirror pod listed as a desired pod: %d pods", len(m.List()))
	}
	regular := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", UID: "r-uid"}}
	m.SetAPIPod(regular)
	m.DeleteAPIPod(regular)
	if _, _, ok := m.Get("r-uid"); ok {
		t.Error("deleted pod still desired")
	}
	m.SetStatic(nil)
	if _, _, ok := m.Get(p.UID); ok {
		t.Error("removed static pod still desired")
	}
	if len(changes) < 5 {
		t.Errorf("changes = %v", changes)
	}
}

func TestMirrorsSync(t *testing.T) {
	ctx := context.Background()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "node-uid"}}
	orphan := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "old-node-1", Namespace: "default", UID: "o", Annotations: map[string]string{AnnotationMirror: "gone"}}}
	client := fake.NewSimpleClientset(node, orphan)
	m := NewManager(func(types.UID) {})
	m.SetAPIPod(orphan)
	p, _ := DecodeStatic([]byte(manifest), "web.yaml", "node-1")
	m.SetStatic([]*v1.Pod{p})
	mir := NewMirrors(client, "node-1", m, zap.NewNop())
	if err := mir.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoreV1().Pods("kube-system").Get(ctx, "web-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("mirror pod not created: %v", err)
	}
	if got.Annotations[AnnotationMirror] != string(p.UID) || len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "node-uid" {
		t.Errorf("mirror = %+v", got.ObjectMeta)
	}
	if _, err := client.CoreV1().Pods("default").Get(ctx, "old-node-1", metav1.GetOptions{}); err == nil {
		t.Error("orphaned mirror pod not deleted")
	}
}

func TestMirrorBeingDeletedIsReplaced(t *testing.T) {
	ctx := context.Background()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "node-uid"}}
	p, _ := DecodeStatic([]byte(manifest), "web.yaml", "node-1")
	now := metav1.Now()
	mirror := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: "m1", DeletionTimestamp: &now,
		Annotations: map[string]string{AnnotationMirror: string(p.UID)}}}
	client := fake.NewSimpleClientset(node, mirror)
	m := NewManager(func(types.UID) {})
	m.SetStatic([]*v1.Pod{p})
	m.SetAPIPod(mirror)
	if _, api, _ := m.Get(p.UID); api != nil {
		t.Fatalf("a mirror being deleted is reported as the API pod")
	}
	if err := NewMirrors(client, "node-1", m, zap.NewNop()).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{}); err == nil {
		t.Fatal("terminating mirror pod not deleted")
	}
	m.DeleteAPIPod(mirror)
	if err := NewMirrors(client, "node-1", m, zap.NewNop()).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("mirror pod not recreated: %v", err)
	}
}

func TestStatusOnlyUpdatesDoNotTrigger(t *testing.T) {
	var changes int
	m := NewManager(func(types.UID) { changes++ })
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", UID: "u", ResourceVersion: "1"}, Spec: v1.PodSpec{NodeName: "n"}}
	m.SetAPIPod(p)
	q := p.DeepCopy()
	q.ResourceVersion = "2"
	q.Status.PodIP = "10.0.0.1"
	m.SetAPIPod(q)
	if changes != 1 {
		t.Fatalf("status-only update triggered a sync (%d triggers)", changes)
	}
	if _, api, _ := m.Get("u"); api.ResourceVersion != "2" {
		t.Fatalf("status-only update not stored")
	}
	r := q.DeepCopy()
	now := metav1.Now()
	r.DeletionTimestamp = &now
	m.SetAPIPod(r)
	if changes != 2 {
		t.Fatalf("deletion did not trigger a sync")
	}
}
