package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// tlsFlags are serve's TLS options, checked and loaded at start: a missing
// or bad file is one line and exit 1, before anything is bound.
type tlsFlags struct {
	cert, key, clientCA string
	minVersion          string
	alpn                []string // nil: no ALPN
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
	log.Info("certificate reloaded", r.describe()...)
}

// describe is the certificate in use, for the logs: its file, subject and
// expiry.
func (r *certReloader) describe() []any {
	attrs := []any{"cert", r.certFile}
	if c := r.cur.Load(); c != nil && c.Leaf != nil {
		attrs = append(attrs, "subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return attrs
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
	cfg := &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12, NextProtos: f.alpn}
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

// alpnFlag is --tls-alpn: protocol names separated by commas, in the
// server's order of preference, checked as they are parsed. crypto/tls
// picks the first of them the client offers; a client that offers ALPN
// but none of them fails its handshake (no_application_protocol), and one
// that offers no ALPN is served without a protocol.
func alpnFlag(fs *flag.FlagSet, p *[]string, name, usage string) {
	fs.Func(name, usage, func(s string) error {
		protos, err := parseALPN(s)
		if err != nil {
			return err
		}
		*p = protos
		return nil
	})
}

// parseALPN splits a --tls-alpn value. A name is 1 to 255 bytes (RFC 7301)
// of printable ASCII without spaces, so that a stray space or an empty
// name from a trailing comma is an error at start, not a protocol no
// client ever offers.
func parseALPN(s string) ([]string, error) {
	var protos []string
	for p := range strings.SplitSeq(s, ",") {
		switch {
		case p == "":
			return nil, errors.New("want protocol names separated by commas, such as x-frameloop or h2,http/1.1, with none empty")
		case len(p) > 255:
			return nil, fmt.Errorf("protocol name of %d bytes; at most 255", len(p))
		case strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
			return nil, fmt.Errorf("protocol name %q has a space or a character outside printable ASCII", p)
		case slices.Contains(protos, p):
			return nil, fmt.Errorf("protocol %q listed twice", p)
		}
		protos = append(protos, p)
	}
	return protos, nil
}

// oneLine keeps an error message to one line.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
