// Package watch builds the informers a node agent needs from client-go, and
// the small pieces every consumer of them repeats:
//
//   - informers for the pods bound to one node, the agent's own Node,
//     Services and EndpointSlices (discovery/v1), each with a transform that
//     keeps slim copies in the cache (managedFields and the last-applied
//     annotation always go; Services and EndpointSlices keep only the fields
//     a proxy or the kubelet reads, as CoreDNS's object package does, but stay
//     the real API types);
//   - Handler[T], a typed event handler that unwraps delete tombstones
//     (cache.DeletedFinalStateUnknown) in one place;
//   - WaitForSync, which names the caches that did not sync in time.
//
// Constructors start nothing; run each informer with RunWithContext.
package watch
