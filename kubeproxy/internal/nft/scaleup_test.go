package nft

import (
	"fmt"
	"testing"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// TestNodePortFollowsEndpointCountChanges scales a NodePort service's endpoints one at a time
// with partial syncs, as pods of a Deployment turn Ready one after another, and checks both the
// ClusterIP and the NodePort reach exactly the current endpoints after each step.
func TestNodePortFollowsEndpointCountChanges(t *testing.T) {
	w := newFakeWorld(t)
	sp := fsvc("echo", "10.96.0.80", 80)
	sp.NodePort = 30080
	other := w.set(fsvc("other", "10.96.0.81", 80), fep("10.244.3.1", true), fep("10.244.3.2", true), fep("10.244.3.3", true))
	n := w.set(sp)
	w.mustSync()
	walk := newWalker(w.k)
	all := []string{"10.244.0.2", "10.244.0.3", "10.244.0.4"}
	for step, count := range []int{1, 2, 3, 2, 3, 1, 3} {
		var eps []plan.Endpoint
		for _, ip := range all[:count] {
			eps = append(eps, fep(ip, true))
		}
		w.eps[n] = eps
		w.mustSync(n)
		for _, target := range []struct {
			name string
			p    packet
		}{
			{"cluster IP", tcp("10.244.9.9", "10.96.0.80", 80)},
			{"node port", tcp("172.16.0.9", fakeNodeIP, 30080)},
		} {
			t.Run(fmt.Sprintf("step %d: %d endpoints via %s", step, count, target.name), func(t *testing.T) {
				wantEven(t, spread(walk, target.p, 600*count), 600*count, all[:count]...)
			})
		}
	}
	wantEven(t, spread(walk, tcp("10.244.9.9", "10.96.0.81", 80), 900), 900, "10.244.3.1", "10.244.3.2", "10.244.3.3")
	_ = other
}
