package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a throw-away certificate authority for tests that need real TLS.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// NewCA makes a CA named "test CA", valid for a day.
func NewCA() (*CA, error) { return NewNamedCA("test CA") }

// NewNamedCA makes a CA with the given common name, valid for a day.
func NewNamedCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key for CA %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing CA %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CA %s: %w", name, err)
	}
	return &CA{Cert: cert, CertPEM: PEM("CERTIFICATE", der), key: key}, nil
}

// Pool is a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CertRequest describes a leaf certificate.
type CertRequest struct {
	CommonName    string
	Organizations []string // groups, for Kubernetes client certificates
	DNSNames      []string
	IPs           []net.IP
	Server        bool      // server auth
	Client        bool      // client auth
	Serial        int64     // 0: a random one
	NotAfter      time.Time // zero: a day from now
}

// KeyPair is a PEM certificate and its PEM private key.
type KeyPair struct {
	CertPEM, KeyPEM []byte
}

// IssuePair signs a new leaf certificate as req describes.
func (ca *CA) IssuePair(req CertRequest) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generating a key for %s: %w", req.CommonName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organizations},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     req.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	if req.Serial != 0 {
		tmpl.SerialNumber = big.NewInt(req.Serial)
	}
	if req.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("signing %s: %w", req.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encoding the key of %s: %w", req.CommonName, err)
	}
	return KeyPair{CertPEM: PEM("CERTIFICATE", der), KeyPEM: PEM("PRIVATE KEY", keyDER)}, nil
}

// Issue returns a PEM serving certificate and key for 127.0.0.1, localhost
// and the extra DNS names, with the given serial number and expiry.
func (ca *CA) Issue(serial int64, notAfter time.Time, dnsNames ...string) (certPEM, keyPEM []byte, err error) {
	kp, err := ca.IssuePair(CertRequest{
		CommonName: "localhost",
		DNSNames:   append([]string{"localhost"}, dnsNames...),
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
		Server:     true,
		Serial:     serial,
		NotAfter:   notAfter,
	})
	return kp.CertPEM, kp.KeyPEM, err
}

// Write stores the pair as <base>.crt and <base>.key in dir and returns
// both paths.
func (kp KeyPair) Write(dir, base string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if err := WritePair(certFile, keyFile, kp.CertPEM, kp.KeyPEM); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// WritePair writes a certificate and key under temporary names and renames
// them into place, as a certificate manager would.
func WritePair(certFile, keyFile string, certPEM, keyPEM []byte) error {
	for file, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(file+".tmp", data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			return err
		}
	}
	return nil
}

// PEM encodes der as one PEM block of the given type.
func PEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("BUG: reading a random serial: %v", err))
	}
	return n
}
