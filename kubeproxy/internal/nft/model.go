package nft

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// action is what a rule does once all of its matches hold.
type action uint8

const (
	// actContinue: the rule only has side effects (mark) and evaluation goes on.
	actContinue action = iota
	actGoto
	actJump
	actReturn
	actDrop
	actReject
	// actRejectTCP: TCP reset for TCP packets (continues for others). A
	// reset goes back reliably even from the forward hook of a bridged
	// packet, where this kernel sends no ICMP error.
	actRejectTCP
	// actMasquerade clears the masquerade bit and source-NATs to the
	// outgoing interface's address.
	actMasquerade
	// actServiceVmap: daddr . l4proto . dport vmap @set.
	actServiceVmap
	// actNodePortVmap: l4proto . dport vmap @set.
	actNodePortVmap
	// actDNAT: dnat to the rule's address and port.
	actDNAT
	// actMapDNAT: dnat to (daddr . l4proto . dport . numgen random mod n)
	// map @set; actMapDNATNodePort the same keyed without daddr.
	actMapDNAT
	actMapDNATNodePort
	// actAffinityDNAT: update @affinity { epID . saddr timeout t }; dnat to addr.
	actAffinityDNAT
)

// rule is one rule in the small vocabulary this backend uses. It is
// comparable with == so chains diff cheaply; the kernel side renders it to
// nftables expressions and the tests interpret it on virtual packets.
type rule struct {
	// Matches; zero values match everything.
	ctNew       bool         // ct state new
	markSet     bool         // meta mark & masqMark == masqMark
	ctDNAT      bool         // ct status dnat
	daddrLocal  bool         // fib daddr type local, and not loopback
	daddrSet    string       // daddr @set
	src         netip.Prefix // saddr in prefix
	fibSrcLocal bool         // fib saddr type local
	affinityEp  uint32       // epID . saddr @affinity
	hairpin     bool         // saddr . daddr @set (a hairpin shard)
	// pick > 0: numgen random mod pick == 0. Rules with picks n, n-1, ...,
	// 2 and a last unconditional one choose each of n endpoints with
	// probability 1/n without any map (see doc.go).
	pick uint32

	// Action and its arguments.
	act     action
	mark    bool   // set the masquerade bit first (before act)
	set     string // map for the vmap and map actions
	n       uint32 // endpoints to pick from (actMapDNAT*)
	chain   string // goto/jump target
	epID    uint32
	timeout time.Duration
	dnat    netip.AddrPort
}

// hook places a base chain.
type hook uint8

const (
	hookNone hook = iota
	hookPrerouting
	hookInput
	hookForward
	hookOutput
	hookPostrouting
)

// chain is a chain with its rules. Base chains carry a hook.
type chain struct {
	name     string
	hook     hook
	nat      bool // type nat (else filter)
	priority int32
	rules    []rule
	// shared chains (the endpoint pickers) are used by many services;
	// they exist while at least one service uses them.
	shared bool
}

// verdict is a map element's verdict value.
type verdict uint8

const (
	verdictNone verdict = iota
	verdictGoto
	verdictDrop
)

// elem is one element of one of our named sets or maps. Keys and data are
// raw register bytes, exactly as the kernel stores them, so read-back
// elements compare with desired ones directly.
type elem struct {
	set     string
	key     string
	data    string  // data maps
	verdict verdict // verdict maps
	chain   string  // for verdictGoto
}

// id returns the identity of an element: its set and key.
func (e elem) id() elemID { return elemID{e.set, e.key} }

type elemID struct{ set, key string }

// hasher fingerprints elements: an element's identity (set and key) and
// its value, 64 bits each, so the model counts element users and a full
// sync holds the kernel's elements in a few bytes each. Fingerprints live
// only in memory, so each Backend has its own seed.
type hasher struct{ seed maphash.Seed }

func newHasher() hasher { return hasher{seed: maphash.MakeSeed()} }

// id fingerprints an element's identity.
func (hs hasher) id(set, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(hs.seed)
	h.WriteString(set)
	h.WriteByte(0)
	h.WriteString(key)
	return h.Sum64()
}

// val fingerprints an element's value (verdict, chain, data).
func (hs hasher) val(e elem) uint64 {
	var h maphash.Hash
	h.SetSeed(hs.seed)
	h.WriteByte(byte(e.verdict))
	h.WriteString(e.chain)
	h.WriteByte(0)
	h.WriteString(e.data)
	return h.Sum64()
}

// idRaw and valRaw are id and val of a dumped element, from its bytes
// (the same fingerprints; nothing is copied).
func (hs hasher) idRaw(set string, r rawElem) uint64 {
	var h maphash.Hash
	h.SetSeed(hs.seed)
	h.WriteString(set)
	h.WriteByte(0)
	h.Write(r.key)
	return h.Sum64()
}

func (hs hasher) valRaw(r rawElem) uint64 {
	var h maphash.Hash
	h.SetSeed(hs.seed)
	h.WriteByte(byte(r.verdict))
	h.Write(r.chain)
	h.WriteByte(0)
	h.Write(r.data)
	return h.Sum64()
}

// setKind describes one of our named sets so the kernel side can create it.
type setKind struct {
	name    string
	keyType []keyField
	// dataType is nil for plain sets.
	dataType []keyField
	verdict  bool
	dynamic  bool // flags dynamic,timeout: filled from the packet path
}

// keyField is one field of a (possibly concatenated) key or data type.
type keyField uint8

const (
	fieldAddr4 keyField = iota
	fieldAddr6
	fieldProto
	fieldPort
	fieldInteger
)

// fam holds the per-IP-family names and encodings. Every object name starts
// with its family token ("ip4-"/"ip6-") so one inet table can hold both
// families' backends, and each backend recognises what it owns.
type fam struct {
	f          plan.Family
	prefix     string
	addr       keyField
	addrLen    int
	shardNames *shardNames
}

func famOf(f plan.Family) fam {
	fa := fam{f: f, prefix: "ip4-", addr: fieldAddr4, addrLen: 4}
	if f == plan.IPv6 {
		fa = fam{f: f, prefix: "ip6-", addr: fieldAddr6, addrLen: 16}
	}
	// The shard set names are asked for once per element: made once.
	fa.shardNames = &shardNames{}
	for i := range shards {
		fa.shardNames.selectMap[i] = fmt.Sprintf("%sselect-%d", fa.prefix, i)
		fa.shardNames.nodePortSelect[i] = fmt.Sprintf("%sselect-nodeport-%d", fa.prefix, i)
		fa.shardNames.hairpin[i] = fmt.Sprintf("%shairpin-%d", fa.prefix, i)
	}
	return fa
}

// shardNames are the names of a family's sharded sets.
type shardNames struct {
	selectMap, nodePortSelect, hairpin [shards]string
}

// Names of the fixed objects of one family.
func (f fam) natPrerouting() string    { return f.prefix + "nat-prerouting" }
func (f fam) natOutput() string        { return f.prefix + "nat-output" }
func (f fam) natPostrouting() string   { return f.prefix + "nat-postrouting" }
func (f fam) filterPrerouting() string { return f.prefix + "filter-prerouting" }
func (f fam) filterOutput() string     { return f.prefix + "filter-output" }
func (f fam) services() string         { return f.prefix + "services" }
func (f fam) markExternalSrc() string  { return f.prefix + "mark-external-source" }
func (f fam) rejectChain() string      { return f.prefix + "reject" }

func (f fam) serviceIPs() string          { return f.prefix + "service-ips" }
func (f fam) nodePorts() string           { return f.prefix + "service-nodeports" }
func (f fam) noEndpoints() string         { return f.prefix + "no-endpoint-services" }
func (f fam) noEndpointPorts() string     { return f.prefix + "no-endpoint-nodeports" }
func (f fam) clusterIPs() string          { return f.prefix + "cluster-ips" }
func (f fam) nodeIPs() string             { return f.prefix + "node-ips" }
func (f fam) selectMap(shard int) string  { return f.shardNames.selectMap[shard] }
func (f fam) affinity() string            { return f.prefix + "affinity" }
func (f fam) hairpinSet(shard int) string { return f.shardNames.hairpin[shard] }

func (f fam) nodePortSelectMap(shard int) string { return f.shardNames.nodePortSelect[shard] }

// shards splits each big set (endpoints, hairpin pairs) in parts: reading
// a set back costs the kernel a walk over it per 32 KiB of answer, which
// is quadratic in the set's size, so smaller sets keep a periodic full
// sync at 30k services in seconds.
const shards = 16

// shardOf places a key; it must not change between runs, so a restarted
// backend finds its elements where it put them.
func shardOf(key string) int {
	// FNV-1a, written out so it allocates nothing.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % shards)
}

// Endpoint pickers shared by every simple service with n endpoints, by
// what they serve: cluster IPs, external/load-balancer IPs (masqueraded)
// and node ports (masqueraded).
func (f fam) pickCluster(n, shard int) string {
	return fmt.Sprintf("%spick-%d-%d", f.prefix, n, shard)
}
func (f fam) pickExternal(n, shard int) string {
	return fmt.Sprintf("%spick-external-%d-%d", f.prefix, n, shard)
}
func (f fam) pickNodePort(n, shard int) string {
	return fmt.Sprintf("%spick-nodeport-%d-%d", f.prefix, n, shard)
}

// Per-service chain names carry the service name so the ruleset reads well
// in `nft list table` and names survive restarts.
func (f fam) svcChain(n plan.ServicePortName) string { return f.prefix + "svc-" + n.String() }
func (f fam) extChain(n plan.ServicePortName) string { return f.prefix + "ext-" + n.String() }
func (f fam) fwChain(n plan.ServicePortName) string  { return f.prefix + "fw-" + n.String() }
func (f fam) epChain(n plan.ServicePortName, ep netip.AddrPort) string {
	return f.prefix + "ep-" + n.String() + "@" + ep.String()
}

// sets lists the named sets and maps of the family.
func (f fam) sets() []setKind {
	a := f.addr
	kinds := []setKind{
		{name: f.serviceIPs(), keyType: []keyField{a, fieldProto, fieldPort}, verdict: true},
		{name: f.nodePorts(), keyType: []keyField{fieldProto, fieldPort}, verdict: true},
		{name: f.noEndpoints(), keyType: []keyField{a, fieldProto, fieldPort}, verdict: true},
		{name: f.noEndpointPorts(), keyType: []keyField{fieldProto, fieldPort}, verdict: true},
		{name: f.clusterIPs(), keyType: []keyField{a}},
		{name: f.nodeIPs(), keyType: []keyField{a}},
		{name: f.affinity(), keyType: []keyField{fieldInteger, a}, dynamic: true},
	}
	for i := range shards {
		kinds = append(kinds,
			setKind{name: f.hairpinSet(i), keyType: []keyField{a, a}},
			setKind{name: f.selectMap(i), keyType: []keyField{a, fieldProto, fieldPort, fieldInteger}, dataType: []keyField{a, fieldPort}},
			setKind{name: f.nodePortSelectMap(i), keyType: []keyField{fieldProto, fieldPort, fieldInteger}, dataType: []keyField{a, fieldPort}})
	}
	return kinds
}

// Key encodings. Every field takes whole 32-bit registers, zero padded,
// like nft's concatenations. Integers that the kernel produces (numgen) are
// host-endian; we write our own integers (endpoint indexes and ids) the
// same way so immediates and keys agree.

func protoNum(p plan.Protocol) byte {
	switch p {
	case plan.UDP:
		return 17
	case plan.SCTP:
		return 132
	}
	return 6
}

func appendAddr(b []byte, a netip.Addr) []byte { return append(b, a.AsSlice()...) }

func appendProto(b []byte, p plan.Protocol) []byte { return append(b, protoNum(p), 0, 0, 0) }

func appendPort(b []byte, port uint16) []byte {
	return append(b, byte(port>>8), byte(port), 0, 0)
}

func appendInt(b []byte, v uint32) []byte { return binary.NativeEndian.AppendUint32(b, v) }

func keyAddrProtoPort(a netip.Addr, p plan.Protocol, port uint16) string {
	b := make([]byte, 0, 24)
	return string(appendPort(appendProto(appendAddr(b, a), p), port))
}

func keyProtoPort(p plan.Protocol, port uint16) string {
	return string(appendPort(appendProto(make([]byte, 0, 8), p), port))
}

func keyAddr(a netip.Addr) string { return string(a.AsSlice()) }

func keyAddrAddr(a, b netip.Addr) string {
	return string(appendAddr(appendAddr(make([]byte, 0, 32), a), b))
}

// keyIndex appends an endpoint index, host-endian like numgen's output.
func keyIndex(key string, i int) string {
	return string(appendInt([]byte(key), uint32(i)))
}

func dataAddrPort(ap netip.AddrPort) string {
	return string(appendPort(appendAddr(make([]byte, 0, 20), ap.Addr()), ap.Port()))
}
