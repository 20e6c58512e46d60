module github.com/kubenode/kubenode/e2e

go 1.26.0

require (
	github.com/kubenode/kubenode/api v0.0.0
	github.com/kubenode/kubenode/common v0.0.0
	github.com/kubenode/kubenode/kubelet v0.0.0
	github.com/kubenode/kubenode/kubeproxy v0.0.0
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/google/go-containerregistry v0.22.1 // indirect
	github.com/google/nftables v0.3.0 // indirect
	github.com/mdlayher/netlink v1.7.3-0.20250113171957-fbb4dce95f42 // indirect
	github.com/mdlayher/socket v0.5.1 // indirect
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	k8s.io/api v0.37.2
	k8s.io/apimachinery v0.37.2
	k8s.io/client-go v0.37.2
	k8s.io/cri-api v0.37.2 // indirect
	k8s.io/cri-client v0.37.2 // indirect
)

replace (
	github.com/kubenode/kubenode/api => ../api
	github.com/kubenode/kubenode/common => ../common
	github.com/kubenode/kubenode/kubelet => ../kubelet
	github.com/kubenode/kubenode/kubeproxy => ../kubeproxy
)
