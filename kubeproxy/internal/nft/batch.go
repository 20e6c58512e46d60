package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// batch builds one nf_tables transaction as raw netlink bytes.
//
// github.com/google/nftables marshals our expressions, creates the table and
// sets and reads state back, but its Conn asks the kernel to echo every
// added rule back (NLM_F_ECHO, so it can learn rule handles) and to ack
// every message. At 10k services that is 100k rules serialised twice by the
// kernel and parsed again by us: most of a full sync's time. Our batches
// carry no echo and ask for one ack, on the last message (the kernel still
// reports every failing message), and are encoded straight into one buffer
// that goes out in a single sendmsg.
type batch struct {
	table   []byte // NUL-terminated
	buf     []byte
	msgs    int
	lastMsg int // offset of the last message header
	seq     uint32
	err     error
	exprs   *exprCache
}

func newBatch(table string, exprs *exprCache, seq uint32, buf []byte, sizeHint int) *batch {
	if cap(buf) < sizeHint {
		buf = make([]byte, 0, max(sizeHint, 1<<12))
	}
	b := &batch{table: cstr(table), buf: buf[:0], seq: seq, exprs: exprs}
	b.begin(unix.NFNL_MSG_BATCH_BEGIN, netlink.Request, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
	b.end()
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// begin starts a message; end fills in its length.
func (b *batch) begin(typ uint16, flags netlink.HeaderFlags, family byte, resID uint16) {
	b.lastMsg = len(b.buf)
	b.seq++
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(flags))
	b.buf = binary.NativeEndian.AppendUint32(b.buf, b.seq)
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0)
	b.buf = append(b.buf, family, unix.NFNETLINK_V0, byte(resID>>8), byte(resID))
	b.msgs++
}

func (b *batch) end() {
	binary.NativeEndian.PutUint32(b.buf[b.lastMsg:], uint32(len(b.buf)-b.lastMsg))
}

func (b *batch) msg(msgType int, flags netlink.HeaderFlags) {
	b.begin(uint16(unix.NFNL_SUBSYS_NFTABLES<<8|msgType), netlink.Request|flags, unix.NFPROTO_INET, 0)
}

// attr appends one attribute (big-endian payloads are the caller's job).
func (b *batch) attr(typ uint16, data []byte) {
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(4+len(data)))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, data...)
	for len(b.buf)%4 != 0 {
		b.buf = append(b.buf, 0)
	}
}

func (b *batch) attrU32(typ uint16, v uint32) {
	b.attr(typ, binary.BigEndian.AppendUint32(make([]byte, 0, 4), v))
}

// nest opens a nested attribute; close with closeNest.
func (b *batch) nest(typ uint16) int {
	off := len(b.buf)
	b.buf = append(b.buf, 0, 0, 0, 0)
	binary.NativeEndian.PutUint16(b.buf[off+2:], typ|unix.NLA_F_NESTED)
	return off
}

func (b *batch) closeNest(off int) {
	n := len(b.buf) - off
	if n > 0xffff {
		b.err = fmt.Errorf("netlink attribute of %d bytes is over the 64 KiB limit", n)
		return
	}
	binary.NativeEndian.PutUint16(b.buf[off:], uint16(n))
}

func (b *batch) addChain(name string, hookNum uint32, priority int32, chainType string) {
	b.msg(unix.NFT_MSG_NEWCHAIN, netlink.Create)
	b.attr(unix.NFTA_CHAIN_TABLE, b.table)
	b.attr(unix.NFTA_CHAIN_NAME, cstr(name))
	if chainType != "" {
		h := b.nest(unix.NFTA_CHAIN_HOOK)
		b.attrU32(unix.NFTA_HOOK_HOOKNUM, hookNum)
		b.attrU32(unix.NFTA_HOOK_PRIORITY, uint32(priority))
		b.closeNest(h)
		b.attrU32(unix.NFTA_CHAIN_POLICY, nfAccept)
		b.attr(unix.NFTA_CHAIN_TYPE, cstr(chainType))
	}
	b.end()
}

// flushChain deletes every rule of a chain.
func (b *batch) flushChain(name string) {
	b.msg(unix.NFT_MSG_DELRULE, 0)
	b.attr(unix.NFTA_RULE_TABLE, b.table)
	b.attr(unix.NFTA_RULE_CHAIN, cstr(name))
	b.end()
}

func (b *batch) delChain(name string) {
	b.msg(unix.NFT_MSG_DELCHAIN, 0)
	b.attr(unix.NFTA_CHAIN_TABLE, b.table)
	b.attr(unix.NFTA_CHAIN_NAME, cstr(name))
	b.end()
}

func (b *batch) addRule(chainName []byte, exprs []expr.Any) {
	b.msg(unix.NFT_MSG_NEWRULE, netlink.Create|netlink.Append)
	b.attr(unix.NFTA_RULE_TABLE, b.table)
	b.attr(unix.NFTA_RULE_CHAIN, chainName)
	list := b.nest(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range exprs {
		data, err := b.exprs.marshal(e)
		if err != nil {
			b.err = fmt.Errorf("rule in %s: %w", chainName[:len(chainName)-1], err)
			return
		}
		b.attr(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, data)
	}
	b.closeNest(list)
	b.end()
}

// elems adds (or deletes) elements of one set, in messages small enough
// for the 64 KiB attribute limit.
func (b *batch) elems(set string, es []elem, del bool) {
	msgType, flags := unix.NFT_MSG_NEWSETELEM, netlink.Create
	if del {
		msgType, flags = unix.NFT_MSG_DELSETELEM, 0
	}
	name := cstr(set)
	for len(es) > 0 {
		chunk := es[:min(len(es), elemsPerMessage)]
		es = es[len(chunk):]
		b.msg(msgType, flags)
		b.attr(unix.NFTA_SET_ELEM_LIST_TABLE, b.table)
		b.attr(unix.NFTA_SET_ELEM_LIST_SET, name)
		list := b.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		for _, e := range chunk {
			item := b.nest(unix.NFTA_LIST_ELEM)
			k := b.nest(unix.NFTA_SET_ELEM_KEY)
			b.attr(unix.NFTA_DATA_VALUE, []byte(e.key))
			b.closeNest(k)
			if !del {
				switch {
				case e.verdict != verdictNone:
					d := b.nest(unix.NFTA_SET_ELEM_DATA)
					v := b.nest(unix.NFTA_DATA_VERDICT)
					if e.verdict == verdictDrop {
						b.attrU32(unix.NFTA_VERDICT_CODE, nfDrop)
					} else {
						b.attrU32(unix.NFTA_VERDICT_CODE, uint32(nftGoto))
						b.attr(unix.NFTA_VERDICT_CHAIN, cstr(e.chain))
					}
					b.closeNest(v)
					b.closeNest(d)
				case e.data != "":
					d := b.nest(unix.NFTA_SET_ELEM_DATA)
					b.attr(unix.NFTA_DATA_VALUE, []byte(e.data))
					b.closeNest(d)
				}
			}
			b.closeNest(item)
		}
		b.closeNest(list)
		b.end()
	}
}

// send commits the batch over conn and waits for the kernel's verdict.
// nfnetlink processes the whole batch inside sendmsg, so every answer is
// queued by the time it returns.
func (b *batch) send(conn *netlink.Conn) error {
	if b.err != nil {
		return b.err
	}
	if b.msgs == 1 {
		return nil
	}
	// Ask for an ack on the last message only.
	flags := binary.NativeEndian.Uint16(b.buf[b.lastMsg+6:])
	binary.NativeEndian.PutUint16(b.buf[b.lastMsg+6:], flags|uint16(netlink.Acknowledge))
	lastSeq := b.seq
	b.begin(unix.NFNL_MSG_BATCH_END, netlink.Request, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
	b.end()

	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := raw.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), b.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(werr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("send batch of %d messages (%d bytes): %w", b.msgs, len(b.buf), werr)
	}

	var first error
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := conn.SetReadDeadline(deadline); err != nil {
			return err
		}
		msgs, err := conn.Receive()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if first != nil {
					return first
				}
				return errors.New("no answer from nf_tables")
			}
			if first == nil {
				first = err
			}
			// Drain the other answers of this batch (all queued already).
			deadline = time.Now().Add(50 * time.Millisecond)
			continue
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error && m.Header.Sequence == lastSeq {
				return first
			}
		}
	}
}

// exprCache keeps the encoding of expressions that repeat across rules
// (the NAT statement, numgen moduli, compares, ports, lookups): most of a
// rule's bytes, encoded once instead of once per rule.
type exprCache struct {
	m map[any][]byte
}

const exprCacheMax = 1 << 14

type cmpKey struct {
	op   expr.CmpOp
	reg  uint32
	data string
}

type immKey struct {
	reg  uint32
	data string
}

func (c *exprCache) marshal(e expr.Any) ([]byte, error) {
	var key any
	switch v := e.(type) {
	case *expr.NAT:
		key = *v
	case *expr.Numgen:
		key = *v
	case *expr.Payload:
		key = *v
	case *expr.Meta:
		key = *v
	case *expr.Lookup:
		key = *v
	case *expr.Cmp:
		key = cmpKey{v.Op, v.Register, string(v.Data)}
	case *expr.Immediate:
		if len(v.Data) <= 2 {
			key = immKey{v.Register, string(v.Data)}
		}
	}
	if key != nil {
		if b, ok := c.m[key]; ok {
			return b, nil
		}
	}
	b, err := expr.Marshal(unix.NFPROTO_INET, e)
	if err != nil {
		return nil, err
	}
	if key != nil && len(c.m) < exprCacheMax {
		c.m[key] = b
	}
	return b, nil
}
