// Package nft is kube-proxy's nftables backend: it programs a plan.Plan
// into the kernel through netlink (github.com/google/nftables for
// expressions, set creation and read-back; our own batch encoder for the
// transactions), never through the nft binary.
//
// # Ruleset
//
// One table, "inet kubenode", holds both families. A Backend programs one
// family, and every object it owns starts with "ip4-" or "ip6-", so the two
// backends of a dual-stack node share the table without touching each
// other's objects. Per family:
//
//	base chains   nat-prerouting, nat-output (dstnat): jump services
//	              nat-postrouting (srcnat): masquerade marked packets, and
//	                DNATed packets whose saddr . daddr is in @hairpin
//	              filter-prerouting (dstnat - 10), filter-output (filter -
//	                10): new connections to @no-endpoint-services (and node
//	                ports in @no-endpoint-nodeports) go to the reject chain
//	                or drop
//	services      daddr @cluster-ips jump mark-external-source (when cluster
//	                CIDRs are known or masqueradeAll)
//	              daddr . l4proto . dport vmap @service-ips
//	              daddr @node-ips (or fib daddr type local, not loopback)
//	                l4proto . dport vmap @service-nodeports
//	pick-N-S      dnat to daddr . l4proto . dport . numgen random mod N
//	                map @select-S   (one chain per endpoint count N and shard S)
//	pick-external-N-S, pick-nodeport-N-S: the same after setting the
//	                masquerade mark (node ports key @select-nodeport-S)
//	svc-/ext-/fw-/ep-<service>: only for services that need logic of their
//	                own (below)
//
// Almost every service is therefore nothing but map elements: its address
// maps to the shared picker for its endpoint count, and its endpoints are
// listed under that address in @select. A service with session affinity,
// externalTrafficPolicy=Local (which short-circuits pod and node traffic
// to the cluster endpoints) or loadBalancerSourceRanges gets chains:
// affinity checks "epID . saddr @affinity" per endpoint (a shared dynamic
// set with per-rule timeouts; endpoint ids are never reused, so an entry
// of a removed endpoint cannot match), the endpoint chains "update" it,
// and the endpoint is chosen by a cascade of rules "numgen random mod k ==
// 0" for k = n, n-1, ..., 2 and a last unconditional one, which picks each
// of n endpoints with probability 1/n and needs no map at all.
//
// # Why this shape: where the time went
//
// Measured on this 2-core VM (kernel 6.18), 10k services x 10 endpoints:
//
//   - Upstream's shape (a "numgen ... vmap { ... }" anonymous map per
//     service) is quadratic: binding each anonymous set walks the whole
//     pending transaction (__nft_set_trans_bind); 60-150 s.
//   - One shared map bound by one lookup rule per service is quadratic too:
//     adding a map element validates it against every binding of the map
//     (a loop over set->bindings in nft_add_set_elem). 21 s. Hence one
//     picker per endpoint count: a handful of bindings.
//   - github.com/google/nftables' AddRule asks the kernel to echo every
//     rule back (NLM_F_ECHO) and acks every message: the kernel spent most
//     of an 8 s sync serialising 100k rules back to us. Our batches carry
//     no echo and one ack, on the last message (errors still come back for
//     every failing message), encoded straight into one buffer with a cache
//     of repeated expression encodings.
//
// With all three fixed, a 10k full sync is about 0.6 s of CPU and a
// one-service change about 0.1 ms; make bench-nft prints the table.
//
// Reading a set back is quadratic as well: each 32 KiB of dump answer
// makes the kernel walk the set from its start. The big sets (endpoints
// per address, hairpin pairs) are therefore split into 16 shards by a
// stable hash of the key. Dumps are walked in place (no per-element
// decoding), read-back elements are held as 16-byte fingerprints, and the
// keys of stale elements are fetched only for the sets that have some.
//
// # Memory
//
// At 30k services x 10 endpoints the live heap is ~49 MiB: the service and
// endpoints maps a kube-proxy keeps (~27 MiB), the plan (~12 MiB: its
// services share the endpoints map's lists) and the backend (~10 MiB,
// mostly the element user counts, 8 bytes a slot). The model keeps no
// objects and no copy of the services: the last synced plan, which the
// caller holds anyway, rebuilds them. A full sync goes out in chunks of
// fullChunk objects, so its transient memory is bounded.
// BenchmarkMemoryBreakdown (go test -bench MemoryBreakdown -benchtime 1x) prints the split.
//
// # Syncs
//
// A partial sync is one transaction with only the changed services. The
// model keeps, per service, the plan's (immutable) Service and the ids it
// used, and rebuilds the old objects from them to diff against the new
// ones, instead of storing objects. Element users are counted by a 64-bit
// hash of (set, key), and the shared pickers are counted per service and
// netted per transaction, so a picker is created with its first user and
// deleted with its last.
//
// A full sync (first sync, periodic resync, any sync after a failure, or a
// change of node IPs, cluster CIDRs or masqueradeAll) reads back our
// chains and the elements of our sets, rewrites every chain the model
// cannot vouch for, fixes every element and deletes what is not desired.
// It goes out as transactions of at most fullChunk objects, each holding
// whole services, with deletions in the last one: no service is ever seen
// half-programmed, and memory stays bounded at any scale.
//
// Masquerading uses a mark bit (DefaultMasqueradeBit): cluster-IP traffic
// from outside the cluster CIDRs (everything with masqueradeAll), external
// traffic with externalTrafficPolicy=Cluster and node-originated traffic
// short-circuited by externalTrafficPolicy=Local are marked; hairpin
// traffic is recognised in postrouting.
//
// Services without endpoints are rejected: TCP with a reset, anything else
// with ICMP port unreachable. Incoming traffic is checked in prerouting,
// not in forward like upstream: on this kernel the ICMP error for a bridged
// packet rejected in the forward hook never leaves, one sent from
// prerouting does.
//
// Known limits: addresses that two services both claim (an external IP and
// port) go to the first claimant; the periodic full sync reads back every
// element, which at 30k services x 10 endpoints still takes ~4 s of CPU
// (most of it the kernel's set dumps) and ~125 MiB peak RSS with
// kube-proxy's GC policy (gcPercent 50; ~185 MiB at Go's default);
// dynamic affinity entries are not read back; Cleanup removes the whole
// table, both families.
package nft
