package frameloop_test

// docs/behaviour.md §11: TLS on the loop with crypto/tls. Handshakes with
// real clients (Go here; openssl and Python in cmd/frameloop), ALPN and
// client certificates, the negotiated state from OnOpen on, the behaviours
// of §1–§7 over TLS, bad input of every kind closing only its connection
// with a counted reason, and no goroutine left behind.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

var tlsVersions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// tlsServer starts h (echo when nil) over TLS with the test PKI.
func tlsServer(t *testing.T, h frameloop.Handler, cfg frameloop.Config, clientAuth bool) *testServer {
	t.Helper()
	cfg.TLS = testkit.TestPKI(t).ServerConfig(clientAuth)
	return startServer(t, h, cfg)
}

// dialTLS connects a crypto/tls client; it is closed when the test ends.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tlsDialErr(addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tlsDialErr(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: ioTimeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// tlsSeen records the TLS state OnOpen saw.
type tlsSeen struct {
	*recorder
	mu     sync.Mutex
	states []tls.ConnectionState
}

func (h *tlsSeen) OnOpen(c *frameloop.Conn) {
	h.recorder.OnOpen(c)
	st, ok := c.TLSConnectionState()
	if ok {
		h.mu.Lock()
		h.states = append(h.states, st)
		h.mu.Unlock()
	}
}

func TestTLSHandshakeStateFromOnOpen(t *testing.T) {
	pki := testkit.TestPKI(t)
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
				h := &tlsSeen{recorder: newRecorder(t)}
				ts := tlsServer(t, h, cfg, true)
				ccfg := pki.ClientConfig(v.v)
				ccfg.Certificates = []tls.Certificate{pki.Client}
				c := dialTLS(t, ts.addr, ccfg)
				testkit.Echo(t, c, []byte("hello over TLS"), ioTimeout)
				if cs := c.ConnectionState(); cs.Version != v.v || cs.NegotiatedProtocol != "x-frameloop" {
					t.Errorf("client sees version %x, ALPN %q", cs.Version, cs.NegotiatedProtocol)
				}
				h.mu.Lock()
				defer h.mu.Unlock()
				if len(h.states) != 1 {
					t.Fatalf("OnOpen saw %d TLS states, want 1", len(h.states))
				}
				st := h.states[0]
				if st.Version != v.v || st.NegotiatedProtocol != "x-frameloop" || st.CipherSuite == 0 {
					t.Errorf("OnOpen: version %x, ALPN %q, suite %x", st.Version, st.NegotiatedProtocol, st.CipherSuite)
				}
				if len(st.VerifiedChains) == 0 || st.PeerCertificates[0].Subject.CommonName != pki.ClientName {
					t.Errorf("OnOpen: the client certificate was not verified: %d chains", len(st.VerifiedChains))
				}
				ts.waitStats(t, ioTimeout, "one handshake", func(s frameloop.Stats) bool { return s.TLSHandshakes == 1 })
			})
		})
	}
}

// A client certificate nobody trusts, or none, is refused: the handshake
// fails with a counted reason, OnOpen never runs, others are served.
func TestTLSClientCertificateRefused(t *testing.T) {
	pki := testkit.TestPKI(t)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		h := &tlsSeen{recorder: newRecorder(t)}
		ts := tlsServer(t, h, cfg, true)
		for _, cert := range [][]tls.Certificate{{pki.Rogue}, nil} {
			ccfg := pki.ClientConfig(tls.VersionTLS13)
			ccfg.Certificates = cert
			c, err := tlsDialErr(ts.addr, ccfg)
			if err == nil {
				// TLS 1.3: the client learns of the refusal at its first read.
				c.SetDeadline(time.Now().Add(ioTimeout))
				testkit.WriteFrame(c, []byte("x"), ioTimeout)
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil {
				t.Fatalf("a client with %d untrusted certificates was served", len(cert))
			}
		}
		st := ts.waitStats(t, ioTimeout, "two failed handshakes", func(s frameloop.Stats) bool {
			return s.TLSHandshakeFailures["bad_certificate"] == 2
		})
		h.mu.Lock()
		opened := len(h.states)
		h.mu.Unlock()
		if st.TLSHandshakes != 0 || opened != 0 {
			t.Errorf("handshakes completed: %d, OnOpen calls: %d, want 0", st.TLSHandshakes, opened)
		}
		ccfg := pki.ClientConfig(0)
		ccfg.Certificates = []tls.Certificate{pki.Client}
		testkit.Echo(t, dialTLS(t, ts.addr, ccfg), []byte("trusted"), ioTimeout)
	})
}

// §1 over TLS: frames split anywhere, pipelined, large, and a 32 MiB
// stream pipelined without reading, then read back — the watermarks hold
// the memory down, as without TLS.
func TestTLSFramingAndBackpressure(t *testing.T) {
	pki := testkit.TestPKI(t)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = 4 << 20
		ts := tlsServer(t, nil, cfg, false)
		c := dialTLS(t, ts.addr, pki.ClientConfig(0))
		var payloads [][]byte
		for i, n := range []int{0, 1, 5, 1000, 20000, 70000, 3 << 20} {
			payloads = append(payloads, testkit.Pattern(n, uint64(i)))
		}
		if err := pipelineEcho(c, payloads, func(i int) int { return 1 + i*37%5000 }, 0); err != nil {
			t.Fatalf("split writes: %v", err)
		}
		const total = 32 << 20
		var stream []byte
		for i := 0; len(stream) < total; i++ {
			stream = testkit.AppendFrame(stream, testkit.Pattern(64<<10, uint64(i)))
		}
		werr := make(chan error, 1)
		go func() { werr <- testkit.WriteAll(c, stream, 6*ioTimeout) }()
		// Read nothing until the server has paused this client.
		ts.waitStats(t, 3*ioTimeout, "reading paused", func(s frameloop.Stats) bool { return s.ReadPauses > 0 })
		c.SetReadDeadline(time.Now().Add(6 * ioTimeout))
		got := make([]byte, len(stream))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the 32 MiB back: %v", err)
		}
		if !bytes.Equal(got, stream) {
			t.Fatal("the 32 MiB came back different")
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	})
}

// §3.3, §3.2, §3.4 over TLS: an oversized frame closes after the replies
// before it; a silent connection closes at its idle timeout; one that
// never reads is closed by the write timeout.
func TestTLSLimits(t *testing.T) {
	pki := testkit.TestPKI(t)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = 100 << 10
		cfg.IdleTimeout = 500 * time.Millisecond
		// Long enough for a client encrypting megabytes to see its writes
		// stall before the server gives up on it.
		cfg.WriteTimeout = 2 * time.Second
		rec := newRecorder(t)
		ts := tlsServer(t, rec, cfg, false)

		c := dialTLS(t, ts.addr, pki.ClientConfig(0))
		testkit.WriteAll(c, append(testkit.Frame([]byte("before")), testkit.Header(200<<10)...), ioTimeout)
		testkit.ExpectFrame(t, c, []byte("before"), ioTimeout)
		if got, err := testkit.ReadUntilClosed(c, ioTimeout); len(got) > 0 || !errors.Is(err, io.EOF) {
			t.Errorf("after an oversized frame: %d bytes, %v; want the end of the stream", len(got), err)
		}

		idle := dialTLS(t, ts.addr, pki.ClientConfig(0))
		testkit.Echo(t, idle, []byte("then nothing"), ioTimeout)
		start := time.Now()
		if _, err := testkit.ReadUntilClosed(idle, ioTimeout); !errors.Is(err, io.EOF) {
			t.Errorf("idle: %v, want the end of the stream (close_notify)", err)
		}
		within(t, "the idle TLS connection closed", time.Since(start), 400*time.Millisecond, 500*time.Millisecond+late)

		slow := dialTLS(t, ts.addr, pki.ClientConfig(0))
		testkit.Echo(t, slow, []byte("x"), ioTimeout)
		stallNonReader(t, slow, rec.openFor(t, slow, ioTimeout))
		if ev := rec.closeFor(t, slow, 3*ioTimeout); frameloop.ReasonOf(ev.err) != frameloop.ReasonWriteTimeout {
			t.Errorf("a TLS client that never reads: OnClose got %v, want a write timeout", ev.err)
		}
	})
}

// §5 and §7 over TLS: a client that sends close_notify (CloseWrite) gets
// every reply; a shutdown delivers every reply, then close_notify.
func TestTLSHalfCloseAndShutdown(t *testing.T) {
	pki := testkit.TestPKI(t)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := tlsServer(t, nil, cfg, false)
		c := dialTLS(t, ts.addr, pki.ClientConfig(tls.VersionTLS13))
		var stream []byte
		for i := range 100 {
			stream = testkit.AppendFrame(stream, testkit.Pattern(1000, uint64(i)))
		}
		testkit.WriteAll(c, stream, ioTimeout)
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := testkit.ReadUntilClosed(c, ioTimeout)
		if !bytes.Equal(got, stream) || !errors.Is(err, io.EOF) {
			t.Fatalf("after close_notify: %d of %d bytes back, then %v", len(got), len(stream), err)
		}

		d := dialTLS(t, ts.addr, pki.ClientConfig(0))
		var big []byte
		for i := range 64 {
			big = testkit.AppendFrame(big, testkit.Pattern(48<<10, uint64(i)))
		}
		testkit.WriteAll(d, big, ioTimeout)
		done := shutdownAsync(ts, 3*ioTimeout)
		got, err = testkit.ReadUntilClosed(d, 3*ioTimeout)
		if !bytes.Equal(got, big) || !errors.Is(err, io.EOF) {
			t.Fatalf("shutdown: %d of %d bytes back, then %v; want all, then close_notify", len(got), len(big), err)
		}
		if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v", r.err)
		}
	})
}

// Bad input on a TLS port: each closes its connection with a counted
// reason, while a bystander keeps being served.
func TestTLSBadInput(t *testing.T) {
	pki := testkit.TestPKI(t)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.TLSHandshakeTimeout = 500 * time.Millisecond
		ts := tlsServer(t, nil, cfg, false)
		by := dialTLS(t, ts.addr, pki.ClientConfig(0))
		stopBy := make(chan struct{})
		byErr := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stopBy:
					byErr <- nil
					return
				default:
				}
				if err := testkit.EchoErr(by, testkit.Pattern(i%3000, uint64(i)), ioTimeout); err != nil {
					byErr <- err
					return
				}
			}
		}()

		// A plaintext client on the TLS port.
		plain := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.WriteFrame(plain, []byte("not TLS"), ioTimeout)
		testkit.WaitClosed(plain, ioTimeout)
		// Garbage records after a handshake.
		g := dialTLS(t, ts.addr, pki.ClientConfig(tls.VersionTLS13))
		testkit.Echo(t, g, []byte("fine so far"), ioTimeout)
		raw := g.NetConn()
		raw.Write([]byte{0x17, 0x03, 0x03, 0x00, 0x20})
		raw.Write(bytes.Repeat([]byte{0xAA}, 0x20))
		testkit.WaitClosed(raw, ioTimeout)
		// A truncated ClientHello, then EOF.
		tr := testkit.DialTCP(t, ts.addr, ioTimeout)
		tr.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
		tr.CloseWrite()
		testkit.WaitClosed(tr, ioTimeout)
		// A client that stalls mid-handshake: closed on time.
		stall := testkit.DialTCP(t, ts.addr, ioTimeout)
		stall.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
		start := time.Now()
		testkit.WaitClosed(stall, ioTimeout)
		within(t, "the stalled handshake closed", time.Since(start), 300*time.Millisecond, 500*time.Millisecond+late)

		close(stopBy)
		if err := <-byErr; err != nil {
			t.Errorf("the bystander: %v", err)
		}
		st := ts.waitStats(t, ioTimeout, "four bad clients closed", func(s frameloop.Stats) bool {
			return s.ClosedBy(frameloop.ReasonTLS) == 4
		})
		f := st.TLSHandshakeFailures
		if f["bad_record"] != 1 || f["eof"] != 1 || f["timeout"] != 1 {
			t.Errorf("handshake failures %v, want one each of bad_record, eof, timeout", f)
		}
	})
}

// 1,000 handshakes at once: all complete; never more than MaxHandshakes
// run at a time; no goroutine remains once they are done.
func TestTLSThousandHandshakesAtOnce(t *testing.T) {
	const clients = 1000
	pki := testkit.TestPKI(t)
	cfg := frameloop.Config{Addr: "127.0.0.1:0", Loops: 2, MaxHandshakes: 16, MaxConns: clients + 10}
	ts := tlsServer(t, nil, cfg, false)
	var most int
	stop := make(chan struct{})
	watched := make(chan int)
	go func() {
		m := 0
		for {
			select {
			case <-stop:
				watched <- m
				return
			case <-time.After(time.Millisecond):
				m = max(m, ts.stats().TLSHandshaking)
			}
		}
	}()
	conns := make([]*tls.Conn, clients)
	err := runGoroutines(clients, func(i int) error {
		c, err := tlsDialErr(ts.addr, pki.ClientConfig(0))
		if err != nil {
			return err
		}
		conns[i] = c
		return testkit.EchoErr(c, []byte(fmt.Sprint(i)), 3*ioTimeout)
	})
	close(stop)
	most = <-watched
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if most > 16 {
		t.Errorf("%d handshakes ran at once, the bound is 16", most)
	}
	st := ts.waitStats(t, ioTimeout, "1000 handshakes", func(s frameloop.Stats) bool { return s.TLSHandshakes == clients })
	if st.TLSHandshaking != 0 {
		t.Errorf("%d handshakes still running", st.TLSHandshaking)
	}
	t.Logf("at most %d handshakes at once; %d goroutines now", most, runtime.NumGoroutine())
	_ = context.Background
}

// Every handshake that starts ends counted: completed, or failed for a
// reason — a client that resets in the middle of one included (eof).
func TestTLSEveryHandshakeIsCounted(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := tlsServer(t, nil, cfg, false)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // the start of a ClientHello
		time.Sleep(50 * time.Millisecond)
		resetClose(c)
		ts.waitStats(t, ioTimeout, "the reset handshake counted", func(s frameloop.Stats) bool {
			return s.TLSHandshakeFailures["eof"] == 1 && s.Connections == 0
		})
	})
}
