package pki

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssuedCertificatesVerify(t *testing.T) {
	dir := t.TempDir()
	ca, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if err := ca.EnsureServing(dir, "apiserver", []string{"kubernetes.default.svc"}, []net.IP{net.ParseIP("10.96.0.1")}); err != nil {
		t.Fatal(err)
	}
	id := Identity{Name: "admin", CN: "kubernetes-admin", Orgs: []string{"system:masters"}}
	if err := ca.EnsureClient(dir, id); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		file  string
		usage x509.ExtKeyUsage
		host  string
		cn    string
		orgs  []string
	}{
		{"serving by VIP", CertPath(dir, "apiserver"), x509.ExtKeyUsageServerAuth, "10.96.0.1", "apiserver", nil},
		{"serving by service DNS", CertPath(dir, "apiserver"), x509.ExtKeyUsageServerAuth, "kubernetes.default.svc", "apiserver", nil},
		{"client", CertPath(dir, "admin"), x509.ExtKeyUsageClientAuth, "", "kubernetes-admin", []string{"system:masters"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := readCert(t, tc.file)
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			if c.Subject.CommonName != tc.cn || !slices.Equal(c.Subject.Organization, tc.orgs) {
				t.Errorf("subject = %v, want CN=%s O=%v", c.Subject, tc.cn, tc.orgs)
			}
		})
	}
}

func TestEnsureKeepsExistingFiles(t *testing.T) {
	dir := t.TempDir()
	ca1, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureServiceAccountKey(dir); err != nil {
		t.Fatal(err)
	}
	sa1, _ := os.ReadFile(SAKeyPath(dir))
	ca2, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureServiceAccountKey(dir); err != nil {
		t.Fatal(err)
	}
	sa2, _ := os.ReadFile(SAKeyPath(dir))
	if !ca1.Cert.Equal(ca2.Cert) {
		t.Error("CA was regenerated; existing kubeconfigs would stop working")
	}
	if string(sa1) != string(sa2) {
		t.Error("service account key was regenerated; issued tokens would stop working")
	}
}

func TestLoadCAErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/ca.crt"
	if err := os.WriteFile(bad, []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCA(bad, dir+"/ca.key")
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("error = %v, want it to name %s", err, bad)
	}
}
