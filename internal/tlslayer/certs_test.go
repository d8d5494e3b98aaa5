package tlslayer

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
	"testing"
	"time"
)

// testPKI is generated once per test binary, in memory: an ECDSA P-256 CA,
// a server leaf for localhost/127.0.0.1, a client leaf signed by the CA and
// a self-signed client certificate nobody trusts. No key touches the disk
// (only the CA certificate, for openssl and python).
type testPKI struct {
	caCert     *x509.Certificate
	caPEM      []byte
	pool       *x509.CertPool
	server     tls.Certificate
	client     tls.Certificate
	rogue      tls.Certificate
	clientName string
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func getPKI(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() { pki = newPKI() })
	if pki == nil {
		tb.Fatal("PKI generation failed")
	}
	return pki
}

func mustKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

var serial int64

func template(cn string) *x509.Certificate {
	serial++
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"frameloop tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
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

func newPKI() *testPKI {
	p := &testPKI{clientName: "frameloop-test-client"}

	caKey := mustKey()
	caT := template("frameloop test CA")
	caT.IsCA = true
	caT.BasicConstraintsValid = true
	caT.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	p.caCert = sign(caT, caT, &caKey.PublicKey, caKey)
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.caCert.Raw})
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.caCert)

	leaf := func(cn string, usage x509.ExtKeyUsage, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) tls.Certificate {
		k := mustKey()
		t := template(cn)
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		if usage == x509.ExtKeyUsageServerAuth {
			t.DNSNames = []string{"localhost"}
			t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		if parent == nil { // self-signed
			parent, parentKey = t, k
		}
		c := sign(t, parent, &k.PublicKey, parentKey)
		return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
	}
	p.server = leaf("localhost", x509.ExtKeyUsageServerAuth, p.caCert, caKey)
	p.client = leaf(p.clientName, x509.ExtKeyUsageClientAuth, p.caCert, caKey)
	p.rogue = leaf("rogue-client", x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}

// caFile writes the CA certificate (no key) for external clients.
func (p *testPKI) caFile(tb testing.TB) string {
	path := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(path, p.caPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// serverConfig is the server side used by most tests: both TLS versions,
// ALPN h2 and x-frameloop, tickets on (the default).
func (p *testPKI) serverConfig(clientAuth bool) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{p.server},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "x-frameloop"},
	}
	if clientAuth {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.pool
	}
	return cfg
}

func (p *testPKI) clientConfig(version uint16) *tls.Config {
	return &tls.Config{
		RootCAs:    p.pool,
		ServerName: "localhost",
		MinVersion: version,
		MaxVersion: version,
		NextProtos: []string{"x-frameloop"},
	}
}
