package admission

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func podWith(name, cpu, mem string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c"}}}}
	req := v1.ResourceList{}
	if cpu != "" {
		req[v1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		req[v1.ResourceMemory] = resource.MustParse(mem)
	}
	p.Spec.Containers[0].Resources.Requests = req
	return p
}

func TestAdmit(t *testing.T) {
	node := Node{Name: "n1", Labels: map[string]string{"zone": "a", "gen": "5"}, Allocatable: v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi"), v1.ResourcePods: resource.MustParse("3"),
	}}
	withPort := func(p *v1.Pod, port int32) *v1.Pod {
		p.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 80, HostPort: port}}
		return p
	}
	affinity := func(p *v1.Pod, op v1.NodeSelectorOperator, key string, values ...string) *v1.Pod {
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}},
		}}}
		return p
	}
	cases := []struct {
		name   string
		pod    *v1.Pod
		active []*v1.Pod
		want   string
	}{
		{name: "fits", pod: podWith("p", "500m", "1Gi"), active: []*v1.Pod{podWith("q", "1", "1Gi")}},
		{name: "best-effort always fits", pod: podWith("p", "", "")},
		{name: "too much cpu next to others", pod: podWith("p", "1500m", ""), active: []*v1.Pod{podWith("q", "1", "")}, want: "OutOfcpu"},
		{name: "more memory than the node has", pod: podWith("p", "", "5Gi"), want: "OutOfmemory"},
		{name: "pods limit", pod: podWith("p", "", ""), active: []*v1.Pod{podWith("a", "", ""), podWith("b", "", ""), podWith("c", "", "")}, want: "OutOfpods"},
		{name: "nodeSelector matches", pod: func() *v1.Pod {
			p := podWith("p", "", "")
			p.Spec.NodeSelector = map[string]string{"zone": "a"}
			return p
		}()},
		{name: "nodeSelector mismatch", pod: func() *v1.Pod {
			p := podWith("p", "", "")
			p.Spec.NodeSelector = map[string]string{"zone": "b"}
			return p
		}(), want: "NodeAffinity"},
		{name: "affinity In matches", pod: affinity(podWith("p", "", ""), v1.NodeSelectorOpIn, "zone", "a", "b")},
		{name: "affinity NotIn fails", pod: affinity(podWith("p", "", ""), v1.NodeSelectorOpNotIn, "zone", "a"), want: "NodeAffinity"},
		{name: "affinity Gt", pod: affinity(podWith("p", "", ""), v1.NodeSelectorOpGt, "gen", "4")},
		{name: "affinity DoesNotExist fails", pod: affinity(podWith("p", "", ""), v1.NodeSelectorOpDoesNotExist, "zone"), want: "NodeAffinity"},
		{name: "host port free", pod: withPort(podWith("p", "", ""), 8080), active: []*v1.Pod{withPort(podWith("q", "", ""), 8081)}},
		{name: "host port taken", pod: withPort(podWith("p", "", ""), 8080), active: []*v1.Pod{withPort(podWith("q", "", ""), 8080)}, want: "NodePorts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Admit(tc.pod, node, tc.active)
			got := ""
			if r != nil {
				got = r.Reason
				if r.Message == "" {
					t.Error("rejection without a message")
				}
			}
			if got != tc.want {
				t.Fatalf("reason = %q (%v), want %q", got, r, tc.want)
			}
		})
	}
}

func TestRequestsCountInitContainers(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	p := podWith("p", "100m", "")
	p.Spec.InitContainers = []v1.Container{
		{Name: "side", RestartPolicy: &always, Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("200m")}}},
		{Name: "big-init", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}},
	}
	if got := Requests(p)[v1.ResourceCPU]; got.MilliValue() != 1200 {
		t.Fatalf("cpu = %dm, want 1200m (init container plus the sidecar running beside it)", got.MilliValue())
	}
}
