package main

import (
	"bytes"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop/bench/internal/tlscert"
)

// TestTLSEcho runs the pipelined echo checks over TLS 1.3 with Go's own
// crypto/tls client against the net and nbio peers' TLS modes: frames split
// across writes down to single bytes (so across records), empty and
// 100 KiB ones, over one and over four connections at once.
func TestTLSEcho(t *testing.T) {
	certs, err := tlscert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for impl := range tlsCapable {
		t.Run(impl, func(t *testing.T) {
			addr := startServerTLS(t, impl, defaultMaxMessage, certs.Cert, certs.Key)
			dialTLS := func() *tls.Conn {
				raw := dial(t, addr)
				c := tls.Client(raw, &tls.Config{RootCAs: certs.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.Handshake(); err != nil {
					t.Fatalf("handshake: %v", err)
				}
				if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
					t.Fatalf("negotiated version %x, want TLS 1.3", v)
				}
				return c
			}
			rng := rand.New(rand.NewPCG(3, uint64(len(impl))))
			pipelineAndVerify(t, dialTLS(), rng, randomPayloads(rng, 300))
			var wg sync.WaitGroup
			for k := range 4 {
				c := dialTLS()
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(9, uint64(k)))
					pipelineAndVerify(t, c, rng, randomPayloads(rng, 100))
				}()
			}
			wg.Wait()

			// TLS 1.2 is refused.
			c := tls.Client(dial(t, addr), &tls.Config{RootCAs: certs.Pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12})
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := c.Handshake(); err == nil {
				t.Error("a TLS 1.2 handshake succeeded")
			}
		})
	}
}

func TestTLSFlags(t *testing.T) {
	certs, err := tlscert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--impl", "gnet", "--tls-cert", certs.Cert, "--tls-key", certs.Key}, "has no TLS"},
		{[]string{"--impl", "net", "--tls-cert", certs.Cert}, "go together"},
		{[]string{"--impl", "nbio", "--tls-key", certs.Key}, "go together"},
	} {
		var buf bytes.Buffer
		if code := run(tc.args, &buf); code != 2 || !strings.Contains(buf.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, buf.String(), tc.want)
		}
	}
	// A key file that is not a key: exit 1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for impl := range tlsCapable {
		var buf bytes.Buffer
		if code := run([]string{"--impl", impl, "--addr", addr, "--tls-cert", certs.Cert, "--tls-key", certs.Cert}, &buf); code != 1 {
			t.Errorf("%s with a certificate as its key: exit %d, want 1 (stderr %q)", impl, code, buf.String())
		}
	}
}
