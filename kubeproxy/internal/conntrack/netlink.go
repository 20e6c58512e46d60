package conntrack

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// Netlink is the conntrack table through ctnetlink.
type Netlink struct {
	netNSFd int
}

// NewNetlink works on the namespace of netNSFd (0: the current one). It
// opens a socket per call, so it holds nothing open.
func NewNetlink(netNSFd int) *Netlink { return &Netlink{netNSFd: netNSFd} }

func (n *Netlink) dial() (*ct.Conn, error) {
	c, err := ct.Dial(&netlink.Config{NetNS: n.netNSFd})
	if err != nil {
		return nil, fmt.Errorf("opening conntrack netlink socket: %w", err)
	}
	return c, nil
}

// UDPFlows lists the UDP entries of family.
func (n *Netlink) UDPFlows(family plan.Family) ([]Flow, error) {
	c, err := n.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pf := netfilter.ProtoIPv4
	if family == plan.IPv6 {
		pf = netfilter.ProtoIPv6
	}
	raw, err := c.DumpFilter(ct.NewFilter().Family(pf), nil)
	if err != nil {
		return nil, fmt.Errorf("dumping conntrack: %w", err)
	}
	var out []Flow
	for _, f := range raw {
		if f.TupleOrig.Proto.Protocol != unix.IPPROTO_UDP {
			continue
		}
		out = append(out, Flow{
			OrigSrc:  addrPort(f.TupleOrig.IP.SourceAddress, f.TupleOrig.Proto.SourcePort),
			OrigDst:  addrPort(f.TupleOrig.IP.DestinationAddress, f.TupleOrig.Proto.DestinationPort),
			ReplySrc: addrPort(f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort),
			ReplyDst: addrPort(f.TupleReply.IP.DestinationAddress, f.TupleReply.Proto.DestinationPort),
		})
	}
	return out, nil
}

func addrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a.Unmap(), port) }

// Delete removes flows by their original tuple.
func (n *Netlink) Delete(flows []Flow) error {
	c, err := n.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []error
	for _, f := range flows {
		err := c.Delete(ct.Flow{TupleOrig: ct.Tuple{
			IP:    ct.IPTuple{SourceAddress: f.OrigSrc.Addr(), DestinationAddress: f.OrigDst.Addr()},
			Proto: ct.ProtoTuple{Protocol: unix.IPPROTO_UDP, SourcePort: f.OrigSrc.Port(), DestinationPort: f.OrigDst.Port()},
		}})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}
