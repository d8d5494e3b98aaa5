//go:build unix

package main

// deploy/haproxy-tls.cfg end to end, as haproxy_daemon_test.go runs
// deploy/haproxy.cfg: the shipped file itself, two daemons serving TLS
// behind it. Clients speak plaintext frames to HAProxy; HAProxy sends a
// PROXY v2 header, then speaks TLS to the daemons, verifying their
// certificate (the test CA, name localhost), offering ALPN x-frameloop
// (which the daemons require with --tls-alpn) and presenting a client
// certificate (which they require with --tls-client-ca). The health check
// is a ping frame inside TLS. Both daemons UP, clients round robin with
// their own address, one daemon drained by SIGTERM and marked DOWN, the
// other serving every new client; no handshake fails on either.

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/frameloop/frameloop/internal/testkit"
)

const hapTLSConfig = "../../deploy/haproxy-tls.cfg"

func TestHAProxyTLSEndToEnd(t *testing.T) {
	t.Parallel()
	p, f := writeTLSFiles(t)
	bundle := hapClientBundle(t, p.Client)

	hapEndToEnd(t, hapRecipe{
		config: hapTLSConfig,
		daemonArgs: []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.ca,
			"--tls-alpn", alpn, "--tls-handshake-timeout", "5s"},
		env: map[string]string{
			"FRAMELOOP_CA_FILE":    f.ca,
			"FRAMELOOP_TLS_NAME":   "localhost",
			"FRAMELOOP_CLIENT_CRT": bundle,
		},
		// HAProxy loads the CA file at start, even to check the file:
		// the file's other defaults stay.
		checkEnv: map[string]string{"FRAMELOOP_CA_FILE": f.ca},
		checkDaemon: func(t *testing.T, name string, d *daemon) {
			m, err := d.scrapeMetrics()
			if err != nil {
				t.Fatal(err)
			}
			// Every connection, the checks' included, completed its
			// handshake: HAProxy verified the daemon, the daemon verified
			// HAProxy, ALPN agreed.
			if n := m["frameloop_tls_handshakes_total"]; n == 0 {
				t.Errorf("daemon %s completed no TLS handshake", name)
			}
			for _, r := range tlsFailureReasons {
				if v := m[failedMetric(r)]; v != 0 {
					t.Errorf("daemon %s: %v handshakes failed with %s", name, v, r)
				}
			}
			for _, r := range []string{"tls", "reset"} {
				if v := m[`frameloop_connections_closed_total{reason="`+r+`"}`]; v != 0 {
					t.Errorf("daemon %s closed %v connections with reason %s", name, v, r)
				}
			}
			t.Logf("daemon %s: %v TLS handshakes, %v connections accepted", name, m["frameloop_tls_handshakes_total"],
				m["frameloop_connections_accepted_total"])
		},
	})
}

// The file's verification holds both ways: an instance whose certificate
// does not hold FRAMELOOP_TLS_NAME fails its health check (L6RSP, the
// handshake) and gets no client, and so does HAProxy without
// FRAMELOOP_CLIENT_CRT in front of an instance with --tls-client-ca, which
// counts the refusals.
func TestHAProxyTLSVerifiesBothWays(t *testing.T) {
	t.Parallel()
	bin := haproxyBinary(t)
	p, f := writeTLSFiles(t)
	d := startTLSDaemon(t, f, "--proxy-protocol", "--tls-client-ca", f.ca, "--tls-alpn", alpn)
	bundle := hapClientBundle(t, p.Client)
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"certificate for another name", map[string]string{"FRAMELOOP_TLS_NAME": "frameloop.example", "FRAMELOOP_CLIENT_CRT": bundle}},
		{"no client certificate", map[string]string{"FRAMELOOP_TLS_NAME": "localhost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metric(t, d, "frameloop_tls_handshakes_total")
			env := map[string]string{
				"FRAMELOOP_SERVER1": d.addr, "FRAMELOOP_SERVER2": d.addr, "FRAMELOOP_CA_FILE": f.ca,
				"FRAMELOOP_CHECK_INTER": "100ms", "FRAMELOOP_CHECK_FALL": "1", "FRAMELOOP_CHECK_RISE": "1",
				"FRAMELOOP_LOG": "stderr", "FRAMELOOP_MAXCONN": "200",
			}
			for k, v := range tc.env {
				env[k] = v
			}
			h := startHAProxy(t, bin, hapTLSConfig, env)
			h.waitServers(t, map[string]string{"fl1": "DOWN", "fl2": "DOWN"})
			states, _ := h.serverStates()
			t.Logf("servers: %v", states)
			// A client gets nothing: no server is UP.
			c := hapDial(t, h, 0)
			if err := hapPipeline(c, [][]byte{[]byte("anyone?")}); err == nil {
				t.Error("a client was served with every server DOWN")
			}
			if n := metric(t, d, "frameloop_tls_handshakes_total"); n != before {
				t.Errorf("the daemon completed %v handshakes with this HAProxy", n-before)
			}
		})
	}
	m, err := d.scrapeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if m[failedMetric("bad_certificate")] == 0 {
		t.Errorf("the daemon counted no refused client certificate: %v", m[failedMetric("bad_certificate")])
	}
	t.Logf("daemon: failed handshakes: bad_certificate %v, bad_record %v, eof %v, handshake_failure %v",
		m[failedMetric("bad_certificate")], m[failedMetric("bad_record")], m[failedMetric("eof")], m[failedMetric("handshake_failure")])
}

// hapClientBundle writes cert and its key into one PEM file, as HAProxy's
// "crt" takes them.
func hapClientBundle(t *testing.T, c tls.Certificate) string {
	t.Helper()
	cert, key := testkit.WriteFiles(t, c)
	var pem []byte
	for _, name := range []string{cert, key} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, b...)
	}
	bundle := filepath.Join(t.TempDir(), "haproxy-client.pem")
	if err := os.WriteFile(bundle, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return bundle
}
