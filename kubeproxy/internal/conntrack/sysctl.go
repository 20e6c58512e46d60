package conntrack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sysctl reads and writes kernel parameters by their /proc/sys path
// ("net/netfilter/nf_conntrack_max").
type Sysctl interface {
	Get(name string) (string, error)
	Set(name, value string) error
}

// ProcSysctl is Sysctl over files below Root (/proc/sys in production).
type ProcSysctl struct{ Root string }

// Get reads a parameter.
func (p ProcSysctl) Get(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.Root, name))
	return strings.TrimSpace(string(b)), err
}

// Set writes a parameter.
func (p ProcSysctl) Set(name, value string) error {
	return os.WriteFile(filepath.Join(p.Root, name), []byte(value), 0o644)
}

// Limits are the conntrack settings of the proxy configuration; zero
// values leave the kernel's setting alone.
type Limits struct {
	MaxPerCore, Min       int
	TCPEstablishedTimeout time.Duration
	TCPCloseWaitTimeout   time.Duration
	UDPTimeout            time.Duration
	UDPStreamTimeout      time.Duration
}

const maxParam = "net/netfilter/nf_conntrack_max"

// ApplyLimits sets the conntrack table size and timeouts, like upstream:
// nf_conntrack_max = max(MaxPerCore*cpus, Min), only ever raised. Every
// setting is tried; the error lists the ones that failed.
func ApplyLimits(s Sysctl, l Limits, cpus int) error {
	var errs []error
	if l.MaxPerCore > 0 {
		want := max(l.MaxPerCore*cpus, l.Min)
		cur, err := s.Get(maxParam)
		n, perr := strconv.Atoi(cur)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("reading %s: %w", maxParam, err))
		case perr != nil:
			errs = append(errs, fmt.Errorf("reading %s: %q: %w", maxParam, cur, perr))
		case n < want:
			if err := s.Set(maxParam, strconv.Itoa(want)); err != nil {
				errs = append(errs, fmt.Errorf("conntrack.maxPerCore: setting %s to %d: %w", maxParam, want, err))
			}
		}
	}
	for _, t := range []struct {
		field, param string
		d            time.Duration
	}{
		{"conntrack.tcpEstablishedTimeout", "net/netfilter/nf_conntrack_tcp_timeout_established", l.TCPEstablishedTimeout},
		{"conntrack.tcpCloseWaitTimeout", "net/netfilter/nf_conntrack_tcp_timeout_close_wait", l.TCPCloseWaitTimeout},
		{"conntrack.udpTimeout", "net/netfilter/nf_conntrack_udp_timeout", l.UDPTimeout},
		{"conntrack.udpStreamTimeout", "net/netfilter/nf_conntrack_udp_timeout_stream", l.UDPStreamTimeout},
	} {
		if t.d <= 0 {
			continue
		}
		secs := strconv.Itoa(int(t.d / time.Second))
		if cur, err := s.Get(t.param); err == nil && cur == secs {
			continue
		}
		if err := s.Set(t.param, secs); err != nil {
			errs = append(errs, fmt.Errorf("%s: setting %s to %s: %w", t.field, t.param, secs, err))
		}
	}
	return errors.Join(errs...)
}
