//go:build unix

package main

// TLS end to end: `frameloop serve --tls-*` over loopback against clients
// nobody here wrote — openssl s_client, Python's ssl module — and Go's
// crypto/tls where a test needs to look inside the connection (the
// server's certificate after a reload). Versions and ALPN as each client
// reports them, frames echoed byte for byte, close_notify after the last
// reply at a drain, client certificates, start-up errors, the certificate
// reloaded on SIGHUP, the TLS metrics, and bad clients closed and counted.
// The clients are in tls_clients_test.go.

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

// failedMetric is the sample of frameloop_tls_handshakes_failed_total for
// reason.
func failedMetric(reason string) string {
	return fmt.Sprintf("frameloop_tls_handshakes_failed_total{reason=%q}", reason)
}

// failures is every reason's count of failed handshakes, zero unless
// given, for waitMetrics.
func failures(nonzero map[string]float64) map[string]float64 {
	m := map[string]float64{}
	for _, r := range tlsFailureReasons {
		m[failedMetric(r)] = nonzero[r]
	}
	return m
}

func merge(ms ...map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// binaryPayload is a payload a line-oriented client could mangle: every
// byte value, NULs, CR LF, lines starting with s_client's command letters
// (Q, R, k), then a pseudo-random tail.
func binaryPayload(n int, seed uint64) []byte {
	var b []byte
	for i := range 256 {
		b = append(b, byte(i))
	}
	b = append(b, "\nQ\nR\nk\nK\r\n\x00\x00"...)
	return append(b, testkit.Pattern(n, seed)...)
}

// ---------------------------------------------------------------------------
// openssl s_client.

func TestDaemonTLSOpenSSLClient(t *testing.T) {
	t.Parallel()
	_, f := writeTLSFiles(t)
	d := startTLSDaemon(t, f, "--tls-alpn", alpn)
	for i, v := range []struct{ flag, name string }{{"-tls1_2", "TLSv1.2"}, {"-tls1_3", "TLSv1.3"}} {
		t.Run(v.name, func(t *testing.T) {
			frame := testkit.Frame(binaryPayload(3000, uint64(i)))
			r := sClient(t, d, f, frame, len(frame), v.flag, "-alpn", alpn)
			t.Logf("s_client %s -alpn %s: %s, %s, verification %s, ALPN %q; exit %d after %v", v.flag, alpn,
				r.summary("Protocol version"), r.summary("Ciphersuite"), r.summary("Verification"), r.serverALPN(), r.code,
				r.elapsed.Round(time.Millisecond))
			if !bytes.Equal(r.stdout, frame) {
				t.Fatalf("stdout is not the echo of the %d-byte frame sent:\n%v", len(frame), r)
			}
			if got := r.summary("Protocol version"); got != v.name {
				t.Errorf("protocol version %q, want %s:\n%v", got, v.name, r)
			}
			if got := r.summary("Verification"); got != "OK" {
				t.Errorf("verification %q, want OK:\n%v", got, r)
			}
			if got := r.serverALPN(); got != alpn {
				t.Errorf("the server selected ALPN %q, want %q; trace:\n%s", got, alpn, r.trace)
			}
			// Ended by its own close_notify at the end of stdin, cleanly.
			if r.code != 0 || strings.Contains(r.stderr, "error") {
				t.Errorf("s_client exited %d, want a clean 0:\n%v", r.code, r)
			}
		})
	}
	// A client that offers no ALPN is served without a protocol; one that
	// offers only protocols the daemon does not serve is refused.
	t.Run("no ALPN offered", func(t *testing.T) {
		frame := testkit.Frame([]byte("no alpn"))
		r := sClient(t, d, f, frame, len(frame), "-tls1_3")
		if !bytes.Equal(r.stdout, frame) || r.code != 0 || r.serverALPN() != "" {
			t.Fatalf("echo %v, ALPN %q; want the echo, no ALPN and exit 0:\n%v", bytes.Equal(r.stdout, frame), r.serverALPN(), r)
		}
	})
	t.Run("other protocols", func(t *testing.T) {
		r := sClient(t, d, f, testkit.Frame([]byte("h2?")), 0, "-tls1_3", "-alpn", "h2,http/1.1")
		t.Logf("s_client -alpn h2,http/1.1: exit %d: %s", r.code, lastLine(r.stderr))
		if r.code == 0 || len(r.stdout) > 0 {
			t.Fatalf("want a refusal:\n%v", r)
		}
	})
	waitMetrics(t, d, merge(failures(map[string]float64{"handshake_failure": 1}), map[string]float64{
		"frameloop_tls_handshakes_total":       3,
		"frameloop_tls_handshakes_in_progress": 0,
	}))
}

// ---------------------------------------------------------------------------
// Python's ssl module.

// Frames echoed byte for byte in TLS 1.2 and 1.3, the server's ALPN
// preference, and a drain on SIGTERM that delivers every reply — held
// back by the client, which reads nothing until the drain has begun —
// and then close_notify: Python's recv returns b” only for a
// close_notify when suppress_ragged_eofs is off.
func TestDaemonTLSPythonClientDrain(t *testing.T) {
	t.Parallel()
	_, f := writeTLSFiles(t)
	for i, version := range []string{"TLSv1_2", "TLSv1_3"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			d := startTLSDaemon(t, f, "--tls-alpn", alpn+",h2", "--shutdown-timeout", "30s")
			var payloads [][]byte
			for j, n := range []int{0, 1, 5, 1000, 16 << 10, 100_000} {
				payloads = append(payloads, binaryPayload(n, uint64(10*i+j)))
			}
			stream, sent := writeStream(t, "stream", payloads...)
			var big [][]byte
			for j := range 256 {
				big = append(big, testkit.Pattern(64<<10, uint64(1000*i+j)))
			}
			drain, drained := writeStream(t, "drain", big...)

			// The client prefers h2, the daemon x-frameloop: the server's
			// order decides.
			py := startPython(t, d, f, pyConfig{Version: version, ALPN: []string{"h2", alpn}, RcvBuf: 16 << 10,
				Streams: []string{stream}, Drain: drain})
			open := py.expect("open")
			t.Logf("python: %s, %s, ALPN %q", open.str("version"), open.str("cipher"), open.str("alpn"))
			if want := strings.ReplaceAll(version, "_", "."); open.str("version") != want || open.str("alpn") != alpn {
				t.Fatalf("python negotiated %s with ALPN %q, want %s and %q", open.str("version"), open.str("alpn"), want, alpn)
			}
			py.expect("echoed")
			requireEcho(t, stream, sent)
			e := py.expect("sent")

			// The client has stopped sending: the daemon stopped reading
			// it, its replies stuck behind the client's 16 KiB receive
			// buffer. SIGTERM now.
			m, err := d.scrapeMetrics()
			if err != nil {
				t.Fatal(err)
			}
			total := float64(len(sent) + len(drained))
			t.Logf("at SIGTERM: the client has sent %.0f of %d bytes; the daemon has sent %.0f bytes (TLS records included) of %.0f bytes of replies",
				e["bytes"], len(drained), m["frameloop_bytes_sent_total"], total)
			if m["frameloop_bytes_sent_total"] >= total {
				t.Errorf("the daemon had sent every reply before SIGTERM: the test does not test draining")
			}
			d.signal(syscall.SIGTERM)
			if _, ok := d.waitLog(ioWait, msgIs("signal received, draining")); !ok {
				t.Fatal("the daemon did not log that it drains")
			}
			if _, err := py.stdin.Write([]byte("read\n")); err != nil {
				t.Fatal(err)
			}
			eof := py.next()
			if eof.str("event") != "eof" {
				t.Fatalf("python: %v, want every reply and then close_notify (recv returning b'')", eof)
			}
			requireEcho(t, drain, drained)
			if code := py.exit(); code != 0 {
				t.Errorf("python exited %d", code)
			}
			if code, ok := d.waitExit(exitWait); !ok || code != 0 {
				t.Fatalf("daemon: exited %v, status %d; want 0", ok, code)
			}
		})
	}
}

// A connection with nothing in flight when the drain begins is closed
// with close_notify too: an idle TLS client at SIGTERM reads a clean end
// of the stream, not a TCP close that a strict client must treat as a
// truncation attack.
func TestDaemonTLSPythonIdleAtSIGTERM(t *testing.T) {
	t.Parallel()
	_, f := writeTLSFiles(t)
	for _, version := range []string{"TLSv1_2", "TLSv1_3"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			d := startTLSDaemon(t, f, "--shutdown-timeout", "20s")
			stream, sent := writeStream(t, "stream", []byte("then idle"))
			drain, _ := writeStream(t, "drain") // nothing: the client only waits
			py := startPython(t, d, f, pyConfig{Version: version, Streams: []string{stream}, Drain: drain})
			py.expect("open")
			py.expect("echoed")
			requireEcho(t, stream, sent)
			py.expect("sent")
			d.signal(syscall.SIGTERM)
			if code, ok := d.waitExit(exitWait); !ok || code != 0 {
				t.Fatalf("daemon: exited %v, status %d; want 0", ok, code)
			}
			py.stdin.Write([]byte("read\n"))
			if e := py.next(); e.str("event") != "eof" {
				t.Fatalf("python, idle at SIGTERM: %v; want recv to return b'' (close_notify)", e)
			}
			py.exit()
		})
	}
}

// ---------------------------------------------------------------------------
// Client certificates.

func TestDaemonTLSClientCertificates(t *testing.T) {
	t.Parallel()
	_, f := writeTLSFiles(t)
	d := startTLSDaemon(t, f, "--tls-client-ca", f.ca)
	type cert struct{ name, cert, key string }
	refusedCerts := []cert{{"without a certificate", "", ""}, {"with the self-signed one", f.rogue, f.roguekey}}
	accepted, refused := 0, 0
	for _, v := range []struct{ flag, py string }{{"-tls1_2", "TLSv1_2"}, {"-tls1_3", "TLSv1_3"}} {
		t.Run("openssl "+v.flag+" with the client certificate", func(t *testing.T) {
			frame := testkit.Frame(binaryPayload(500, 7))
			r := sClient(t, d, f, frame, len(frame), v.flag, "-cert", f.client, "-key", f.clikey)
			if !bytes.Equal(r.stdout, frame) || r.code != 0 {
				t.Fatalf("want the echo and exit 0:\n%v", r)
			}
		})
		accepted++
		for _, c := range refusedCerts {
			t.Run("openssl "+v.flag+" "+c.name, func(t *testing.T) {
				args := []string{v.flag}
				if c.cert != "" {
					args = append(args, "-cert", c.cert, "-key", c.key)
				}
				r := sClient(t, d, f, testkit.Frame([]byte("let me in")), 0, args...)
				t.Logf("openssl %s %s: exit %d: %s", v.flag, c.name, r.code, lastLine(r.stderr))
				if r.code == 0 || len(r.stdout) > 0 {
					t.Fatalf("want a refusal:\n%v", r)
				}
			})
			refused++
		}
		t.Run("python "+v.py+" with the client certificate", func(t *testing.T) {
			stream, sent := writeStream(t, "stream", binaryPayload(2000, 8))
			py := startPython(t, d, f, pyConfig{Version: v.py, Cert: f.client, Key: f.clikey, Streams: []string{stream}})
			py.expect("open")
			py.expect("echoed")
			requireEcho(t, stream, sent)
			if code := py.exit(); code != 0 {
				t.Fatalf("python exited %d", code)
			}
		})
		accepted++
		for _, c := range refusedCerts {
			t.Run("python "+v.py+" "+c.name, func(t *testing.T) {
				e := pyRefused(t, d, f, pyConfig{Version: v.py, Cert: c.cert, Key: c.key})
				t.Logf("python %s %s: %s: %s", v.py, c.name, e.str("type"), e.str("message"))
			})
			refused++
		}
	}
	waitMetrics(t, d, merge(failures(map[string]float64{"bad_certificate": float64(refused)}), map[string]float64{
		"frameloop_tls_handshakes_total":       float64(accepted),
		"frameloop_tls_handshakes_in_progress": 0,
	}))
}

// pyRefused runs the Python client with cfg and a frame to echo, and
// returns the error it reports: at the handshake or, in TLS 1.3, where
// the client's side of the handshake is over before the server has
// looked at its certificate, at its first read.
func pyRefused(t *testing.T, d *daemon, f tlsFiles, cfg pyConfig) pyEvent {
	t.Helper()
	stream, _ := writeStream(t, "stream", []byte("let me in"))
	cfg.Streams = []string{stream}
	py := startPython(t, d, f, cfg)
	e := py.next()
	if e.str("event") == "open" {
		e = py.next()
	}
	if e.str("event") != "error" {
		t.Fatalf("python: %v, want a refusal", e)
	}
	if code := py.exit(); code != 1 {
		t.Errorf("python exited %d after a refusal", code)
	}
	return e
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := splitLines(s)
	if len(lines) == 0 {
		return ""
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// alertLine is the line of an OpenSSL error output that names the alert.
func alertLine(stderr string) string {
	for l := range strings.SplitSeq(stderr, "\n") {
		if strings.Contains(l, "alert") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(stderr)
}

// ---------------------------------------------------------------------------
// Start-up errors.

func TestDaemonTLSStartupErrors(t *testing.T) {
	t.Parallel()
	p, f := writeTLSFiles(t)
	dir := t.TempDir()
	garbage := dir + "/garbage.pem"
	empty := dir + "/empty.pem"
	missing := dir + "/missing.pem"
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"), 0o644)
	os.WriteFile(empty, nil, 0o644)
	_, otherKey := testkit.WriteFiles(t, p.NewServerCert("other"))

	// A port held by someone else: a bad file must be reported before
	// anything is bound (the error is the file's, not the bind's).
	held, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--addr", held}

	exit1 := []struct {
		name string
		args []string
		want []string // fragments of the one line
	}{
		{"missing certificate", []string{"--tls-cert", missing, "--tls-key", f.key}, []string{"--tls-cert", missing, "no such file"}},
		{"missing key", []string{"--tls-cert", f.cert, "--tls-key", missing}, []string{"--tls-key", missing, "no such file"}},
		{"garbage certificate", []string{"--tls-cert", garbage, "--tls-key", f.key}, []string{"--tls-cert", garbage}},
		{"empty certificate", []string{"--tls-cert", empty, "--tls-key", f.key}, []string{"--tls-cert", empty}},
		{"key of another certificate", []string{"--tls-cert", f.cert, "--tls-key", otherKey}, []string{"--tls-key", "does not match"}},
		{"key file as certificate", []string{"--tls-cert", f.key, "--tls-key", f.key}, []string{"--tls-cert", f.key}},
		{"missing client CA", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", missing}, []string{"--tls-client-ca", "no such file"}},
		{"client CA without a certificate", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.key}, []string{"--tls-client-ca", f.key}},
		{"garbage client CA", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", garbage}, []string{"--tls-client-ca", garbage}},
	}
	exit2 := []struct {
		name string
		args []string
		want []string
	}{
		{"certificate without key", []string{"--tls-cert", f.cert}, []string{"--tls-cert", "--tls-key"}},
		{"key without certificate", []string{"--tls-key", f.key}, []string{"--tls-cert", "--tls-key"}},
		{"client CA alone", []string{"--tls-client-ca", f.ca}, []string{"--tls-client-ca", "--tls-cert"}},
		{"ALPN alone", []string{"--tls-alpn", alpn}, []string{"--tls-alpn", "--tls-cert"}},
		{"min version 1.1", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-min-version", "1.1"}, []string{"--tls-min-version", "1.2, 1.3"}},
		{"min version tls1.3", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-min-version", "tls1.3"}, []string{"--tls-min-version"}},
		{"min version empty", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-min-version="}, []string{"--tls-min-version"}},
		{"handshake timeout without unit", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-handshake-timeout", "5"}, []string{"--tls-handshake-timeout"}},
		{"ALPN with an empty name", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-alpn", "h2,,x"}, []string{"--tls-alpn", "none empty"}},
		{"ALPN with a space", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-alpn", "h2, x"}, []string{"--tls-alpn", "space"}},
		{"ALPN twice the same", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-alpn", "h2,h2"}, []string{"--tls-alpn", "twice"}},
		{"ALPN name too long", []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-alpn", strings.Repeat("x", 256)}, []string{"--tls-alpn", "255"}},
	}
	check := func(t *testing.T, args []string, code int, want []string) {
		r := runFrameloop(t, exitWait, append(append([]string{}, base...), args...)...)
		if r.code != code {
			t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, code, r.stderr)
		}
		requireOneLine(t, r)
		for _, w := range want {
			if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(w)) {
				t.Errorf("the line does not mention %q: %s", w, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "bind") {
			t.Errorf("the line is about the bind, not the TLS flags: %s", r.stderr)
		}
		t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range exit1 {
			t.Run("exit 1/"+tc.name, func(t *testing.T) {
				t.Parallel()
				check(t, tc.args, 1, tc.want)
			})
		}
		for _, tc := range exit2 {
			t.Run("exit 2/"+tc.name, func(t *testing.T) {
				t.Parallel()
				check(t, tc.args, 2, tc.want)
			})
		}
	})
}

// ---------------------------------------------------------------------------
// --tls-min-version 1.3.

func TestDaemonTLSMinVersion13(t *testing.T) {
	t.Parallel()
	p, f := writeTLSFiles(t)
	d := startTLSDaemon(t, f, "--tls-min-version", "1.3")

	r := sClient(t, d, f, testkit.Frame([]byte("old")), 0, "-tls1_2")
	t.Logf("openssl -tls1_2: exit %d: %s", r.code, lastLine(r.stderr))
	if r.code == 0 || len(r.stdout) > 0 {
		t.Errorf("openssl -tls1_2 against --tls-min-version 1.3: want a refusal:\n%v", r)
	}
	e := pyRefused(t, d, f, pyConfig{Version: "TLSv1_2"})
	t.Logf("python TLSv1_2: %s: %s", e.str("type"), e.str("message"))
	err := tlsRefusedErr(d, p.ClientConfig(tls.VersionTLS12))
	t.Logf("Go, TLS 1.2 only: %v", err)
	if err == nil {
		t.Errorf("a Go client limited to TLS 1.2 was served")
	}

	frame := testkit.Frame([]byte("new"))
	if r := sClient(t, d, f, frame, len(frame), "-tls1_3"); !bytes.Equal(r.stdout, frame) || r.summary("Protocol version") != "TLSv1.3" {
		t.Errorf("openssl -tls1_3 against --tls-min-version 1.3: want the echo over TLSv1.3:\n%v", r)
	}
	waitMetrics(t, d, merge(failures(map[string]float64{"handshake_failure": 3}), map[string]float64{
		"frameloop_tls_handshakes_total": 1,
	}))
}

// ---------------------------------------------------------------------------
// SIGHUP.

// replaceFiles puts cert's PEM files in place of certFile and keyFile,
// each by a rename, as a deployment tool would.
func replaceFiles(t *testing.T, cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	c, k := testkit.WriteFiles(t, cert)
	for _, mv := range [][2]string{{c, certFile}, {k, keyFile}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// peerCN is the common name of the certificate the server presented.
func peerCN(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].Subject.CommonName }

func TestDaemonTLSReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	p, f := writeTLSFiles(t)
	// The daemon's files: a copy it may be given new content in.
	certFile, keyFile := testkit.WriteFiles(t, p.NewServerCert("first"))
	f.cert, f.key = certFile, keyFile
	d := startTLSDaemon(t, f)
	if rec, ok := d.waitLog(0, msgIs("serving TLS")); !ok || !strings.Contains(rec["subject"], "CN=first") {
		t.Errorf("the start-up line %v does not name the certificate's subject", rec)
	}
	cfg := p.ClientConfig(0)
	old := dialTLS(t, d, cfg)
	testkit.Echo(t, old, []byte("with the first certificate"), ioWait)
	if cn := peerCN(old); cn != "first" {
		t.Fatalf("the server presented %q, want first", cn)
	}

	replaceFiles(t, p.NewServerCert("second"), certFile, keyFile)
	d.signal(syscall.SIGHUP)
	rec, ok := d.waitLog(ioWait, msgIs("certificate reloaded"))
	if !ok {
		t.Fatal("no \"certificate reloaded\" line after SIGHUP")
	}
	t.Logf("after SIGHUP: %s", rec)
	c := dialTLS(t, d, cfg)
	testkit.Echo(t, c, []byte("with the second certificate"), ioWait)
	if cn := peerCN(c); cn != "second" {
		t.Fatalf("a new connection after SIGHUP sees %q, want second", cn)
	}
	// The connection opened before the reload is untouched.
	testkit.Echo(t, old, []byte("still here"), ioWait)

	// A broken file: one warning, and the second certificate stays.
	if err := os.WriteFile(certFile, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	warn, ok := d.waitLog(ioWait, func(r logRecord) bool { return r["level"] == "WARN" })
	if !ok {
		t.Fatal("no warning after a SIGHUP with a broken certificate file")
	}
	t.Logf("after SIGHUP with a broken file: %s", warn)
	if n := d.countLogs(func(r logRecord) bool { return r["level"] == "WARN" }); n != 1 {
		t.Errorf("%d warning lines, want 1", n)
	}
	if !strings.Contains(warn["err"], certFile) {
		t.Errorf("the warning does not name the file: %v", warn)
	}
	c2 := dialTLS(t, d, cfg)
	testkit.Echo(t, c2, []byte("after the failed reload"), ioWait)
	if cn := peerCN(c2); cn != "second" {
		t.Fatalf("after a failed reload a new connection sees %q, want second", cn)
	}
	testkit.Echo(t, old, []byte("and still here"), ioWait)
	testkit.Echo(t, c, []byte("this one too"), ioWait)
	if d.hasExited() {
		t.Fatal("the daemon exited")
	}
	d.stop()
}

// ---------------------------------------------------------------------------
// Metrics.

func TestDaemonTLSMetrics(t *testing.T) {
	t.Parallel()
	p, f := writeTLSFiles(t)
	d := startTLSDaemon(t, f, "--tls-alpn", alpn)
	// Every reason is exported from the start, at 0.
	waitMetrics(t, d, merge(failures(nil), map[string]float64{
		"frameloop_tls_handshakes_total": 0, "frameloop_tls_handshakes_in_progress": 0,
		"frameloop_tls_handshake_duration_seconds_count": 0,
	}))

	// Known traffic: 3 TLS 1.3 and 2 TLS 1.2 handshakes, echoing.
	const ok13, ok12 = 3, 2
	for i := range ok13 + ok12 {
		v := uint16(tls.VersionTLS13)
		if i >= ok13 {
			v = tls.VersionTLS12
		}
		c := dialTLS(t, d, p.ClientConfig(v))
		testkit.Echo(t, c, []byte(fmt.Sprint("metrics ", i)), ioWait)
		c.Close()
	}
	// And one refused by the server: it offers only h2 for ALPN.
	h2 := p.ClientConfig(0)
	h2.NextProtos = []string{"h2"}
	if err := tlsRefusedErr(d, h2); err == nil {
		t.Fatal("a client offering only ALPN h2 was served")
	}

	m := waitMetrics(t, d, merge(failures(map[string]float64{"handshake_failure": 1}), map[string]float64{
		"frameloop_tls_handshakes_total":                   ok13 + ok12,
		"frameloop_tls_handshakes_in_progress":             0,
		"frameloop_tls_handshake_duration_seconds_count":   ok13 + ok12,
		`frameloop_connections_closed_total{reason="tls"}`: 1,
	}))
	// The histogram: cumulative buckets, +Inf equal to the count, a
	// positive sum below count × the slowest bucket that holds them.
	var les []float64
	buckets := map[float64]float64{}
	for name, v := range m {
		rest, ok := strings.CutPrefix(name, `frameloop_tls_handshake_duration_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			t.Fatalf("bucket %s: %v", name, err)
		}
		les = append(les, le)
		buckets[le] = v
	}
	sort.Float64s(les)
	if len(les) < 2 || !math.IsInf(les[len(les)-1], 1) {
		t.Fatalf("buckets %v: want several, the last +Inf", les)
	}
	for i := 1; i < len(les); i++ {
		if buckets[les[i]] < buckets[les[i-1]] {
			t.Errorf("bucket le=%v holds %v, less than le=%v's %v", les[i], buckets[les[i]], les[i-1], buckets[les[i-1]])
		}
	}
	if inf := buckets[math.Inf(1)]; inf != ok13+ok12 {
		t.Errorf("+Inf bucket %v, want %d", inf, ok13+ok12)
	}
	sum := m["frameloop_tls_handshake_duration_seconds_sum"]
	if sum <= 0 || sum > float64(ok13+ok12)*ioWait.Seconds() {
		t.Errorf("duration sum %vs for %d handshakes", sum, ok13+ok12)
	}
	t.Logf("%d handshakes, %v s in all; buckets %v", ok13+ok12, sum, buckets)
}

// ---------------------------------------------------------------------------
// Bad clients.

func TestDaemonTLSBadClients(t *testing.T) {
	t.Parallel()
	p, f := writeTLSFiles(t)
	const hsTimeout = 500 * time.Millisecond
	d := startTLSDaemon(t, f, "--tls-handshake-timeout", hsTimeout.String())
	bystander := dialTLS(t, d, p.ClientConfig(0))
	testkit.Echo(t, bystander, []byte("bystander"), ioWait)

	// A plaintext client on the TLS port: its frame is not echoed, the
	// connection is closed.
	plain := d.dial(t)
	frame := testkit.Frame([]byte("plaintext on a TLS port"))
	if err := testkit.WriteAll(plain, frame, ioWait); err != nil {
		t.Fatal(err)
	}
	got, err := testkit.ReadUntilClosed(plain, ioWait)
	t.Logf("plaintext client: read %d bytes %s, then %v", len(got), testkit.Preview(got), err)
	if !testkit.IsClosed(err) || bytes.Contains(got, frame) {
		t.Errorf("plaintext client: read %s then %v; want no echo and a close", testkit.Preview(got), err)
	}
	waitMetrics(t, d, map[string]float64{failedMetric("bad_record"): 1})

	// Stalled handshakes: one that sent a record header and stopped, one
	// that sent nothing. Both are closed at the timeout, counted from the
	// accept.
	for _, start := range [][]byte{{0x16, 0x03, 0x01, 0x02, 0x00}, nil} {
		c := d.dial(t)
		begun := time.Now()
		if len(start) > 0 {
			if err := testkit.WriteAll(c, start, ioWait); err != nil {
				t.Fatal(err)
			}
		}
		closedAt, err := testkit.WaitClosed(c, ioWait)
		if err != nil {
			t.Fatalf("a stalled handshake (%d bytes sent): %v", len(start), err)
		}
		took := closedAt.Sub(begun)
		t.Logf("stalled handshake after %d bytes: closed after %v", len(start), took.Round(time.Millisecond))
		// Loose at the top: the machine is shared.
		if took < hsTimeout-50*time.Millisecond || took > hsTimeout+2*time.Second {
			t.Errorf("a stalled handshake was closed after %v, want about %v", took, hsTimeout)
		}
	}
	waitMetrics(t, d, merge(failures(map[string]float64{"bad_record": 1, "timeout": 2}), map[string]float64{
		"frameloop_tls_handshakes_total":                   1,
		"frameloop_tls_handshakes_in_progress":             0,
		`frameloop_connections_closed_total{reason="tls"}`: 3,
	}))
	testkit.Echo(t, bystander, []byte("still served"), ioWait)
}

// netListen holds a loopback port for the test's duration and returns its
// address.
func netListen(t *testing.T) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), nil
}

// --idle-timeout closes a TLS connection with close_notify, as every
// close the server decides does: a strict client would otherwise read a
// truncation (OpenSSL "unexpected eof while reading", Python SSLEOFError).
func TestDaemonTLSCloseNotifyAtIdleTimeout(t *testing.T) {
	t.Parallel()
	_, f := writeTLSFiles(t)
	d := startTLSDaemon(t, f, "--idle-timeout", "1s")
	frame := testkit.Frame([]byte("then idle"))
	// -ign_eof: s_client reads on after stdin, until the daemon closes.
	r := sClient(t, d, f, frame, 0, "-tls1_3", "-ign_eof")
	if !bytes.Equal(r.stdout, frame) || r.code != 0 || strings.Contains(r.stderr, "unexpected eof") {
		t.Errorf("openssl, closed by the idle timeout: want the echo, then close_notify and exit 0:\n%v", r)
	}
	for _, version := range []string{"TLSv1_2", "TLSv1_3"} {
		stream, _ := writeStream(t, "stream", []byte("then idle"))
		wait, _ := writeStream(t, "wait") // nothing to send: only read until the end
		py := startPython(t, d, f, pyConfig{Version: version, Streams: []string{stream}, Drain: wait})
		py.expect("open")
		py.expect("echoed")
		py.expect("sent")
		py.stdin.Write([]byte("read\n"))
		if e := py.next(); e.str("event") != "eof" {
			t.Errorf("python %s, closed by the idle timeout: %v; want recv to return b'' (close_notify)", version, e)
		}
		py.exit()
	}
}

// A handshake the server refuses ends with the alert crypto/tls wrote
// (protocol_version, no_application_protocol, certificate_required,
// bad_certificate), so that the client can say why, not a bare EOF — also
// when the alert had already been moved into the connection's ciphertext
// buffer.
func TestDaemonTLSHandshakeFailureAlerts(t *testing.T) {
	t.Parallel()
	_, f := writeTLSFiles(t)
	d := startTLSDaemon(t, f, "--tls-min-version", "1.3", "--tls-alpn", alpn, "--tls-client-ca", f.ca)
	cases := []struct {
		name  string
		args  []string
		alert string
	}{
		{"TLS 1.2 against --tls-min-version 1.3", []string{"-tls1_2", "-cert", f.client, "-key", f.clikey}, "alert protocol version"},
		{"ALPN h2 against --tls-alpn x-frameloop", []string{"-alpn", "h2", "-cert", f.client, "-key", f.clikey}, "alert no application protocol"},
		{"no client certificate", []string{"-alpn", alpn}, "alert certificate required"},
		{"the self-signed client certificate", []string{"-alpn", alpn, "-cert", f.rogue, "-key", f.roguekey}, "alert"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lost := 0
			const runs = 5
			for range runs {
				r := sClient(t, d, f, testkit.Frame([]byte("refused")), 0, tc.args...)
				if !strings.Contains(r.stderr, tc.alert) {
					lost++
					t.Logf("no %q: %s", tc.alert, lastLine(r.stderr))
				}
			}
			if lost > 0 {
				t.Errorf("%d of %d refusals reached openssl without the alert", lost, runs)
			}
		})
	}
}

// SIGHUP to a daemon without TLS: nothing to reload, and it goes on
// serving (the signal's default action would stop it and drop every
// connection).
func TestDaemonSIGHUPWithoutTLSKeepsServing(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--addr", "127.0.0.1:0")
	c := d.dial(t)
	testkit.Echo(t, c, []byte("before"), ioWait)
	d.signal(syscall.SIGHUP)
	if _, ok := d.waitLog(ioWait, msgIs("SIGHUP: nothing to reload (no TLS)")); !ok {
		t.Fatal("no log line for the SIGHUP")
	}
	if d.hasExited() {
		t.Fatal("the daemon exited on SIGHUP")
	}
	testkit.Echo(t, c, []byte("after"), ioWait)
}
