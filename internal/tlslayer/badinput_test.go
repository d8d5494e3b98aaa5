package tlslayer

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// captureClientHello returns the first record a crypto/tls client sends.
func captureClientHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c1, cfg).Handshake()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		tb.Fatal(err)
	}
	c2.Close()
	c1.Close()
	<-done
	return append(hdr, body...)
}

func rawDial(tb testing.TB, addr string) *net.TCPConn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// expectClosed reads until the server closes, returning what it sent.
func expectClosed(tb testing.TB, c net.Conn) []byte {
	tb.Helper()
	b, _ := io.ReadAll(c) // EOF or a reset, either is a close
	return b
}

func TestPlaintextGarbage(t *testing.T) {
	p := getPKI(t)
	ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
	c := rawDial(t, ts.addr())
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	expectClosed(t, c)
	r := ts.result(t)
	wantReason(t, r.err, ReasonBadRecord)
	if !strings.Contains(r.err.Error(), "does not look like a TLS handshake") {
		t.Fatalf("%v", r.err)
	}
	t.Logf("server: %v", r.err)
}

func TestTruncatedClientHello(t *testing.T) {
	p := getPKI(t)
	hello := captureClientHello(t, p.ClientConfig(tls.VersionTLS13))
	ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
	c := rawDial(t, ts.addr())
	defer c.Close()
	c.Write(hello[:len(hello)/2])
	c.CloseWrite()
	expectClosed(t, c)
	r := ts.result(t)
	wantReason(t, r.err, ReasonEOF)
	t.Logf("server (ClientHello of %d bytes cut at %d): %v", len(hello), len(hello)/2, r.err)
}

// A client that stops mid-handshake: the handshake timeout ends it, and
// the handshake goroutine is gone.
func TestStalledHandshake(t *testing.T) {
	p := getPKI(t)
	hello := captureClientHello(t, p.ClientConfig(tls.VersionTLS13))
	ts := startLoopServer(t, p.ServerConfig(false), Options{HandshakeTimeout: 300 * time.Millisecond}, 0)
	c := rawDial(t, ts.addr())
	defer c.Close()
	start := time.Now()
	c.Write(hello[:len(hello)/2])
	expectClosed(t, c)
	r := ts.result(t)
	took := time.Since(start)
	wantReason(t, r.err, ReasonTimeout)
	if took < 250*time.Millisecond || took > 5*time.Second {
		t.Fatalf("ended after %v", took)
	}
	t.Logf("server after %v: %v", took.Round(time.Millisecond), r.err)
	ts.Close()
	goleak.VerifyNone(t)
}

// A client that stops after a complete ClientHello (the server has sent
// its flight and waits for the client's).
func TestStalledAfterClientHello(t *testing.T) {
	p := getPKI(t)
	hello := captureClientHello(t, p.ClientConfig(tls.VersionTLS12))
	ts := startLoopServer(t, p.ServerConfig(false), Options{HandshakeTimeout: 300 * time.Millisecond}, 0)
	c := rawDial(t, ts.addr())
	defer c.Close()
	c.Write(hello)
	if got := expectClosed(t, c); len(got) == 0 {
		t.Fatal("the server sent no flight")
	}
	r := ts.result(t)
	wantReason(t, r.err, ReasonTimeout)
	ts.Close()
	goleak.VerifyNone(t)
}

// Records after the handshake that do not decrypt: bad_record, and the
// client is told (bad_record_mac alert).
func TestGarbageRecordsAfterHandshake(t *testing.T) {
	p := getPKI(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
			raw := rawDial(t, ts.addr())
			defer raw.Close()
			c := tls.Client(raw, p.ClientConfig(v.v))
			roundTrip(t, c, "before the garbage")
			garbage := append([]byte{0x17, 0x03, 0x03, 0x00, 0x40}, []byte(strings.Repeat("garbage!", 8))...)
			raw.Write(garbage)
			_, err := c.Read(make([]byte, 10))
			if err == nil || !strings.Contains(err.Error(), "bad record MAC") {
				t.Fatalf("client: %v", err)
			}
			r := ts.result(t)
			wantReason(t, r.err, ReasonBadRecord)
			t.Logf("server: %v", r.err)
		})
	}
}

// A record header announcing more than a record may hold, followed by a
// flood: refused on the header alone, nothing buffered for the body.
func TestOversizedRecordOverTCP(t *testing.T) {
	p := getPKI(t)
	flood := make([]byte, 1<<20)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
			raw := rawDial(t, ts.addr())
			defer raw.Close()
			c := tls.Client(raw, p.ClientConfig(v.v))
			roundTrip(t, c, "before the oversized header")
			raw.Write([]byte{0x17, 0x03, 0x03, 0xff, 0xff})
			go raw.Write(flood) // fails once the server has closed
			r := ts.result(t)
			wantReason(t, r.err, ReasonBadRecord)
			if !strings.Contains(r.err.Error(), "oversized record received with length 65535") {
				t.Fatalf("%v", r.err)
			}
			raw.Close()
		})
	}
	t.Run("first record", func(t *testing.T) {
		ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
		raw := rawDial(t, ts.addr())
		defer raw.Close()
		raw.Write([]byte{0x16, 0x03, 0x01, 0x48, 0x01})
		go raw.Write(flood)
		r := ts.result(t)
		wantReason(t, r.err, ReasonBadRecord)
		t.Logf("server: %v", r.err)
		raw.Close()
	})
}

// A client that floods ciphertext while the handshake goroutine is busy
// (here: a slow certificate lookup that honours the handshake context).
// Feed asks the loop to stop reading at MaxBufferedInput; TCP flow control
// holds the client back; the handshake timeout ends it. The session never
// held more than the bound plus one read.
func TestHandshakeFlood(t *testing.T) {
	p := getPKI(t)
	cfg := p.ServerConfig(false)
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		<-hello.Context().Done()
		return nil, hello.Context().Err()
	}
	hello := captureClientHello(t, p.ClientConfig(tls.VersionTLS13))
	const bound, readSize = 32 << 10, 64 << 10
	ts := startLoopServer(t, cfg, Options{MaxBufferedInput: bound, HandshakeTimeout: 500 * time.Millisecond}, 0)
	raw := rawDial(t, ts.addr())
	defer raw.Close()
	raw.Write(hello)
	flooded := make(chan int, 1)
	go func() {
		raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, _ := raw.Write(make([]byte, 64<<20))
		flooded <- n
	}()
	r := ts.result(t)
	wantReason(t, r.err, ReasonTimeout)
	n := <-flooded
	t.Logf("server: %v", r.err)
	t.Logf("client wrote %d bytes of its 64 MiB flood; the session paused reading %d time(s) and held at most %d bytes", n, r.pauses, r.maxBuffered)
	if r.pauses == 0 || r.maxBuffered > bound+readSize {
		t.Fatalf("pauses %d, max buffered %d (bound %d + one read %d)", r.pauses, r.maxBuffered, bound, readSize)
	}
	raw.Close()
	ts.Close()
	goleak.VerifyNone(t)
}
