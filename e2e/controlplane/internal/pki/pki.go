// Package pki creates the control plane's certificate authority, serving
// and client certificates, the service-account key pair and kubeconfigs.
// Files are created once and reused on later starts, so kubeconfigs and
// tokens handed out earlier stay valid across restarts.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Validity of every certificate made here. Dev clusters live for days, not years.
const validity = 365 * 24 * time.Hour

// Identity is a client certificate subject: CN is the user, Orgs the groups.
type Identity struct {
	Name string // file stem and kubeconfig name, e.g. "admin"
	CN   string
	Orgs []string
}

// CA is a loaded certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// Paths of the files under a PKI directory.
func CACertPath(dir string) string       { return filepath.Join(dir, "ca.crt") }
func CAKeyPath(dir string) string        { return filepath.Join(dir, "ca.key") }
func SAKeyPath(dir string) string        { return filepath.Join(dir, "sa.key") }
func SAPubPath(dir string) string        { return filepath.Join(dir, "sa.pub") }
func CertPath(dir, n string) string      { return filepath.Join(dir, n+".crt") }
func KeyPath(dir, n string) string       { return filepath.Join(dir, n+".key") }
func exists(p string) bool               { _, err := os.Stat(p); return err == nil }
func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// EnsureCA loads the CA in dir, creating it first if it is missing.
func EnsureCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	if !exists(CACertPath(dir)) || !exists(CAKeyPath(dir)) {
		key, err := newKey()
		if err != nil {
			return nil, fmt.Errorf("generate CA key: %w", err)
		}
		now := time.Now()
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "kubenode-ca"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(10 * validity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, fmt.Errorf("self-sign CA: %w", err)
		}
		if err := writeKey(CAKeyPath(dir), key); err != nil {
			return nil, err
		}
		if err := writePEM(CACertPath(dir), "CERTIFICATE", der, 0o644); err != nil {
			return nil, err
		}
	}
	return LoadCA(CACertPath(dir), CAKeyPath(dir))
}

// LoadCA reads a PEM certificate and PEM private key.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// EnsureServing creates a serving certificate named name signed by ca unless it exists.
func (ca *CA) EnsureServing(dir, name string, dnsNames []string, ips []net.IP) error {
	if exists(CertPath(dir, name)) && exists(KeyPath(dir, name)) {
		return nil
	}
	return ca.issue(dir, name, pkix.Name{CommonName: name}, dnsNames, ips, x509.ExtKeyUsageServerAuth)
}

// EnsureClient creates a client certificate for id unless it exists.
func (ca *CA) EnsureClient(dir string, id Identity) error {
	if exists(CertPath(dir, id.Name)) && exists(KeyPath(dir, id.Name)) {
		return nil
	}
	return ca.issue(dir, id.Name, pkix.Name{CommonName: id.CN, Organization: id.Orgs}, nil, nil, x509.ExtKeyUsageClientAuth)
}

func (ca *CA) issue(dir, name string, subj pkix.Name, dnsNames []string, ips []net.IP, usage x509.ExtKeyUsage) error {
	key, err := newKey()
	if err != nil {
		return fmt.Errorf("generate key for %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subj,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return fmt.Errorf("sign certificate %s: %w", name, err)
	}
	if err := writeKey(KeyPath(dir, name), key); err != nil {
		return err
	}
	return writePEM(CertPath(dir, name), "CERTIFICATE", der, 0o644)
}

// EnsureServiceAccountKey creates the token signing key pair unless it exists.
func EnsureServiceAccountKey(dir string) error {
	if exists(SAKeyPath(dir)) && exists(SAPubPath(dir)) {
		return nil
	}
	key, err := newKey()
	if err != nil {
		return fmt.Errorf("generate service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("marshal service account public key: %w", err)
	}
	if err := writeKey(SAKeyPath(dir), key); err != nil {
		return err
	}
	return writePEM(SAPubPath(dir), "PUBLIC KEY", pub, 0o644)
}

// WriteKubeconfig writes a kubeconfig for server using the client
// certificate of identity name in dir, with everything embedded.
func WriteKubeconfig(path, server, dir, name string, caPEM []byte) error {
	cert, err := os.ReadFile(CertPath(dir, name))
	if err != nil {
		return fmt.Errorf("read client certificate: %w", err)
	}
	key, err := os.ReadFile(KeyPath(dir, name))
	if err != nil {
		return fmt.Errorf("read client key: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubenode"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "kubenode", AuthInfo: name}
	cfg.CurrentContext = name
	// Write then rename so a reader never sees half a file.
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial is still a valid certificate.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key %s: %w", path, err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New(path + ": key cannot sign")
	}
	return s, nil
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
