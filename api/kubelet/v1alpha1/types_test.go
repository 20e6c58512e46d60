package v1alpha1

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

func load(t *testing.T, data []byte) *KubeletConfiguration {
	t.Helper()
	var c KubeletConfiguration
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("strict unmarshal: %v", err)
	}
	return &c
}

func TestRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c := load(t, data)
			SetDefaults(c)
			if errs := Validate(c); len(errs) != 0 {
				t.Fatalf("testdata must be valid after defaulting: %v", errs.ToAggregate())
			}
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again := load(t, out)
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("round trip changed the object:\nfirst  %+v\nsecond %+v\nyaml:\n%s", c, again, out)
			}
			SetDefaults(again)
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("SetDefaults is not idempotent")
			}
		})
	}
}

func TestFullFileKeepsEveryValue(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := load(t, data)
	before := *c
	SetDefaults(c)
	if !reflect.DeepEqual(before, *c) {
		t.Fatalf("full.yaml sets every field, so defaulting must change nothing:\nbefore %+v\nafter  %+v", before, *c)
	}
}

func TestDefaults(t *testing.T) {
	c := &KubeletConfiguration{}
	SetDefaults(c)
	checks := []struct {
		name      string
		got, want any
	}{
		{"apiVersion", c.APIVersion, APIVersion},
		{"port", c.Port, int32(10250)},
		{"healthz", fmt.Sprintf("%s:%d", c.HealthzBindAddress, *c.HealthzPort), "127.0.0.1:10248"},
		{"runtime endpoint", c.ContainerRuntimeEndpoint, "unix:///run/containerd/containerd.sock"},
		{"image endpoint follows runtime", c.ImageServiceEndpoint, c.ContainerRuntimeEndpoint},
		{"authorization", c.Authorization.Mode, "Webhook"},
		{"webhook authn", *c.Authentication.Webhook.Enabled, true},
		{"anonymous", *c.Authentication.Anonymous.Enabled, false},
		{"maxPods", c.MaxPods, int32(110)},
		{"cgroupDriver", c.CgroupDriver, "cgroupfs"},
		{"backoff max", c.CrashLoopBackOff.MaxContainerRestartPeriod.Duration, 5 * time.Minute},
		{"evictionHard", c.EvictionHard["memory.available"], "100Mi"},
		{"syncFrequency", c.SyncFrequency, metav1.Duration{Duration: time.Minute}},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	if errs := Validate(c); len(errs) != 0 {
		t.Fatalf("defaults must validate: %v", errs.ToAggregate())
	}
	custom := &KubeletConfiguration{ContainerRuntimeEndpoint: "unix:///run/crio/crio.sock"}
	SetDefaults(custom)
	if custom.ImageServiceEndpoint != "unix:///run/crio/crio.sock" {
		t.Fatalf("imageServiceEndpoint = %q, want the runtime endpoint", custom.ImageServiceEndpoint)
	}
}
