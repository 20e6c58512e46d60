package config

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSnapshotChanged(t *testing.T) {
	c := testConfig{Port: 1, Labels: map[string]string{"a": "b"}}
	snap, err := Take(&c)
	if err != nil {
		t.Fatal(err)
	}
	c.Authentication.Webhook.CacheTTL = metav1.Duration{Duration: time.Minute}
	c.Labels = map[string]string{"a": "c"}
	changed, err := snap.Changed(&c)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want bool
	}{
		{"authentication.webhook.cacheTTL", true},
		{"authentication.webhook", true},
		{"authentication", true},
		{"authentication.webhook.enabled", false},
		{"nodeLabels[a]", true},
		{"port", false},
		{"clusterDNS[0]", false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := changed(tc.path); got != tc.want {
				t.Fatalf("changed(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}
