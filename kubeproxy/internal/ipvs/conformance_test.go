package ipvs

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runConformance is the one behaviour suite every Kernel passes: the fake in
// plain unit tests and the netlink implementation inside the qemu VM. newKernel
// returns an empty kernel (a fresh network namespace for the real one).
func runConformance(t *testing.T, newKernel func(t *testing.T) Kernel) {
	vip := netip.MustParseAddr("10.96.0.10")
	vip6 := netip.MustParseAddr("fd00:96::10")
	key := VSKey{Address: vip, Protocol: unix.IPPROTO_TCP, Port: 80}
	ep1 := netip.MustParseAddrPort("10.244.1.1:8080")
	ep2 := netip.MustParseAddrPort("10.244.1.2:8080")

	t.Run("starts empty", func(t *testing.T) {
		k := newKernel(t)
		vss, err := k.VirtualServers()
		if err != nil {
			t.Fatal(err)
		}
		if len(vss) != 0 {
			t.Fatalf("virtual servers = %v, want none", vss)
		}
		if _, err := k.VirtualServer(key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("VirtualServer on empty kernel: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("virtual servers round trip", func(t *testing.T) {
		tests := []struct {
			name string
			vs   VirtualServer
		}{
			{"tcp rr", VirtualServer{VSKey: key, Scheduler: "rr"}},
			{"udp persistent", VirtualServer{VSKey: VSKey{Address: vip, Protocol: unix.IPPROTO_UDP, Port: 53}, Scheduler: "rr", Persistent: true, Timeout: 10800}},
			{"ipv6 sh", VirtualServer{VSKey: VSKey{Address: vip6, Protocol: unix.IPPROTO_TCP, Port: 443}, Scheduler: "sh"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				k := newKernel(t)
				vs := tc.vs
				if err := k.AddVirtualServer(&vs); err != nil {
					t.Fatal(err)
				}
				got, err := k.VirtualServer(vs.VSKey)
				if err != nil {
					t.Fatal(err)
				}
				if !got.Equal(&vs) {
					t.Fatalf("VirtualServer = %v, want %v", got, &vs)
				}
				all, err := k.VirtualServers()
				if err != nil {
					t.Fatal(err)
				}
				if len(all) != 1 || !all[0].Equal(&vs) {
					t.Fatalf("VirtualServers = %v, want [%v]", all, &vs)
				}
				if err := k.AddVirtualServer(&vs); !errors.Is(err, ErrExist) {
					t.Fatalf("second add: err = %v, want ErrExist", err)
				}
			})
		}
	})

	t.Run("update virtual server", func(t *testing.T) {
		k := newKernel(t)
		vs := &VirtualServer{VSKey: key, Scheduler: "rr"}
		if err := k.AddVirtualServer(vs); err != nil {
			t.Fatal(err)
		}
		upd := &VirtualServer{VSKey: key, Scheduler: "wrr", Persistent: true, Timeout: 60}
		if err := k.UpdateVirtualServer(upd); err != nil {
			t.Fatal(err)
		}
		got, err := k.VirtualServer(key)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(upd) {
			t.Fatalf("after update = %v, want %v", got, upd)
		}
		// Turning persistence off again must stick too.
		if err := k.UpdateVirtualServer(vs); err != nil {
			t.Fatal(err)
		}
		if got, _ := k.VirtualServer(key); got == nil || !got.Equal(vs) {
			t.Fatalf("after second update = %v, want %v", got, vs)
		}
		missing := &VirtualServer{VSKey: VSKey{Address: vip, Protocol: unix.IPPROTO_TCP, Port: 81}, Scheduler: "rr"}
		if err := k.UpdateVirtualServer(missing); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("real servers", func(t *testing.T) {
		k := newKernel(t)
		if _, err := k.RealServers(key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RealServers of missing service: err = %v, want ErrNotFound", err)
		}
		if err := k.AddRealServer(key, &RealServer{Address: ep1.Addr(), Port: ep1.Port(), Weight: 1}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AddRealServer to missing service: err = %v, want ErrNotFound", err)
		}
		if err := k.AddVirtualServer(&VirtualServer{VSKey: key, Scheduler: "rr"}); err != nil {
			t.Fatal(err)
		}
		for _, ep := range []netip.AddrPort{ep1, ep2} {
			if err := k.AddRealServer(key, &RealServer{Address: ep.Addr(), Port: ep.Port(), Weight: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.AddRealServer(key, &RealServer{Address: ep1.Addr(), Port: ep1.Port(), Weight: 1}); !errors.Is(err, ErrExist) {
			t.Fatalf("second AddRealServer: err = %v, want ErrExist", err)
		}
		if err := k.UpdateRealServer(key, &RealServer{Address: ep2.Addr(), Port: ep2.Port(), Weight: 0}); err != nil {
			t.Fatal(err)
		}
		rss, err := k.RealServers(key)
		if err != nil {
			t.Fatal(err)
		}
		got := map[netip.AddrPort]int{}
		for _, r := range rss {
			got[r.Key()] = r.Weight
			if r.ActiveConns != 0 || r.InactiveConns != 0 {
				t.Errorf("%s has connections %d/%d without traffic", r.Key(), r.ActiveConns, r.InactiveConns)
			}
		}
		want := map[netip.AddrPort]int{ep1: 1, ep2: 0}
		if len(got) != len(want) || got[ep1] != 1 || got[ep2] != 0 {
			t.Fatalf("real servers = %v, want %v", got, want)
		}
		if err := k.DeleteRealServer(key, ep1); err != nil {
			t.Fatal(err)
		}
		if err := k.DeleteRealServer(key, ep1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second DeleteRealServer: err = %v, want ErrNotFound", err)
		}
		if rss, _ := k.RealServers(key); len(rss) != 1 || rss[0].Key() != ep2 {
			t.Fatalf("after delete real servers = %v, want [%s]", rss, ep2)
		}
		// Deleting the virtual server takes its real servers with it.
		if err := k.DeleteVirtualServer(key); err != nil {
			t.Fatal(err)
		}
		if err := k.DeleteVirtualServer(key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second DeleteVirtualServer: err = %v, want ErrNotFound", err)
		}
		if err := k.AddVirtualServer(&VirtualServer{VSKey: key, Scheduler: "rr"}); err != nil {
			t.Fatal(err)
		}
		if rss, _ := k.RealServers(key); len(rss) != 0 {
			t.Fatalf("re-created service has real servers %v", rss)
		}
	})

	t.Run("device and addresses", func(t *testing.T) {
		k := newKernel(t)
		const dev = "kube-ipvs0"
		if _, err := k.DeviceAddresses(dev); !errors.Is(err, ErrNotFound) {
			t.Fatalf("DeviceAddresses of missing link: err = %v, want ErrNotFound", err)
		}
		for range 2 { // idempotent
			if err := k.EnsureDevice(dev); err != nil {
				t.Fatal(err)
			}
		}
		for _, a := range []netip.Addr{vip, vip6} {
			if err := k.AddDeviceAddress(dev, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.AddDeviceAddress(dev, vip); !errors.Is(err, ErrExist) {
			t.Fatalf("second AddDeviceAddress: err = %v, want ErrExist", err)
		}
		as, err := k.DeviceAddresses(dev)
		if err != nil {
			t.Fatal(err)
		}
		// The kernel may add an IPv6 link-local address; only ours matter.
		if !slices.Contains(as, vip) || !slices.Contains(as, vip6) {
			t.Fatalf("addresses = %v, want %s and %s", as, vip, vip6)
		}
		local, err := k.LocalAddresses(dev)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(local, vip) {
			t.Fatalf("LocalAddresses(skip %s) = %v includes the device's %s", dev, local, vip)
		}
		if err := k.DeleteDeviceAddress(dev, vip); err != nil {
			t.Fatal(err)
		}
		if err := k.DeleteDeviceAddress(dev, vip); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second DeleteDeviceAddress: err = %v, want ErrNotFound", err)
		}
		if as, _ := k.DeviceAddresses(dev); slices.Contains(as, vip) {
			t.Fatalf("%s still on %s: %v", vip, dev, as)
		}
		for range 2 {
			if err := k.DeleteDevice(dev); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := k.DeviceAddresses(dev); !errors.Is(err, ErrNotFound) {
			t.Fatalf("DeviceAddresses after DeleteDevice: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("sysctl", func(t *testing.T) {
		k := newKernel(t)
		for _, v := range []string{"1", "0"} {
			if err := k.SetSysctl("net/ipv4/vs/conntrack", v); err != nil {
				t.Fatal(err)
			}
			got, err := k.Sysctl("net/ipv4/vs/conntrack")
			if err != nil {
				t.Fatal(err)
			}
			if got != v {
				t.Fatalf("sysctl = %q, want %q", got, v)
			}
		}
	})

	t.Run("timeouts: set reads back, zero keeps the kernel's", func(t *testing.T) {
		k := newKernel(t)
		def, err := k.Timeouts()
		if err != nil {
			t.Fatal(err)
		}
		// The kernel's defaults for a new network namespace.
		if want := (Timeouts{TCP: 15 * time.Minute, TCPFin: 2 * time.Minute, UDP: 5 * time.Minute}); def != want {
			t.Fatalf("initial timeouts %s, want %s", def, want)
		}
		if err := k.SetTimeouts(Timeouts{TCP: 1000 * time.Second, UDP: 1500 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		got, err := k.Timeouts()
		if err != nil {
			t.Fatal(err)
		}
		if want := (Timeouts{TCP: 1000 * time.Second, TCPFin: 2 * time.Minute, UDP: time.Second}); got != want {
			t.Fatalf("timeouts %s, want %s (whole seconds; zero keeps)", got, want)
		}
	})
}
