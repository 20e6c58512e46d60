package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// writeTestCA puts a CA where kube-controlplane keeps it.
func writeTestCA(t *testing.T, stateDir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(stateDir, pkiDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

func TestNodeKubeconfig(t *testing.T) {
	dir := t.TempDir()
	pool := writeTestCA(t, dir)
	c := &Cluster{stateDir: dir, server: "https://127.0.0.1:6443"}

	path, err := c.NodeKubeconfig("node-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("kubeconfig has no current context")
	}
	if got := cfg.Clusters[ctx.Cluster].Server; got != c.server {
		t.Errorf("server = %s, want %s", got, c.server)
	}
	b, _ := pem.Decode(cfg.AuthInfos[ctx.AuthInfo].ClientCertificateData)
	if b == nil {
		t.Fatal("no client certificate in kubeconfig")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "system:node:node-1" || !slices.Equal(cert.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("subject = %v, want CN=system:node:node-1 O=system:nodes", cert.Subject)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node certificate does not verify against the cluster CA as a client: %v", err)
	}

	// A later call (e.g. after a restart on a new port) keeps the identity
	// and points at the current server.
	c.server = "https://127.0.0.1:7443"
	path2, err := c.NodeKubeconfig("node-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg2, err := clientcmd.LoadFromFile(path2)
	if err != nil {
		t.Fatal(err)
	}
	ctx2 := cfg2.Contexts[cfg2.CurrentContext]
	if got := cfg2.Clusters[ctx2.Cluster].Server; got != c.server {
		t.Errorf("server after restart = %s, want %s", got, c.server)
	}
	if string(cfg2.AuthInfos[ctx2.AuthInfo].ClientCertificateData) != string(cfg.AuthInfos[ctx.AuthInfo].ClientCertificateData) {
		t.Error("node certificate changed between calls")
	}
}

func TestNodeKubeconfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		node   string
		withCA bool
	}{
		{"invalid node name", "Node_1", true},
		{"empty node name", "", true},
		{"no CA in state dir", "node-1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.withCA {
				writeTestCA(t, dir)
			}
			c := &Cluster{stateDir: dir, server: "https://127.0.0.1:6443"}
			if _, err := c.NodeKubeconfig(tc.node); err == nil {
				t.Error("got no error")
			}
		})
	}
}

func TestReadReady(t *testing.T) {
	tests := []struct {
		name    string
		content *string
		want    string
		wantErr bool
	}{
		{"missing", nil, "", true},
		{"server", ptr("https://127.0.0.1:6443\n"), "https://127.0.0.1:6443", false},
		{"garbage", ptr("half"), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != nil {
				if err := os.WriteFile(filepath.Join(dir, readyFile), []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readReady(dir)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("readReady = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestStalePidfileIsNotARunningControlPlane(t *testing.T) {
	dir := t.TempDir()
	// Our own pid is alive but is not kube-controlplane: a reused pid must
	// not be attached to or killed.
	if err := os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := runningPID(dir); ok {
		t.Error("the test process was taken for a control plane")
	}
	if err := KillAll(dir); err != nil {
		t.Errorf("KillAll on a stale pidfile: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, pidFile)); !os.IsNotExist(err) {
		t.Errorf("stale pidfile left behind: %v", err)
	}
}

func TestStartValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"missing binary", Options{Binary: filepath.Join(t.TempDir(), "nope"), StateDir: t.TempDir()}},
		{"missing state dir", Options{Binary: os.Args[0]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Start(t.Context(), tc.o); err == nil {
				t.Error("got no error")
			}
		})
	}
}

func ptr(s string) *string { return &s }
