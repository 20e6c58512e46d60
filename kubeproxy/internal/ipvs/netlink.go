package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	libipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel flags of an IPVS service (include/uapi/linux/ip_vs.h); moby/ipvs
// does not name them.
const (
	svcFlagPersistent = 0x1
	svcFlagHashed     = 0x2
)

// ErrNoIPVS is returned when the kernel has no IPVS.
var ErrNoIPVS = errors.New("IPVS (ip_vs) generic netlink family not found: this kernel has no IPVS; use --proxy-mode=nftables")

// Netlink is the real Kernel: IPVS through moby/ipvs, links and addresses
// through vishvananda/netlink, sysctls through /proc/sys, all in one network
// namespace.
type Netlink struct {
	ns   netns.NsHandle // netns.None() means the caller's namespace
	ipvs *libipvs.Handle
	nl   *netlink.Handle
}

var _ Kernel = (*Netlink)(nil)

// DetectIPVS fails with ErrNoIPVS when the kernel in ns has no IPVS. It is
// needed because moby/ipvs silently does nothing on such kernels.
func DetectIPVS(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_GENERIC)
	if err != nil {
		return fmt.Errorf("open generic netlink: %w", err)
	}
	defer h.Close()
	if _, err := h.GenlFamilyGet("IPVS"); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return ErrNoIPVS
		}
		return fmt.Errorf("look up the IPVS generic netlink family: %w", err)
	}
	return nil
}

// NewNetlink opens handles in ns (netns.None() for the current namespace).
// It fails with ErrNoIPVS when the kernel has no IPVS. ns must stay open
// until Close.
func NewNetlink(ns netns.NsHandle) (*Netlink, error) {
	if err := DetectIPVS(ns); err != nil {
		return nil, err
	}
	path := ""
	if ns.IsOpen() {
		path = fmt.Sprintf("/proc/self/fd/%d", int(ns))
	}
	ih, err := libipvs.New(path)
	if err != nil {
		return nil, fmt.Errorf("open IPVS netlink handle: %w", err)
	}
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ih.Close()
		return nil, fmt.Errorf("open rtnetlink handle: %w", err)
	}
	return &Netlink{ns: ns, ipvs: ih, nl: nh}, nil
}

// Close releases the netlink sockets.
func (k *Netlink) Close() {
	k.ipvs.Close()
	k.nl.Close()
}

// classify maps errno values to ErrNotFound / ErrExist, keeping the errno.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		switch en {
		case unix.ENOENT, unix.ESRCH, unix.ENODEV, unix.EADDRNOTAVAIL:
			return fmt.Errorf("%s: %w (%w)", what, ErrNotFound, err)
		case unix.EEXIST:
			return fmt.Errorf("%s: %w (%w)", what, ErrExist, err)
		}
	}
	var lnf netlink.LinkNotFoundError
	if errors.As(err, &lnf) {
		return fmt.Errorf("%s: %w (%w)", what, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func toNetIP(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func fromNetIP(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func toLibService(k VSKey) *libipvs.Service {
	return &libipvs.Service{
		Address:       toNetIP(k.Address),
		Protocol:      k.Protocol,
		Port:          k.Port,
		AddressFamily: family(k.Address),
	}
}

func toLibServiceFull(vs *VirtualServer) *libipvs.Service {
	s := toLibService(vs.VSKey)
	s.SchedName = vs.Scheduler
	if vs.Persistent {
		s.Flags = svcFlagPersistent
		s.Timeout = vs.Timeout
	}
	if vs.Address.Is4() {
		s.Netmask = 0xffffffff
	} else {
		s.Netmask = 128
	}
	return s
}

func fromLibService(s *libipvs.Service) *VirtualServer {
	vs := &VirtualServer{
		VSKey:      VSKey{Address: fromNetIP(s.Address), Protocol: s.Protocol, Port: s.Port},
		Scheduler:  s.SchedName,
		Persistent: s.Flags&svcFlagPersistent != 0,
	}
	if vs.Persistent {
		vs.Timeout = s.Timeout
	}
	return vs
}

func (k *Netlink) VirtualServers() ([]*VirtualServer, error) {
	svcs, err := k.ipvs.GetServices()
	if err != nil {
		return nil, classify(err, "list IPVS services")
	}
	out := make([]*VirtualServer, 0, len(svcs))
	for _, s := range svcs {
		if s.FWMark != 0 {
			continue // not ours: we never make firewall-mark services
		}
		out = append(out, fromLibService(s))
	}
	return out, nil
}

func (k *Netlink) VirtualServer(key VSKey) (*VirtualServer, error) {
	s, err := k.ipvs.GetService(toLibService(key))
	if err != nil {
		return nil, classify(err, "get IPVS service "+key.String())
	}
	return fromLibService(s), nil
}

func (k *Netlink) AddVirtualServer(vs *VirtualServer) error {
	return classify(k.ipvs.NewService(toLibServiceFull(vs)), "add IPVS service "+vs.String())
}

func (k *Netlink) UpdateVirtualServer(vs *VirtualServer) error {
	return classify(k.ipvs.UpdateService(toLibServiceFull(vs)), "update IPVS service "+vs.String())
}

func (k *Netlink) DeleteVirtualServer(key VSKey) error {
	return classify(k.ipvs.DelService(toLibService(key)), "delete IPVS service "+key.String())
}

func (k *Netlink) RealServers(key VSKey) ([]*RealServer, error) {
	ds, err := k.ipvs.GetDestinations(toLibService(key))
	if err != nil {
		return nil, classify(err, "list real servers of "+key.String())
	}
	// GetDestinations on a missing service returns an empty list, not an
	// error; only then ask whether the service exists (one call, not two,
	// per virtual server on a resync).
	if len(ds) == 0 {
		if _, err := k.VirtualServer(key); err != nil {
			return nil, err
		}
	}
	out := make([]*RealServer, 0, len(ds))
	for _, d := range ds {
		out = append(out, &RealServer{
			Address:       fromNetIP(d.Address),
			Port:          d.Port,
			Weight:        d.Weight,
			ActiveConns:   d.ActiveConnections,
			InactiveConns: d.InactiveConnections,
		})
	}
	return out, nil
}

func toLibDest(a netip.AddrPort, weight int) *libipvs.Destination {
	return &libipvs.Destination{
		Address:         toNetIP(a.Addr()),
		Port:            a.Port(),
		Weight:          weight,
		ConnectionFlags: libipvs.ConnectionFlagMasq,
		AddressFamily:   family(a.Addr()),
	}
}

func (k *Netlink) AddRealServer(key VSKey, rs *RealServer) error {
	err := k.ipvs.NewDestination(toLibService(key), toLibDest(rs.Key(), rs.Weight))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		// The kernel answers EINVAL, not ESRCH, when the service is missing.
		if _, gerr := k.VirtualServer(key); errors.Is(gerr, ErrNotFound) {
			return fmt.Errorf("add real server %s to %s: %w", rs, key, gerr)
		}
	}
	return classify(err, fmt.Sprintf("add real server %s to %s", rs, key))
}

func (k *Netlink) UpdateRealServer(key VSKey, rs *RealServer) error {
	return classify(k.ipvs.UpdateDestination(toLibService(key), toLibDest(rs.Key(), rs.Weight)),
		fmt.Sprintf("update real server %s of %s", rs, key))
}

func (k *Netlink) DeleteRealServer(key VSKey, rs netip.AddrPort) error {
	return classify(k.ipvs.DelDestination(toLibService(key), toLibDest(rs, 0)),
		fmt.Sprintf("delete real server %s of %s", rs, key))
}

func (k *Netlink) EnsureDevice(name string) error {
	l, err := k.nl.LinkByName(name)
	if err != nil {
		var lnf netlink.LinkNotFoundError
		if !errors.As(err, &lnf) {
			return fmt.Errorf("look up link %q: %w", name, err)
		}
		d := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := k.nl.LinkAdd(d); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("create dummy link %q: this kernel has no dummy link type (CONFIG_DUMMY): %w", name, err)
			}
			return fmt.Errorf("create dummy link %q: %w", name, err)
		}
		if l, err = k.nl.LinkByName(name); err != nil {
			return fmt.Errorf("look up link %q: %w", name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := k.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("set link %q up: %w", name, err)
		}
	}
	return nil
}

func (k *Netlink) DeleteDevice(name string) error {
	l, err := k.nl.LinkByName(name)
	if err != nil {
		var lnf netlink.LinkNotFoundError
		if errors.As(err, &lnf) {
			return nil
		}
		return fmt.Errorf("look up link %q: %w", name, err)
	}
	if err := k.nl.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %q: %w", name, err)
	}
	return nil
}

func (k *Netlink) DeviceAddresses(name string) ([]netip.Addr, error) {
	l, err := k.nl.LinkByName(name)
	if err != nil {
		return nil, classify(err, fmt.Sprintf("look up link %q", name))
	}
	as, err := k.nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %q: %w", name, err)
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		out = append(out, fromNetIP(a.IP))
	}
	return out, nil
}

func hostAddr(a netip.Addr) *netlink.Addr {
	bits := a.BitLen()
	// IPv6 addresses would otherwise run duplicate address detection and sit
	// "tentative" until it ends.
	flags := 0
	if a.Is6() {
		flags = unix.IFA_F_NODAD
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: toNetIP(a), Mask: net.CIDRMask(bits, bits)}, Flags: flags}
}

func (k *Netlink) AddDeviceAddress(name string, a netip.Addr) error {
	l, err := k.nl.LinkByName(name)
	if err != nil {
		return classify(err, fmt.Sprintf("look up link %q", name))
	}
	return classify(k.nl.AddrAdd(l, hostAddr(a)), fmt.Sprintf("add address %s to %q", a, name))
}

func (k *Netlink) DeleteDeviceAddress(name string, a netip.Addr) error {
	l, err := k.nl.LinkByName(name)
	if err != nil {
		return classify(err, fmt.Sprintf("look up link %q", name))
	}
	return classify(k.nl.AddrDel(l, hostAddr(a)), fmt.Sprintf("delete address %s from %q", a, name))
}

func (k *Netlink) LocalAddresses(skipDevice string) ([]netip.Addr, error) {
	links, err := k.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []netip.Addr
	for _, l := range links {
		if l.Attrs().Name == skipDevice {
			continue
		}
		as, err := k.nl.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %q: %w", l.Attrs().Name, err)
		}
		for _, a := range as {
			ip := fromNetIP(a.IP)
			if ip.IsGlobalUnicast() {
				out = append(out, ip)
			}
		}
	}
	return out, nil
}

func (k *Netlink) Timeouts() (Timeouts, error) {
	c, err := k.ipvs.GetConfig()
	if err != nil {
		return Timeouts{}, fmt.Errorf("read IPVS timeouts: %w", err)
	}
	return Timeouts{TCP: c.TimeoutTCP, TCPFin: c.TimeoutTCPFin, UDP: c.TimeoutUDP}, nil
}

func (k *Netlink) SetTimeouts(t Timeouts) error {
	// moby/ipvs sends whole seconds; 0 tells the kernel to keep a value.
	err := k.ipvs.SetConfig(&libipvs.Config{TimeoutTCP: t.TCP, TimeoutTCPFin: t.TCPFin, TimeoutUDP: t.UDP})
	if err != nil {
		return fmt.Errorf("set IPVS timeouts (%s): %w", t, err)
	}
	return nil
}

func sysctlFile(path string) (string, error) {
	clean := filepath.Clean(path)
	if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
		return "", fmt.Errorf("sysctl %q: want a path relative to /proc/sys", path)
	}
	return filepath.Join("/proc/sys", clean), nil
}

// inNS runs fn on a thread in k.ns: /proc/sys/net resolves the namespace of
// the thread that opens it. The thread is left locked so the Go runtime
// discards it instead of reusing a thread in the wrong namespace.
func (k *Netlink) inNS(fn func() error) error {
	if !k.ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(k.ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (k *Netlink) Sysctl(path string) (string, error) {
	f, err := sysctlFile(path)
	if err != nil {
		return "", err
	}
	var v string
	err = k.inNS(func() error {
		b, err := os.ReadFile(f)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", path, err)
	}
	return v, nil
}

func (k *Netlink) SetSysctl(path, value string) error {
	f, err := sysctlFile(path)
	if err != nil {
		return err
	}
	err = k.inNS(func() error { return os.WriteFile(f, []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", path, value, err)
	}
	return nil
}
