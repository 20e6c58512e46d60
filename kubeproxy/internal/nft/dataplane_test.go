package nft_test

import (
	"github.com/kubenode/kubenode/kubeproxy/internal/nft"
	"github.com/kubenode/kubenode/kubeproxy/internal/proxier"
)

// The backend is a proxier.Dataplane.
var _ proxier.Dataplane = (*nft.Backend)(nil)
