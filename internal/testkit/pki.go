package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is the tests' certificates, generated in memory once per test
// binary: an ECDSA P-256 CA, a server certificate for localhost and
// 127.0.0.1, a client certificate signed by the CA, and a self-signed
// client certificate nobody trusts. No private key is ever checked in;
// WriteFiles puts one in the test's temporary directory when a program
// under test needs files.
type PKI struct {
	CACert     *x509.Certificate
	CAPEM      []byte
	Pool       *x509.CertPool
	Server     tls.Certificate
	Client     tls.Certificate
	Rogue      tls.Certificate
	ClientName string
	caKey      *ecdsa.PrivateKey
}

var (
	pkiOnce sync.Once
	pki     *PKI
)

// TestPKI returns the tests' certificates.
func TestPKI(tb testing.TB) *PKI {
	tb.Helper()
	pkiOnce.Do(func() { pki = newPKI() })
	return pki
}

var serial atomic.Int64

func template(cn string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"frameloop tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
}

func mustKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func sign(tmpl, parent *x509.Certificate, pub, parentKey any) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func newPKI() *PKI {
	p := &PKI{ClientName: "frameloop-test-client"}
	caKey := mustKey()
	caT := template("frameloop test CA")
	caT.IsCA = true
	caT.BasicConstraintsValid = true
	caT.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	p.CACert = sign(caT, caT, &caKey.PublicKey, caKey)
	p.caKey = caKey
	p.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.CACert.Raw})
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(p.CACert)
	p.Server = p.NewServerCert("localhost")
	p.Client = p.leaf(p.ClientName, x509.ExtKeyUsageClientAuth, p.CACert, caKey)
	p.Rogue = p.leaf("rogue-client", x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}

// NewServerCert returns another server certificate for localhost, signed
// by the CA, its subject's common name cn (to tell certificates apart).
func (p *PKI) NewServerCert(cn string) tls.Certificate {
	return p.leaf(cn, x509.ExtKeyUsageServerAuth, p.CACert, p.caKey)
}

// ServerConfig is a server's tls.Config with the server certificate,
// TLS 1.2 and 1.3, ALPN "h2" and "x-frameloop"; with clientAuth, client
// certificates are required and verified against the CA.
func (p *PKI) ServerConfig(clientAuth bool) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{p.Server},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "x-frameloop"},
	}
	if clientAuth {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.Pool
	}
	return cfg
}

// ClientConfig is a client's tls.Config trusting the CA, for one TLS
// version (0: any), asking for ALPN "x-frameloop".
func (p *PKI) ClientConfig(version uint16) *tls.Config {
	return &tls.Config{
		RootCAs:    p.Pool,
		ServerName: "localhost",
		MinVersion: version,
		MaxVersion: version,
		NextProtos: []string{"x-frameloop"},
	}
}

// CAFile writes the CA certificate (no key) into the test's temporary
// directory, for clients such as openssl, Python or HAProxy.
func (p *PKI) CAFile(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(path, p.CAPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// WriteFiles writes cert's certificate chain and private key as PEM into
// the test's temporary directory, for a program that loads files.
func WriteFiles(tb testing.TB, cert tls.Certificate) (certFile, keyFile string) {
	tb.Helper()
	dir := tb.TempDir()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}

func (p *PKI) leaf(cn string, usage x509.ExtKeyUsage, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) tls.Certificate {
	k := mustKey()
	t := template(cn)
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	if usage == x509.ExtKeyUsageServerAuth {
		t.DNSNames = []string{"localhost"}
		t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	if parent == nil { // self-signed
		parent, parentKey = t, k
	}
	c := sign(t, parent, &k.PublicKey, parentKey)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}
