package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// rawElem is one set element as the kernel dumps it; the slices point into
// the dump's message buffers.
type rawElem struct {
	key, data []byte
	verdict   verdict
	chain     []byte
}

// dumpElems lists the elements of one of our sets and calls fn for each.
//
// github.com/google/nftables' GetSetElements decodes every element into a
// SetElement through attribute decoders: at 30k services x 10 endpoints a
// periodic full sync spent about 1 GB of short-lived allocations there.
// This walks the dump's attributes in place and allocates nothing per
// element.
func dumpElems(conn *netlink.Conn, table string, sk setKind, fn func(rawElem)) error {
	var req []byte
	req = append(req, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	req = appendAttr(req, unix.NFTA_SET_ELEM_LIST_TABLE, cstr(table))
	req = appendAttr(req, unix.NFTA_SET_ELEM_LIST_SET, cstr(sk.name))
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: req,
	})
	if err != nil {
		return fmt.Errorf("list elements of %s: %w", sk.name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		err := walkAttrs(m.Data[4:], func(typ uint16, b []byte) error {
			if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				return nil
			}
			return walkAttrs(b, func(typ uint16, b []byte) error {
				if typ != unix.NFTA_LIST_ELEM {
					return nil
				}
				e, err := parseElem(sk, b)
				if err != nil {
					return err
				}
				fn(e)
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("list elements of %s: %w", sk.name, err)
		}
	}
	return nil
}

func parseElem(sk setKind, b []byte) (rawElem, error) {
	var e rawElem
	err := walkAttrs(b, func(typ uint16, b []byte) error {
		switch typ {
		case unix.NFTA_SET_ELEM_KEY:
			return walkAttrs(b, func(typ uint16, b []byte) error {
				if typ == unix.NFTA_DATA_VALUE {
					e.key = b
				}
				return nil
			})
		case unix.NFTA_SET_ELEM_DATA:
			return walkAttrs(b, func(typ uint16, b []byte) error {
				switch typ {
				case unix.NFTA_DATA_VALUE:
					if sk.dataType != nil {
						e.data = b
					}
				case unix.NFTA_DATA_VERDICT:
					if sk.verdict {
						return parseVerdict(b, &e)
					}
				}
				return nil
			})
		}
		return nil
	})
	if err == nil && e.key == nil {
		err = errors.New("element without a key")
	}
	return e, err
}

func parseVerdict(b []byte, e *rawElem) error {
	var code uint32
	err := walkAttrs(b, func(typ uint16, b []byte) error {
		switch typ {
		case unix.NFTA_VERDICT_CODE:
			if len(b) != 4 {
				return fmt.Errorf("verdict code of %d bytes", len(b))
			}
			code = binary.BigEndian.Uint32(b)
		case unix.NFTA_VERDICT_CHAIN:
			e.chain = bytes.TrimRight(b, "\x00")
		}
		return nil
	})
	switch code {
	case nftGoto:
		e.verdict = verdictGoto
	case nfDrop:
		e.verdict = verdictDrop
	default:
		// Something we never write: keep it distinct so it is replaced.
		e.verdict = verdict(255)
	}
	return err
}

// walkAttrs calls fn for each netlink attribute in b, with the type's
// flag bits cleared.
func walkAttrs(b []byte, fn func(typ uint16, data []byte) error) error {
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if n < 4 || n > len(b) {
			return fmt.Errorf("attribute of length %d in %d bytes", n, len(b))
		}
		if err := fn(typ, b[4:n]); err != nil {
			return err
		}
		b = b[min(len(b), (n+3)&^3):]
	}
	return nil
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// elem turns a dumped element into one of ours (copying its bytes).
func (r rawElem) elem(set string) elem {
	return elem{set: set, key: string(r.key), data: string(r.data), verdict: r.verdict, chain: string(r.chain)}
}
