package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
)

// tlsFlags are serve's TLS options, checked and loaded at start: a missing
// or bad file is one line and exit 1, before anything is bound.
type tlsFlags struct {
	cert, key, clientCA string
	minVersion          string
}

func (f tlsFlags) enabled() bool { return f.cert != "" || f.key != "" }

// certReloader serves the certificate files' current content: loaded at
// start, loaded again on SIGHUP, without touching the connections — a
// handshake uses the certificate current at its start.
type certReloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func (r *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading --tls-cert %s and --tls-key %s: %v", r.certFile, r.keyFile, oneLine(err))
	}
	r.cur.Store(&cert)
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cur.Load(), nil }

// reload loads the files again; a failure keeps the certificate in use.
func (r *certReloader) reload(log *slog.Logger) {
	if err := r.load(); err != nil {
		log.Warn("certificate reload failed; still serving the previous one", "err", err)
		return
	}
	log.Info("certificate reloaded", "cert", r.certFile)
}

// tlsConfig builds the server's tls.Config from the flags.
func (f tlsFlags) tlsConfig() (*tls.Config, *certReloader, error) {
	if f.cert == "" || f.key == "" {
		return nil, nil, errors.New("--tls-cert and --tls-key go together")
	}
	r := &certReloader{certFile: f.cert, keyFile: f.key}
	if err := r.load(); err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12}
	if f.minVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if f.clientCA != "" {
		pem, err := os.ReadFile(f.clientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("reading --tls-client-ca: %v", oneLine(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--tls-client-ca %s holds no PEM certificate", f.clientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, r, nil
}

// oneLine keeps an error message to one line.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
