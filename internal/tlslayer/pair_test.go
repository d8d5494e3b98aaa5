package tlslayer

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// memConn is a crypto/tls client's transport for in-memory tests. During
// the handshake the client's writes go straight into the Session (Feed);
// afterwards they are collected, for the test to hand to Decrypt. What the
// server sends is delivered to in, which the client's Read waits on.
type memConn struct {
	mu      sync.Mutex
	cond    sync.Cond
	in      []byte
	out     []byte
	forward func([]byte) error
	closed  bool
}

func newMemConn() *memConn {
	m := &memConn{}
	m.cond.L = &m.mu
	return m
}

func (m *memConn) Read(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.in) == 0 && !m.closed {
		m.cond.Wait()
	}
	if len(m.in) == 0 {
		return 0, net.ErrClosed
	}
	n := copy(p, m.in)
	m.in = m.in[n:]
	if len(m.in) == 0 {
		m.in = nil
	}
	return n, nil
}

func (m *memConn) Write(p []byte) (int, error) {
	m.mu.Lock()
	fwd := m.forward
	if fwd == nil {
		m.out = append(m.out, p...)
	}
	m.mu.Unlock()
	if fwd != nil {
		if err := fwd(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// deliver gives the client bytes from the server.
func (m *memConn) deliver(b []byte) {
	if len(b) == 0 {
		return
	}
	m.mu.Lock()
	m.in = append(m.in, b...)
	m.cond.Broadcast()
	m.mu.Unlock()
}

// take returns what the client wrote since the last take.
func (m *memConn) take() []byte {
	m.mu.Lock()
	b := m.out
	m.out = nil
	m.mu.Unlock()
	return b
}

func (m *memConn) Close() error {
	m.mu.Lock()
	m.closed = true
	m.cond.Broadcast()
	m.mu.Unlock()
	return nil
}

func (m *memConn) LocalAddr() net.Addr              { return noAddr{} }
func (m *memConn) RemoteAddr() net.Addr             { return noAddr{} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

// pair is a crypto/tls client and a Session wired together in memory.
type pair struct {
	client *tls.Conn
	mc     *memConn
	s      *Session
}

// newPair runs the handshake between a client with ccfg and a Session with
// scfg. It returns the two handshake errors; on success the pair is
// established and the client's writes are collected (see send).
func newPair(scfg, ccfg *tls.Config, opts Options) (*pair, error, error) {
	p := &pair{mc: newMemConn()}
	opts.Notify = func() { p.mc.deliver(p.s.TakeOutput(nil)) }
	p.s = NewServer(scfg, opts)
	p.mc.forward = func(b []byte) error {
		_, err := p.s.Feed(b)
		return err
	}
	p.client = tls.Client(p.mc, ccfg)

	cerrc := make(chan error, 1)
	go func() { cerrc <- p.client.Handshake() }()
	serr := p.s.Handshake(context.Background())
	p.mc.deliver(p.s.TakeOutput(nil)) // a final alert, if any
	if serr != nil {
		// The client may wait for a flight that will never come.
		p.mc.Close()
	}
	cerr := <-cerrc
	p.mc.mu.Lock()
	p.mc.forward = nil
	p.mc.mu.Unlock()
	return p, serr, cerr
}

func mustPair(tb testing.TB, scfg, ccfg *tls.Config) *pair {
	tb.Helper()
	p, serr, cerr := newPair(scfg, ccfg, Options{})
	if serr != nil || cerr != nil {
		tb.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	return p
}

// send has the client encrypt msg and returns the ciphertext.
func (p *pair) send(tb testing.TB, msg []byte) []byte {
	tb.Helper()
	if _, err := p.client.Write(msg); err != nil {
		tb.Fatal(err)
	}
	return p.mc.take()
}

// echo runs one message through: client → Decrypt → Encrypt → client.
func (p *pair) echo(tb testing.TB, msg []byte) {
	tb.Helper()
	ct := p.send(tb, msg)
	plain := make([]byte, len(msg)+1)
	got := 0
	for got < len(msg) {
		n, more, err := p.s.Decrypt(ct, plain[got:])
		ct = nil
		if err != nil {
			tb.Fatalf("Decrypt: %v", err)
		}
		got += n
		if n == 0 && !more {
			break
		}
	}
	if got != len(msg) {
		tb.Fatalf("decrypted %d bytes, want %d", got, len(msg))
	}
	out, err := p.s.Encrypt(nil, plain[:got])
	if err != nil {
		tb.Fatalf("Encrypt: %v", err)
	}
	p.mc.deliver(out)
	back := make([]byte, len(msg))
	for n := 0; n < len(back); {
		m, err := p.client.Read(back[n:])
		if err != nil {
			tb.Fatalf("client Read: %v", err)
		}
		n += m
	}
	if string(back) != string(msg) {
		tb.Fatalf("echo mismatch")
	}
}

// records has the client of an established pair produce n records of
// size bytes each, one per Write, and returns them separately: a record
// can be decrypted once only (its sequence number).
func records(tb testing.TB, pr *pair, n, size int) [][]byte {
	tb.Helper()
	msg := make([]byte, size)
	out := make([][]byte, n)
	for i := range out {
		out[i] = pr.send(tb, msg)
	}
	return out
}
