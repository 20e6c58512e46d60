package main

import "testing"

func TestIsSupervisor(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"ours, = form", []string{"/work/bin/kubenode-dev", "supervise", "--state-dir=/var/lib/kubenode-dev"}, true},
		{"ours, split form", []string{"kubenode-dev", "supervise", "--state-dir", "/var/lib/kubenode-dev"}, true},
		{"other state dir", []string{"kubenode-dev", "supervise", "--state-dir=/tmp/other"}, false},
		{"not supervise", []string{"kubenode-dev", "up", "--state-dir=/var/lib/kubenode-dev"}, false},
		{"reused pid", []string{"/usr/bin/sleep", "100"}, false},
		{"gone", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isSupervisor(tc.args, "/var/lib/kubenode-dev"); got != tc.want {
				t.Errorf("isSupervisor(%q) = %v, want %v", tc.args, got, tc.want)
			}
		})
	}
}
