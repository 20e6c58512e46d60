package commandtest

import "testing"

func TestExpectExit(t *testing.T) {
	tests := []struct {
		name   string
		script string
		code   int
		want   []string
	}{
		{"failure with its message", "echo 'bad config: line 5' >&2; exit 3", 3, []string{"bad config", "line 5"}},
		{"success", "exit 0", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ExpectExit(t, "/bin/sh", []string{"-c", tc.script}, tc.code, tc.want...)
		})
	}
}
