package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound and ErrExist classify kernel errors the same way for the
// netlink implementation and the fake, so the backend can react to them
// without knowing errno values.
var (
	ErrNotFound = errors.New("not found")
	ErrExist    = errors.New("already exists")
)

// VSKey identifies a virtual server: address, layer-4 protocol, port.
type VSKey struct {
	Address  netip.Addr
	Protocol uint16 // unix.IPPROTO_TCP, _UDP or _SCTP
	Port     uint16
}

func (k VSKey) String() string {
	return fmt.Sprintf("%s/%s", protoName(k.Protocol), netip.AddrPortFrom(k.Address, k.Port))
}

// VirtualServer is one IPVS service (ipvsadm -A).
type VirtualServer struct {
	VSKey
	Scheduler string
	// Persistent with Timeout (seconds) is ClientIP session affinity.
	Persistent bool
	Timeout    uint32
}

// Equal compares the fields the backend programs.
func (v *VirtualServer) Equal(o *VirtualServer) bool {
	return v.VSKey == o.VSKey && v.Scheduler == o.Scheduler && v.Persistent == o.Persistent &&
		(!v.Persistent || v.Timeout == o.Timeout)
}

func (v *VirtualServer) String() string {
	if v.Persistent {
		return fmt.Sprintf("%s %s persistent %ds", v.VSKey, v.Scheduler, v.Timeout)
	}
	return fmt.Sprintf("%s %s", v.VSKey, v.Scheduler)
}

// RealServer is one destination of a virtual server, always forwarded by
// masquerading (NAT).
type RealServer struct {
	Address netip.Addr
	Port    uint16
	Weight  int
	// ActiveConns and InactiveConns are read from the kernel; they are
	// ignored when adding or updating.
	ActiveConns, InactiveConns int
}

// Key returns the destination's address and port.
func (r *RealServer) Key() netip.AddrPort { return netip.AddrPortFrom(r.Address, r.Port) }

func (r *RealServer) String() string {
	return fmt.Sprintf("%s w=%d", r.Key(), r.Weight)
}

// Timeouts are IPVS's connection timeouts for one network namespace
// (ipvsadm --set). A zero field means "leave the kernel's value alone",
// when setting; the kernel keeps whole seconds.
type Timeouts struct {
	TCP, TCPFin, UDP time.Duration
}

func (t Timeouts) String() string {
	return fmt.Sprintf("tcp=%s tcpfin=%s udp=%s", t.TCP, t.TCPFin, t.UDP)
}

// Kernel is the slice of the kernel the IPVS backend programs: IPVS virtual
// and real servers, the dummy device that holds service addresses, and
// sysctls. The netlink implementation and the in-memory fake both pass the
// conformance suite in this package's tests.
type Kernel interface {
	VirtualServers() ([]*VirtualServer, error)
	// VirtualServer returns one virtual server or an error wrapping ErrNotFound.
	VirtualServer(k VSKey) (*VirtualServer, error)
	AddVirtualServer(vs *VirtualServer) error
	UpdateVirtualServer(vs *VirtualServer) error
	DeleteVirtualServer(k VSKey) error

	RealServers(k VSKey) ([]*RealServer, error)
	AddRealServer(k VSKey, rs *RealServer) error
	UpdateRealServer(k VSKey, rs *RealServer) error
	DeleteRealServer(k VSKey, rs netip.AddrPort) error

	// EnsureDevice creates the named dummy link (up) when it is missing.
	EnsureDevice(name string) error
	// DeleteDevice removes the link; a missing link is not an error.
	DeleteDevice(name string) error
	// DeviceAddresses lists the addresses on the link (ErrNotFound when the
	// link is missing).
	DeviceAddresses(name string) ([]netip.Addr, error)
	AddDeviceAddress(name string, a netip.Addr) error
	DeleteDeviceAddress(name string, a netip.Addr) error
	// LocalAddresses lists the global unicast addresses of every link but
	// skipDevice, for node ports served on all local addresses.
	LocalAddresses(skipDevice string) ([]netip.Addr, error)

	// Timeouts reads IPVS's connection timeouts; SetTimeouts changes the
	// non-zero fields of t and leaves the others.
	Timeouts() (Timeouts, error)
	SetTimeouts(t Timeouts) error

	// Sysctl paths are relative to /proc/sys, e.g. "net/ipv4/vs/conntrack".
	Sysctl(path string) (string, error)
	SetSysctl(path, value string) error
}

func protoName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "TCP"
	case unix.IPPROTO_UDP:
		return "UDP"
	case unix.IPPROTO_SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto%d", p)
}
