package main

// serve's TLS flags in-process: what reaches the tls.Config. The daemon
// with real clients is tls_daemon_test.go.

import (
	"crypto/tls"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/frameloop/frameloop/internal/testkit"
)

func TestParseALPN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{"x-frameloop", []string{"x-frameloop"}, ""},
		{"x-frameloop,h2,http/1.1", []string{"x-frameloop", "h2", "http/1.1"}, ""},
		{strings.Repeat("p", 255), []string{strings.Repeat("p", 255)}, ""},
		{"", nil, "none empty"},
		{"h2,", nil, "none empty"},
		{",h2", nil, "none empty"},
		{"h2,,x", nil, "none empty"},
		{"h2, x", nil, "space"},
		{"h2\tx", nil, "space"},
		{"caf\u00e9", nil, "printable ASCII"},
		{"h2,h2", nil, "twice"},
		{strings.Repeat("p", 256), nil, "at most 255"},
	} {
		got, err := parseALPN(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseALPN(%q) = %q, %v; want an error about %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseALPN(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestServeTLSFlagsReachTheConfig(t *testing.T) {
	p := testkit.TestPKI(t)
	cert, key := testkit.WriteFiles(t, p.Server)
	ca := p.CAFile(t)
	for _, args := range [][]string{
		{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca, "--tls-min-version", "1.3", "--tls-alpn", "x-frameloop,h2"},
		{"--tls-cert=" + cert, "--tls-key=" + key, "--tls-client-ca=" + ca, "--tls-min-version=1.3", "--tls-alpn=x-frameloop,h2"},
	} {
		o, err := parseServeFlags(args, io.Discard)
		if err != nil {
			t.Fatalf("parseServeFlags(%q): %v", args, err)
		}
		cfg, certs, err := o.tls.tlsConfig()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.NextProtos, []string{"x-frameloop", "h2"}) || cfg.MinVersion != tls.VersionTLS13 ||
			cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || certs == nil {
			t.Errorf("%q: NextProtos %q, MinVersion %x, ClientAuth %v", args, cfg.NextProtos, cfg.MinVersion, cfg.ClientAuth)
		}
	}
	// The defaults: no ALPN, TLS 1.2 and up, no client certificates.
	o, err := parseServeFlags([]string{"--tls-cert", cert, "--tls-key", key}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := o.tls.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NextProtos != nil || cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("defaults: NextProtos %q, MinVersion %x, ClientAuth %v", cfg.NextProtos, cfg.MinVersion, cfg.ClientAuth)
	}
	// --tls-alpn without a certificate is a usage error.
	if _, err := parseServeFlags([]string{"--tls-alpn", "h2"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("--tls-alpn alone: %v", err)
	}
}
