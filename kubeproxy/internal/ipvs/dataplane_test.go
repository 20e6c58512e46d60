package ipvs_test

import (
	"github.com/kubenode/kubenode/kubeproxy/internal/ipvs"
	"github.com/kubenode/kubenode/kubeproxy/internal/proxier"
)

var _ proxier.Dataplane = (*ipvs.Backend)(nil)
