package v1alpha1

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubenode/kubenode/api/internal/configtest"
)

func TestRoundTrip(t *testing.T) {
	configtest.RoundTrip(t, SetDefaults, Validate)
}

func TestFullFileKeepsEveryValue(t *testing.T) {
	configtest.KeepsEveryValue(t, "testdata/full.yaml", SetDefaults)
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

func TestEffectiveMaxParallelPodStarts(t *testing.T) {
	v := func(n int32) *int32 { return &n }
	tests := []struct {
		name string
		set  *int32
		cpus int
		want int
	}{
		{"unset on one CPU keeps four", nil, 1, 4},
		{"unset scales with CPUs", nil, 8, 24},
		{"set wins over CPUs", v(2), 8, 2},
		{"zero is no cap", v(0), 8, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EffectiveMaxParallelPodStarts(tt.set, tt.cpus); got != tt.want {
				t.Errorf("EffectiveMaxParallelPodStarts(%v, %d) = %d, want %d", tt.set, tt.cpus, got, tt.want)
			}
		})
	}
}
