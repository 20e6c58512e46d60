package kubeletbench

import "testing"

func TestParseModelName(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"first processor's model", "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: Other\n", "Intel(R) Xeon(R) Processor"},
		{"model is not model name", "model\t\t: 85\n", ""},
		{"no model name (arm64)", "processor\t: 0\nBogoMIPS\t: 50.00\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseModelName(tc.in); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadMachine(t *testing.T) {
	m := ReadMachine()
	if m.CPUs < 1 || m.Kernel == "unknown" || m.LoadAvg == "unknown" {
		t.Fatalf("machine facts missing on Linux: %+v", m)
	}
}
