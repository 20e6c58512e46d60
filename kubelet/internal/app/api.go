package app

import (
	"context"
	"errors"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// errStandalone is returned for API reads when the kubelet runs without an API server.
var errStandalone = errors.New("no API server (the kubelet runs standalone)")

// apiAccess is the node's view of the API for pods: the ConfigMaps, Secrets and tokens its pods
// use (the node authorizer allows exactly those), and the final delete of a stopped pod.
type apiAccess struct {
	client kubernetes.Interface
}

func (a apiAccess) ConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	if a.client == nil {
		return nil, errStandalone
	}
	return a.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (a apiAccess) Secret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	if a.client == nil {
		return nil, errStandalone
	}
	return a.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (a apiAccess) CreateToken(ctx context.Context, ns, sa string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	if a.client == nil {
		return nil, errStandalone
	}
	return a.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
}

// DeletePod removes a pod whose containers are gone: grace 0, and only this UID (a new pod of
// the same name is left alone).
func (a apiAccess) DeletePod(ctx context.Context, ns, name string, uid types.UID) error {
	if a.client == nil {
		return nil
	}
	zero := int64(0)
	err := a.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && (isNotFound(err) || isConflict(err)) {
		return nil
	}
	return err
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
func isConflict(err error) bool { return apierrors.IsConflict(err) }
