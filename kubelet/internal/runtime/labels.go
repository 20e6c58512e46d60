// Package runtime is the kubelet's side of CRI: it turns pod specs into CRI sandbox and container
// configs, pulls images, runs the plan's actions, and reads back what the runtime has, from the
// labels the kubelet stamped on sandboxes and containers (so a restarted kubelet rebuilds its
// state from the runtime alone).
package runtime

// Label and annotation keys. They are upstream's, so tools that read them (crictl, log shippers)
// see our pods the way they see upstream's.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"

	AnnotationHash         = "io.kubernetes.container.hash"
	AnnotationRestartCount = "io.kubernetes.container.restartCount"
	AnnotationGrace        = "io.kubernetes.pod.terminationGracePeriod"
	AnnotationPreStop      = "io.kubernetes.container.preStopHandler"
	AnnotationTermMsgPath  = "io.kubernetes.container.terminationMessagePath"
	// AnnotationInit marks init containers ("init") and sidecars ("sidecar").
	AnnotationInit = "kubenode.io/init-container"
	// AnnotationHostNetwork records the sandbox's network mode.
	AnnotationHostNetwork = "kubenode.io/host-network"
)
