package tlslayer

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// loopServer is a TLS echo server over real loopback sockets, driven the
// way frameloop's event loop will drive a Session:
//
//   - per connection, one "loop" goroutine makes every Session call except
//     Handshake, and is the only writer of the socket;
//   - the handshake runs on its own goroutine and reports through Notify and
//     its return;
//   - a pump goroutine stands in for epoll: it reads the socket into one
//     read buffer, hands it to the loop and waits until the loop is done
//     with it before reading again. The buffer is then overwritten, so a
//     session that kept a reference to it would fail the byte-exact checks.
type loopServer struct {
	tb   testing.TB
	ln   net.Listener
	cfg  *tls.Config
	opts Options
	// closeAfter > 0: after echoing that many bytes, send close_notify and
	// close (a graceful server-initiated close).
	closeAfter int

	results chan connResult
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
}

// connResult is how a connection ended.
type connResult struct {
	err         error               // nil after a close this server initiated
	state       tls.ConnectionState // after the handshake, if it succeeded
	echoed      int                 // plaintext bytes echoed
	postHSBytes int                 // output produced by Decrypt (KeyUpdate replies, alerts)
	maxBuffered int                 // most ciphertext the session held (Buffered) after a Feed
	pauses      int                 // times Feed asked the loop to stop reading
}

func startLoopServer(tb testing.TB, cfg *tls.Config, opts Options, closeAfter int) *loopServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ts := &loopServer{tb: tb, ln: ln, cfg: cfg, opts: opts, closeAfter: closeAfter,
		results: make(chan connResult, 1024), conns: map[net.Conn]struct{}{}}
	ts.wg.Add(1)
	go ts.accept()
	tb.Cleanup(ts.Close)
	return ts
}

func (ts *loopServer) addr() string { return ts.ln.Addr().String() }

// Close stops accepting, closes every connection and waits for every
// goroutine the server started (handshakes included).
func (ts *loopServer) Close() {
	ts.mu.Lock()
	ts.closed = true
	for c := range ts.conns {
		c.Close()
	}
	ts.mu.Unlock()
	ts.ln.Close()
	ts.wg.Wait()
}

// result waits for the next connection to end.
func (ts *loopServer) result(tb testing.TB) connResult {
	tb.Helper()
	select {
	case r := <-ts.results:
		return r
	case <-time.After(20 * time.Second):
		tb.Fatal("no connection result")
		return connResult{}
	}
}

func (ts *loopServer) accept() {
	defer ts.wg.Done()
	for {
		c, err := ts.ln.Accept()
		if err != nil {
			return
		}
		ts.mu.Lock()
		if ts.closed {
			ts.mu.Unlock()
			c.Close()
			return
		}
		ts.conns[c] = struct{}{}
		ts.wg.Add(1)
		ts.mu.Unlock()
		go ts.serve(c)
	}
}

type readEvent struct {
	b   []byte
	err error
}

func (ts *loopServer) serve(c net.Conn) {
	defer ts.wg.Done()
	quit := make(chan struct{})
	wake := make(chan struct{}, 1)
	opts := ts.opts
	opts.Notify = func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	opts.LocalAddr, opts.RemoteAddr = c.LocalAddr(), c.RemoteAddr()
	s := NewServer(ts.cfg, opts)

	hsDone := make(chan error, 1)
	ts.wg.Add(2)
	go func() {
		defer ts.wg.Done()
		hsDone <- s.Handshake(context.Background())
	}()

	// The pump: epoll's stand-in, with one shared read buffer.
	reads := make(chan readEvent)
	ack := make(chan struct{})
	go func() {
		defer ts.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			select {
			case reads <- readEvent{buf[:n], err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
			select {
			case <-ack:
			case <-quit:
				return
			}
			clear(buf[:n])
			for i := range buf[:n] {
				buf[i] = 0xA5
			}
		}
	}()

	res := connResult{}
	finish := func(err error) {
		s.Close()
		c.Close()
		close(quit)
		// No waiting for s.Done() here: a loop must not block on the
		// handshake goroutine. ts.wg counts it; Close waits for it.
		res.err = err
		ts.mu.Lock()
		delete(ts.conns, c)
		ts.mu.Unlock()
		select {
		case ts.results <- res:
		default:
		}
	}
	var out []byte
	write := func(b []byte) bool {
		if len(b) == 0 {
			return true
		}
		_, err := c.Write(b)
		return err == nil
	}
	plain := make([]byte, 32<<10)

	// process decrypts and echoes until the session has nothing left; it
	// returns false when the connection is finished.
	process := func(ct []byte) bool {
		for {
			n, more, err := s.Decrypt(ct, plain)
			ct = nil
			if n > 0 {
				var eerr error
				out, eerr = s.Encrypt(out[:0], plain[:n])
				if eerr != nil || !write(out) {
					finish(eerr)
					return false
				}
				res.echoed += n
			}
			if s.PendingOutput() > 0 {
				out = s.TakeOutput(out[:0])
				res.postHSBytes += len(out)
				write(out)
			}
			if err != nil {
				if ReasonOf(err) == ReasonEOF {
					// The peer is done sending: answer with our
					// close_notify (what a graceful loop does once the
					// replies are out).
					out, _ = s.CloseNotify(out[:0])
					write(out)
				}
				finish(err)
				return false
			}
			if ts.closeAfter > 0 && res.echoed >= ts.closeAfter {
				out, _ = s.CloseNotify(out[:0])
				write(out)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				// Give the peer a moment to read before the close.
				time.Sleep(50 * time.Millisecond)
				finish(nil)
				return false
			}
			if !more {
				return true
			}
		}
	}

	established := false
	paused := false // not reading the socket: the pump waits for its ack
	resume := func() {
		if paused && !s.InputPaused() {
			paused = false
			ack <- struct{}{}
		}
	}
	for {
		select {
		case <-wake:
			out = s.TakeOutput(out[:0])
			write(out)
			resume()
		case err := <-hsDone:
			out = s.TakeOutput(out[:0])
			write(out) // the last flight, or an alert
			if err != nil {
				finish(err)
				return
			}
			established = true
			res.state = s.State()
			// Data pipelined behind the client's Finished may already be
			// inside the session.
			if !process(nil) {
				return
			}
			resume()
		case ev := <-reads:
			if !established {
				if len(ev.b) > 0 {
					pause, err := s.Feed(ev.b)
					if err != nil {
						finish(err)
						return
					}
					res.maxBuffered = max(res.maxBuffered, s.Buffered())
					if pause {
						res.pauses++
						paused = true
					}
				}
				if ev.err != nil {
					s.FeedEOF() // the pump is gone; the handshake will fail
					continue
				}
				if !paused {
					ack <- struct{}{}
				}
				continue
			}
			if !process(ev.b) {
				return
			}
			if ev.err != nil {
				s.FeedEOF()
				if process(nil) {
					finish(ev.err) // not reached: Decrypt reports the EOF
				}
				return
			}
			ack <- struct{}{}
		}
	}
}
