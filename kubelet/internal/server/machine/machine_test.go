package machine

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const cpuinfo = `processor	: 0
vendor_id	: GenuineIntel
cpu MHz		: 2399.998

processor	: 1
vendor_id	: GenuineIntel
cpu MHz		: 2400.500
`

const meminfo = `MemTotal:        4025236 kB
MemFree:          123456 kB
SwapTotal:        1048572 kB
`

func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestInfo(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	base := map[string]string{
		"/proc/cpuinfo":                   cpuinfo,
		"/proc/meminfo":                   meminfo,
		"/etc/machine-id":                 "0123456789abcdef0123456789abcdef\n",
		"/sys/class/dmi/id/product_uuid":  "4c4c4544-0000-1000-8000-000000000001\n",
		"/proc/sys/kernel/random/boot_id": "6b1f7c7e-1a2b-4c3d-8e9f-0a1b2c3d4e5f\n",
	}
	with := func(change map[string]string, drop ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range change {
			m[k] = v
		}
		for _, k := range drop {
			delete(m, k)
		}
		return m
	}
	full := Info{
		Timestamp: now, CPUVendorID: "GenuineIntel", NumCores: 2, CPUFrequencyKHz: 2400500,
		MemoryCapacity: 4025236 * 1024, SwapCapacity: 1048572 * 1024,
		MachineID: "0123456789abcdef0123456789abcdef", SystemUUID: "4c4c4544-0000-1000-8000-000000000001",
		BootID: "6b1f7c7e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
	}
	tests := []struct {
		name    string
		files   map[string]string
		want    func(Info) Info
		wantErr string
	}{
		{"no cpufreq: the highest cpuinfo clock", base, func(i Info) Info { return i }, ""},
		{"cpufreq's maximum wins", with(map[string]string{"/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "3500000\n"}), func(i Info) Info {
			i.CPUFrequencyKHz = 3500000
			return i
		}, ""},
		{"machine-id from dbus when /etc has none", with(map[string]string{"/var/lib/dbus/machine-id": "dbus-id\n"}, "/etc/machine-id"), func(i Info) Info {
			i.MachineID = "dbus-id"
			return i
		}, ""},
		{"missing ids stay empty", with(nil, "/etc/machine-id", "/sys/class/dmi/id/product_uuid", "/proc/sys/kernel/random/boot_id"), func(i Info) Info {
			i.MachineID, i.SystemUUID, i.BootID = "", "", ""
			return i
		}, ""},
		{"no swap line: zero swap", with(map[string]string{"/proc/meminfo": "MemTotal: 2048 kB\n"}), func(i Info) Info {
			i.MemoryCapacity, i.SwapCapacity = 2048*1024, 0
			return i
		}, ""},
		{"no meminfo is an error", with(nil, "/proc/meminfo"), nil, "meminfo"},
		{"no cpuinfo is an error", with(nil, "/proc/cpuinfo"), nil, "cpuinfo"},
		{"MemTotal missing is an error naming it", with(map[string]string{"/proc/meminfo": "MemFree: 1 kB\n"}), nil, "MemTotal"},
		{"MemTotal not a number", with(map[string]string{"/proc/meminfo": "MemTotal: lots kB\n"}), nil, `"lots" is not a number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := New(tree(t, tc.files), func() time.Time { return now }).Info()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.want(full); got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestThisMachine reads the real node: the figures must agree with what Go and the kernel say.
func TestThisMachine(t *testing.T) {
	got, err := New("/", time.Now).Info()
	if err != nil {
		t.Fatal(err)
	}
	if got.NumCores < runtime.NumCPU() {
		t.Errorf("num_cores %d, fewer than Go's %d", got.NumCores, runtime.NumCPU())
	}
	if got.MemoryCapacity < 64<<20 {
		t.Errorf("memory_capacity %d: implausible", got.MemoryCapacity)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	if got.BootID != strings.TrimSpace(string(boot)) {
		t.Errorf("boot_id %q, kernel says %q", got.BootID, boot)
	}
}
