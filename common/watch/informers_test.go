package watch

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestListOptionTweaks(t *testing.T) {
	tests := []struct {
		name          string
		tweak         TweakListOptions
		wantFields    string
		wantLabels    string
		matchLabels   []map[string]string
		noMatchLabels []map[string]string
	}{
		{name: "pods on a node", tweak: NodeNameSelector("node-1"), wantFields: "spec.nodeName=node-1"},
		{name: "own node", tweak: ObjectNameSelector("node-1"), wantFields: "metadata.name=node-1"},
		{
			name: "proxyable only", tweak: ProxyableOnly,
			wantLabels:    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless",
			matchLabels:   []map[string]string{nil, {"app": "web", "kubernetes.io/service-name": "web"}},
			noMatchLabels: []map[string]string{{LabelServiceProxyName: "other-proxy"}, {corev1.IsHeadlessService: ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o metav1.ListOptions
			tt.tweak(&o)
			if o.FieldSelector != tt.wantFields || o.LabelSelector != tt.wantLabels {
				t.Fatalf("got fields %q labels %q, want fields %q labels %q", o.FieldSelector, o.LabelSelector, tt.wantFields, tt.wantLabels)
			}
			sel, err := labels.Parse(o.LabelSelector)
			if err != nil {
				t.Fatalf("label selector %q does not parse: %v", o.LabelSelector, err)
			}
			for _, l := range tt.matchLabels {
				if !sel.Matches(labels.Set(l)) {
					t.Errorf("selector %q does not match %v", sel, l)
				}
			}
			for _, l := range tt.noMatchLabels {
				if sel.Matches(labels.Set(l)) {
					t.Errorf("selector %q matches %v", sel, l)
				}
			}
		})
	}
}

// runInformers starts informers until the test ends and waits for their sync.
func runInformers(t *testing.T, infs ...Informer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(infs))
	for _, inf := range infs {
		go func() { inf.RunWithContext(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range infs {
			<-done
		}
	})
	syncers := make([]Syncer, len(infs))
	for i, inf := range infs {
		syncers[i] = inf
	}
	if err := WaitForSync(ctx, 10*time.Second, syncers...); err != nil {
		t.Fatal(err)
	}
}

// The fake clientset does not filter by field selector, so check what each
// informer asked the API server for.
func TestInformersRequestTheirSelectors(t *testing.T) {
	client := fake.NewClientset()
	pods := NewPodInformer(client, "node-1", 0)
	node := NewNodeInformer(client, "node-1", 0)
	svcs := NewServiceInformer(client, 0, ProxyableOnly)
	slices := NewEndpointSliceInformer(client, 0, nil)
	runInformers(t, pods, node, svcs, slices)

	want := map[string]struct{ fields, labels string }{
		"pods":           {fields: "spec.nodeName=node-1"},
		"nodes":          {fields: "metadata.name=node-1"},
		"services":       {labels: "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"},
		"endpointslices": {},
	}
	seen := map[string]bool{}
	for _, a := range client.Actions() {
		var r k8stesting.ListRestrictions
		switch a := a.(type) {
		case k8stesting.ListAction:
			r = a.GetListRestrictions()
		case k8stesting.WatchAction:
			w := a.GetWatchRestrictions()
			r = k8stesting.ListRestrictions{Labels: w.Labels, Fields: w.Fields}
		default:
			continue
		}
		res := a.GetResource().Resource
		w, ok := want[res]
		if !ok {
			t.Errorf("unexpected %s of %s", a.GetVerb(), res)
			continue
		}
		seen[res] = true
		if a.GetNamespace() != metav1.NamespaceAll {
			t.Errorf("%s of %s in namespace %q, want all namespaces", a.GetVerb(), res, a.GetNamespace())
		}
		if got := r.Fields.String(); got != w.fields {
			t.Errorf("%s of %s with field selector %q, want %q", a.GetVerb(), res, got, w.fields)
		}
		if got := r.Labels.String(); got != w.labels {
			t.Errorf("%s of %s with label selector %q, want %q", a.GetVerb(), res, got, w.labels)
		}
	}
	for res := range want {
		if !seen[res] {
			t.Errorf("no list or watch of %s", res)
		}
	}
}

func TestInformerNames(t *testing.T) {
	client := fake.NewClientset()
	for _, tt := range []struct {
		inf  Informer
		want string
	}{
		{NewPodInformer(client, "n1", 0), "pods on node n1"},
		{NewNodeInformer(client, "n1", 0), "node n1"},
		{NewServiceInformer(client, 0, nil), "services"},
		{NewEndpointSliceInformer(client, 0, nil), "endpointslices"},
	} {
		if tt.inf.Name() != tt.want {
			t.Errorf("Name() = %q, want %q", tt.inf.Name(), tt.want)
		}
	}
}
