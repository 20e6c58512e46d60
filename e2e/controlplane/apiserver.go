package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"github.com/kubenode/kubenode/e2e/controlplane/internal/pki"
)

// apiserverOptions builds kube-apiserver's options from the same flags an
// operator would pass, so what is tested here is the ordinary command line.
func apiserverOptions(p paths, cfg config, ports Ports) (*options.ServerRunOptions, error) {
	dir := p.pki()
	args := []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports.APIServer),
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(ports.Etcd),
		"--tls-cert-file=" + pki.CertPath(dir, "apiserver"),
		"--tls-private-key-file=" + pki.KeyPath(dir, "apiserver"),
		"--client-ca-file=" + pki.CACertPath(dir),
		"--kubelet-client-certificate=" + pki.CertPath(dir, "apiserver-kubelet-client"),
		"--kubelet-client-key=" + pki.KeyPath(dir, "apiserver-kubelet-client"),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + pki.SAPubPath(dir),
		"--service-account-signing-key-file=" + pki.SAKeyPath(dir),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		"--profiling=false",
	}
	if cfg.AdvertiseAddress != "" {
		args = append(args, "--advertise-address="+cfg.AdvertiseAddress)
	}
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-apiserver flags: %w", err)
	}
	return s, nil
}

// runAPIServer does what kube-apiserver's command does after flag parsing,
// minus its signal handling: this process decides when the server stops.
func runAPIServer(ctx context.Context, s *options.ServerRunOptions) error {
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-apiserver feature gates: %w", err)
	}
	// The loopback clients must not log warnings about themselves.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("complete kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	return app.Run(ctx, completed)
}
