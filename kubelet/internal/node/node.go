// Package node registers the kubelet's Node object, keeps its status (addresses, capacity,
// conditions, node info) current and heartbeats through a Lease in kube-node-lease.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	goruntime "runtime"
	"time"

	"go.uber.org/zap"
	coordv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kubenode/kubenode/kubelet/internal/eviction"
)

// Health reports the kubelet's own readiness: nil when ready, else why not.
type Health func(ctx context.Context) error

// Config describes the node.
type Config struct {
	Name           string
	Hostname       string
	IPs            []string
	Labels         map[string]string
	Taints         []v1.Taint
	ProviderID     string
	Capacity       v1.ResourceList
	Allocatable    v1.ResourceList
	Machine        Machine
	KubeletVersion string
	// RuntimeVersion is e.g. containerd://1.6.20.
	RuntimeVersion string
	// UpdateFrequency: how often conditions are recomputed (10 s); a change is posted at once.
	UpdateFrequency time.Duration
	// ReportFrequency: an unchanged status is still posted this often (5 min).
	ReportFrequency time.Duration
	// LeaseDuration is the Lease's duration; it is renewed every quarter of it.
	LeaseDuration time.Duration
	KubeletPort   int32
	// Pressure returns the pressure conditions that are on (MemoryPressure, DiskPressure,
	// PIDPressure; the eviction manager's); nil reports none.
	Pressure func() []v1.NodeConditionType
}

// Controller keeps the Node and its Lease.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	health Health
	log    *zap.Logger
	now    func() time.Time

	lastPosted   *v1.NodeStatus
	lastPostTime time.Time
	nodeUID      types.UID
}

// New returns a node controller; Run registers and keeps the node.
func New(cfg Config, client kubernetes.Interface, health Health, now func() time.Time, log *zap.Logger) (*Controller, error) {
	if cfg.Name == "" {
		return nil, errors.New("node: name is required")
	}
	if client == nil {
		return nil, errors.New("node: client is required")
	}
	if cfg.UpdateFrequency <= 0 {
		cfg.UpdateFrequency = 10 * time.Second
	}
	if cfg.ReportFrequency <= 0 {
		cfg.ReportFrequency = 5 * time.Minute
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 40 * time.Second
	}
	return &Controller{cfg: cfg, client: client, health: health, log: log, now: now}, nil
}

// Run registers the node (retrying until it works), then posts status and renews the lease
// until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	for {
		err := c.Register(ctx)
		if err == nil {
			break
		}
		c.log.Warn("node registration failed; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	statusTick := time.NewTicker(c.cfg.UpdateFrequency)
	defer statusTick.Stop()
	leaseTick := time.NewTicker(c.cfg.LeaseDuration / 4)
	defer leaseTick.Stop()
	if err := c.RenewLease(ctx); err != nil {
		c.log.Warn("lease renewal failed", zap.Error(err))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-statusTick.C:
			if err := c.SyncStatus(ctx); err != nil {
				c.log.Warn("node status update failed", zap.Error(err))
			}
		case <-leaseTick.C:
			if err := c.RenewLease(ctx); err != nil {
				c.log.Warn("lease renewal failed", zap.Error(err))
			}
		}
	}
}

// Kick recomputes the status now (call when something the conditions depend on changed).
func (c *Controller) Kick(ctx context.Context) error { return c.SyncStatus(ctx) }

func (c *Controller) labels() map[string]string {
	l := map[string]string{
		v1.LabelHostname:   c.cfg.Name,
		v1.LabelOSStable:   goruntime.GOOS,
		v1.LabelArchStable: goruntime.GOARCH,
	}
	for k, v := range c.cfg.Labels {
		l[k] = v
	}
	return l
}

// Register creates the Node or, when it exists, brings our labels onto it.
func (c *Controller) Register(ctx context.Context) error {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: c.cfg.Name, Labels: c.labels()},
		Spec:       v1.NodeSpec{Taints: c.cfg.Taints, ProviderID: c.cfg.ProviderID},
	}
	n.Status = c.status(ctx, nil)
	created, err := c.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	switch {
	case err == nil:
		c.nodeUID = created.UID
		c.log.Info("node registered", zap.String("node", c.cfg.Name))
		// Create ignores status: post it (controllers may have changed the node meanwhile).
		if err := c.postStatus(ctx, created, n.Status); err == nil || !apierrors.IsConflict(err) {
			return err
		}
		return c.SyncStatus(ctx)
	case apierrors.IsAlreadyExists(err):
		existing, err := c.client.CoreV1().Nodes().Get(ctx, c.cfg.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", c.cfg.Name, err)
		}
		c.nodeUID = existing.UID
		patch := map[string]any{"metadata": map[string]any{"labels": c.labels()}}
		b, _ := json.Marshal(patch)
		if _, err := c.client.CoreV1().Nodes().Patch(ctx, c.cfg.Name, types.StrategicMergePatchType, b, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("update labels of node %s: %w", c.cfg.Name, err)
		}
		c.log.Info("node already registered; updated", zap.String("node", c.cfg.Name))
		return c.SyncStatus(ctx)
	default:
		return fmt.Errorf("register node %s: %w", c.cfg.Name, err)
	}
}

// status computes the node status; old conditions keep their transition times.
func (c *Controller) status(ctx context.Context, old *v1.NodeStatus) v1.NodeStatus {
	now := metav1.NewTime(c.now())
	st := v1.NodeStatus{
		Capacity:    c.cfg.Capacity,
		Allocatable: c.cfg.Allocatable,
		Phase:       "",
		DaemonEndpoints: v1.NodeDaemonEndpoints{
			KubeletEndpoint: v1.DaemonEndpoint{Port: c.cfg.KubeletPort},
		},
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               c.cfg.Machine.MachineID,
			SystemUUID:              c.cfg.Machine.SystemUUID,
			BootID:                  c.cfg.Machine.BootID,
			KernelVersion:           c.cfg.Machine.KernelVersion,
			OSImage:                 c.cfg.Machine.OSImage,
			ContainerRuntimeVersion: c.cfg.RuntimeVersion,
			KubeletVersion:          c.cfg.KubeletVersion,
			OperatingSystem:         c.cfg.Machine.OperatingSystem,
			Architecture:            c.cfg.Machine.Architecture,
		},
	}
	for _, ip := range c.cfg.IPs {
		st.Addresses = append(st.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip})
	}
	host := c.cfg.Hostname
	if host == "" {
		host = c.cfg.Name
	}
	st.Addresses = append(st.Addresses, v1.NodeAddress{Type: v1.NodeHostName, Address: host})

	ready := v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"}
	if c.health != nil {
		if err := c.health(ctx); err != nil {
			ready = v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionFalse, Reason: "KubeletNotReady", Message: err.Error()}
		}
	}
	on := map[v1.NodeConditionType]bool{}
	if c.cfg.Pressure != nil {
		for _, t := range c.cfg.Pressure() {
			on[t] = true
		}
	}
	var conds []v1.NodeCondition
	for _, t := range []v1.NodeConditionType{v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure} {
		cond := v1.NodeCondition{Type: t, Status: v1.ConditionFalse}
		if on[t] {
			cond.Status = v1.ConditionTrue
		}
		cond.Reason, cond.Message = eviction.ConditionMessages(t, on[t])
		conds = append(conds, cond)
	}
	conds = append(conds, ready)
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = now
		if old == nil {
			continue
		}
		for _, o := range old.Conditions {
			if o.Type == conds[i].Type && o.Status == conds[i].Status {
				conds[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	st.Conditions = conds
	return st
}

// sameIgnoringHeartbeat compares statuses without heartbeat times.
func sameIgnoringHeartbeat(a, b *v1.NodeStatus) bool {
	if a == nil || b == nil {
		return false
	}
	ca, cb := a.DeepCopy(), b.DeepCopy()
	for _, s := range []*v1.NodeStatus{ca, cb} {
		for i := range s.Conditions {
			s.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		// Images are reported by the API's other writers; not ours to compare.
		s.Images = nil
	}
	return reflect.DeepEqual(ca.Conditions, cb.Conditions) && reflect.DeepEqual(ca.Addresses, cb.Addresses) &&
		ca.Capacity.Cpu().Equal(*cb.Capacity.Cpu()) && ca.Allocatable.Memory().Equal(*cb.Allocatable.Memory()) &&
		ca.NodeInfo == cb.NodeInfo
}

// SyncStatus posts the node status when it changed or the report period passed, retrying
// when another writer changed the node in between.
func (c *Controller) SyncStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.client.CoreV1().Nodes().Get(ctx, c.cfg.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", c.cfg.Name, err)
		}
		c.nodeUID = n.UID
		st := c.status(ctx, &n.Status)
		if sameIgnoringHeartbeat(c.lastPosted, &st) && c.now().Sub(c.lastPostTime) < c.cfg.ReportFrequency {
			return nil
		}
		return c.postStatus(ctx, n, st)
	})
}

func (c *Controller) postStatus(ctx context.Context, n *v1.Node, st v1.NodeStatus) error {
	n = n.DeepCopy()
	images := n.Status.Images
	volumes := n.Status.VolumesInUse
	n.Status = st
	n.Status.Images = images
	n.Status.VolumesInUse = volumes
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		// %w keeps the API error for RetryOnConflict.
		return fmt.Errorf("update status of node %s: %w", c.cfg.Name, err)
	}
	c.lastPosted = &st
	c.lastPostTime = c.now()
	return nil
}

// RenewLease creates or renews the node's Lease.
func (c *Controller) RenewLease(ctx context.Context) error {
	leases := c.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(c.now())
	dur := int32(c.cfg.LeaseDuration / time.Second)
	holder := c.cfg.Name
	l, err := leases.Get(ctx, c.cfg.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: c.cfg.Name, Namespace: v1.NamespaceNodeLease},
			Spec:       coordv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
		}
		if c.nodeUID != "" {
			l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: c.cfg.Name, UID: c.nodeUID}}
		}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create lease %s/%s: %w", v1.NamespaceNodeLease, c.cfg.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get lease %s/%s: %w", v1.NamespaceNodeLease, c.cfg.Name, err)
	}
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &dur
	l.Spec.RenewTime = &now
	if len(l.OwnerReferences) == 0 && c.nodeUID != "" {
		l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: c.cfg.Name, UID: c.nodeUID}}
	}
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew lease %s/%s: %w", v1.NamespaceNodeLease, c.cfg.Name, err)
	}
	return nil
}
