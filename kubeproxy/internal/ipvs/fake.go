package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Fake is an in-memory Kernel. It keeps state like the kernel does (adding
// twice fails, deleting a virtual server drops its real servers) and counts
// mutating calls so tests can assert that a sync touched only what changed.
type Fake struct {
	mu      sync.Mutex
	vs      map[VSKey]*fakeVS
	devices map[string]map[netip.Addr]bool
	local   []netip.Addr
	sysctls map[string]string
	// timeouts start at the kernel's defaults (15m, 2m, 5m).
	timeouts Timeouts
	// Calls counts mutating calls by method name.
	Calls map[string]int
}

type fakeVS struct {
	vs  VirtualServer
	rss map[netip.AddrPort]*RealServer
}

var _ Kernel = (*Fake)(nil)

// NewFake returns an empty fake kernel with IPVS.
func NewFake() *Fake {
	return &Fake{
		vs:       map[VSKey]*fakeVS{},
		devices:  map[string]map[netip.Addr]bool{},
		sysctls:  map[string]string{},
		Calls:    map[string]int{},
		timeouts: Timeouts{TCP: 15 * time.Minute, TCPFin: 2 * time.Minute, UDP: 5 * time.Minute},
	}
}

// SetLocalAddresses sets what LocalAddresses returns (besides device addresses).
func (f *Fake) SetLocalAddresses(a ...netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local = a
}

// SetConnections sets the connection counts of a real server, as traffic would.
func (f *Fake) SetConnections(k VSKey, rs netip.AddrPort, active, inactive int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vs[k]
	if !ok {
		return fmt.Errorf("virtual server %s: %w", k, ErrNotFound)
	}
	r, ok := v.rss[rs]
	if !ok {
		return fmt.Errorf("real server %s of %s: %w", rs, k, ErrNotFound)
	}
	r.ActiveConns, r.InactiveConns = active, inactive
	return nil
}

// ResetCalls zeroes the call counters.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = map[string]int{}
}

// Mutations returns the total number of mutating calls.
func (f *Fake) Mutations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.Calls {
		n += c
	}
	return n
}

func (f *Fake) VirtualServers() ([]*VirtualServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*VirtualServer, 0, len(f.vs))
	for _, v := range f.vs {
		c := v.vs
		out = append(out, &c)
	}
	return out, nil
}

func (f *Fake) VirtualServer(k VSKey) (*VirtualServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vs[k]
	if !ok {
		return nil, fmt.Errorf("virtual server %s: %w", k, ErrNotFound)
	}
	c := v.vs
	return &c, nil
}

func (f *Fake) AddVirtualServer(vs *VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["AddVirtualServer"]++
	if _, ok := f.vs[vs.VSKey]; ok {
		return fmt.Errorf("add virtual server %s: %w", vs.VSKey, ErrExist)
	}
	if err := checkVS(vs); err != nil {
		return err
	}
	f.vs[vs.VSKey] = &fakeVS{vs: *vs, rss: map[netip.AddrPort]*RealServer{}}
	return nil
}

func (f *Fake) UpdateVirtualServer(vs *VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["UpdateVirtualServer"]++
	v, ok := f.vs[vs.VSKey]
	if !ok {
		return fmt.Errorf("update virtual server %s: %w", vs.VSKey, ErrNotFound)
	}
	if err := checkVS(vs); err != nil {
		return err
	}
	v.vs = *vs
	return nil
}

func checkVS(vs *VirtualServer) error {
	if !vs.Address.IsValid() {
		return fmt.Errorf("virtual server %s: invalid address", vs.VSKey)
	}
	if vs.Scheduler == "" {
		return fmt.Errorf("virtual server %s: empty scheduler", vs.VSKey)
	}
	return nil
}

func (f *Fake) DeleteVirtualServer(k VSKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["DeleteVirtualServer"]++
	if _, ok := f.vs[k]; !ok {
		return fmt.Errorf("delete virtual server %s: %w", k, ErrNotFound)
	}
	delete(f.vs, k)
	return nil
}

func (f *Fake) RealServers(k VSKey) ([]*RealServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vs[k]
	if !ok {
		return nil, fmt.Errorf("real servers of %s: %w", k, ErrNotFound)
	}
	out := make([]*RealServer, 0, len(v.rss))
	for _, r := range v.rss {
		c := *r
		out = append(out, &c)
	}
	return out, nil
}

func (f *Fake) AddRealServer(k VSKey, rs *RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["AddRealServer"]++
	v, ok := f.vs[k]
	if !ok {
		return fmt.Errorf("add real server %s to %s: %w", rs.Key(), k, ErrNotFound)
	}
	if _, ok := v.rss[rs.Key()]; ok {
		return fmt.Errorf("add real server %s to %s: %w", rs.Key(), k, ErrExist)
	}
	v.rss[rs.Key()] = &RealServer{Address: rs.Address, Port: rs.Port, Weight: rs.Weight}
	return nil
}

func (f *Fake) UpdateRealServer(k VSKey, rs *RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["UpdateRealServer"]++
	v, ok := f.vs[k]
	if !ok {
		return fmt.Errorf("update real server %s of %s: %w", rs.Key(), k, ErrNotFound)
	}
	r, ok := v.rss[rs.Key()]
	if !ok {
		return fmt.Errorf("update real server %s of %s: %w", rs.Key(), k, ErrNotFound)
	}
	r.Weight = rs.Weight
	return nil
}

func (f *Fake) DeleteRealServer(k VSKey, rs netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["DeleteRealServer"]++
	v, ok := f.vs[k]
	if !ok {
		return fmt.Errorf("delete real server %s of %s: %w", rs, k, ErrNotFound)
	}
	if _, ok := v.rss[rs]; !ok {
		return fmt.Errorf("delete real server %s of %s: %w", rs, k, ErrNotFound)
	}
	delete(v.rss, rs)
	return nil
}

func (f *Fake) EnsureDevice(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[name]; !ok {
		f.Calls["EnsureDevice"]++
		f.devices[name] = map[netip.Addr]bool{}
	}
	return nil
}

func (f *Fake) DeleteDevice(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["DeleteDevice"]++
	delete(f.devices, name)
	return nil
}

func (f *Fake) DeviceAddresses(name string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	as, ok := f.devices[name]
	if !ok {
		return nil, fmt.Errorf("link %q: %w", name, ErrNotFound)
	}
	out := make([]netip.Addr, 0, len(as))
	for a := range as {
		out = append(out, a)
	}
	return out, nil
}

func (f *Fake) AddDeviceAddress(name string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["AddDeviceAddress"]++
	as, ok := f.devices[name]
	if !ok {
		return fmt.Errorf("add address %s to link %q: %w", a, name, ErrNotFound)
	}
	if as[a] {
		return fmt.Errorf("add address %s to link %q: %w", a, name, ErrExist)
	}
	as[a] = true
	return nil
}

func (f *Fake) DeleteDeviceAddress(name string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["DeleteDeviceAddress"]++
	as, ok := f.devices[name]
	if !ok {
		return fmt.Errorf("delete address %s from link %q: %w", a, name, ErrNotFound)
	}
	if !as[a] {
		return fmt.Errorf("delete address %s from link %q: %w", a, name, ErrNotFound)
	}
	delete(as, a)
	return nil
}

func (f *Fake) LocalAddresses(skipDevice string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.local), nil
}

func (f *Fake) Sysctl(path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.sysctls[path]
	if !ok {
		return "0", nil
	}
	return v, nil
}

func (f *Fake) SetSysctl(path, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["SetSysctl"]++
	f.sysctls[path] = value
	return nil
}

func (f *Fake) Timeouts() (Timeouts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timeouts, nil
}

func (f *Fake) SetTimeouts(t Timeouts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls["SetTimeouts"]++
	// Like the kernel: whole seconds, zero leaves a value alone.
	set := func(p *time.Duration, v time.Duration) {
		if v = v.Truncate(time.Second); v > 0 {
			*p = v
		}
	}
	set(&f.timeouts.TCP, t.TCP)
	set(&f.timeouts.TCPFin, t.TCPFin)
	set(&f.timeouts.UDP, t.UDP)
	return nil
}
