package conntrack

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeSysctl struct {
	vals   map[string]string
	failOn string
	sets   []string
}

func (f *fakeSysctl) Get(n string) (string, error) {
	v, ok := f.vals[n]
	if !ok {
		return "", os.ErrNotExist
	}
	return v, nil
}

func (f *fakeSysctl) Set(n, v string) error {
	if n == f.failOn {
		return errors.New("read-only file system")
	}
	f.sets = append(f.sets, n+"="+v)
	f.vals[n] = v
	return nil
}

func TestApplyLimits(t *testing.T) {
	base := func() map[string]string {
		return map[string]string{
			maxParam: "65536",
			"net/netfilter/nf_conntrack_tcp_timeout_established": "432000",
			"net/netfilter/nf_conntrack_tcp_timeout_close_wait":  "60",
		}
	}
	tests := []struct {
		name     string
		vals     map[string]string
		limits   Limits
		failOn   string
		wantSets []string
		wantErr  string
	}{
		{name: "raise max from per-core", vals: base(), limits: Limits{MaxPerCore: 32768, Min: 131072}, wantSets: []string{maxParam + "=131072"}},
		{name: "per-core beats min on many cores", vals: base(), limits: Limits{MaxPerCore: 32768, Min: 1000}, wantSets: []string{maxParam + "=131072"}},
		{name: "never lowered", vals: map[string]string{maxParam: "1000000"}, limits: Limits{MaxPerCore: 32768, Min: 131072}},
		{name: "zero leaves alone", vals: base(), limits: Limits{}},
		{name: "timeouts in seconds, unchanged skipped", vals: base(), limits: Limits{TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Minute, UDPTimeout: 30 * time.Second},
			wantSets: []string{"net/netfilter/nf_conntrack_tcp_timeout_established=86400", "net/netfilter/nf_conntrack_udp_timeout=30"}},
		{name: "failure names the field and continues", vals: base(), limits: Limits{MaxPerCore: 32768, Min: 131072, UDPTimeout: time.Minute}, failOn: maxParam,
			wantSets: []string{"net/netfilter/nf_conntrack_udp_timeout=60"}, wantErr: "conntrack.maxPerCore"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &fakeSysctl{vals: tc.vals, failOn: tc.failOn}
			err := ApplyLimits(s, tc.limits, 4)
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Join(s.sets, ",") != strings.Join(tc.wantSets, ",") {
				t.Errorf("sets = %v, want %v", s.sets, tc.wantSets)
			}
		})
	}
}

func TestProcSysctl(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "net/netfilter"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := ProcSysctl{Root: root}
	if err := s.Set(maxParam, "42"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(maxParam); err != nil || v != "42" {
		t.Errorf("Get = %q, %v", v, err)
	}
}
