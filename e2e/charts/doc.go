// Package charts holds the tests of kubenode's Helm charts (charts/kube-proxy, charts/kubelet):
// helm lint and template with default and non-default values, the rendered objects decoded into
// typed API objects and the rendered configuration files loaded by the same strict loader and
// validation the binaries use, bad values refused by each chart's values.schema.json, and an
// install, upgrade and uninstall against the real control plane (e2e/cluster).
//
// helm is the real command built from helm.sh/helm/v3 in its own module (e2e/helm) by
// `make helm`; run the tests through `make test-charts`, which sets KUBENODE_HELM_BIN,
// KUBENODE_CONTROLPLANE_BIN and the component image variables.
package charts
