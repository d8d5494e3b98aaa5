package tlslayer

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// DefaultHandshakeTimeout applies when Options.HandshakeTimeout is 0.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxBufferedInput applies when Options.MaxBufferedInput is 0.
	DefaultMaxBufferedInput = 32 << 10
)

// Options tune a Session. The zero value is usable.
type Options struct {
	// HandshakeTimeout bounds Handshake on top of its context. 0 means
	// DefaultHandshakeTimeout; negative means only the context bounds it.
	HandshakeTimeout time.Duration

	// MaxBufferedInput bounds the ciphertext the session holds that
	// crypto/tls has not pulled yet: what Feed copies during the handshake
	// (a client may pipeline data right behind its Finished, and the loop
	// learns of the handshake's end only later) and what a Decrypt call
	// could not consume because plain was full. Feed asks the loop to pause
	// reading at this much; the session then holds at most this plus one
	// read. 0 means DefaultMaxBufferedInput.
	//
	// crypto/tls holds more on its own, bounded by itself: the record being
	// assembled (at most 5+16384+2048 bytes, checked on the header before
	// the body is read, conn.go:672) in a bytes.Buffer that may grow to about
	// twice that, and one handshake message (64 KiB, a Certificate 256 KiB).
	MaxBufferedInput int

	// Notify, if set, is called on the handshake goroutine when handshake
	// output becomes available (TakeOutput goes from empty to non-empty),
	// and when a loop that Feed asked to pause may read again.
	// It runs while crypto/tls holds its locks: it must not block and must
	// not call into the Session other than TakeOutput and PendingOutput;
	// it should only wake the loop. It is dropped when Handshake returns.
	Notify func()

	// LocalAddr and RemoteAddr are what crypto/tls sees as the connection's
	// addresses (ClientHelloInfo.Conn in GetConfigForClient and friends).
	LocalAddr, RemoteAddr net.Addr
}

const (
	stateNew uint32 = iota
	stateHandshaking
	stateEstablished
	stateFailed
	stateClosed
)

// Session is the TLS record layer of one server connection: a crypto/tls
// server Conn over an in-memory transport.
//
// Two phases. During the handshake, Handshake runs on a goroutine of its
// own and blocks waiting for input; the loop gives it input with Feed
// (and FeedEOF) and takes its output with TakeOutput, from any goroutine.
// Once Handshake has returned nil, the session is driven from one goroutine
// only (the loop), and no call blocks: Decrypt, Encrypt, CloseNotify,
// TakeOutput, State, Release. Close may be called from any goroutine at
// any time.
type Session struct {
	sh      shim
	tc      *tls.Conn
	state   atomic.Uint32
	userEnd atomic.Bool // Close was called
	timeout time.Duration
	done    chan struct{} // closed when Handshake returns (or Close before it started)
	hsErr   error         // set before state leaves stateHandshaking
	// hsCancel cancels the running handshake's context; guarded by sh.mu.
	hsCancel context.CancelFunc
	rerr     error // loop-only: sticky read error
	werr     error // loop-only: sticky write error
	held     bool  // loop-only: the last Decrypt filled plain; crypto/tls may hold plaintext
}

// NewServer returns a server Session for cfg. cfg must not be modified
// afterwards (as for tls.Server). Sharing one *tls.Config between sessions
// shares its session-ticket keys, so resumption works across connections.
func NewServer(cfg *tls.Config, opts Options) *Session {
	s := newSession(opts)
	s.tc = tls.Server(&s.sh, cfg)
	return s
}

// NewClient returns a client Session for cfg, driven the same way: a load
// generator on raw sockets uses it to speak TLS without a goroutine per
// connection once the handshake is done.
func NewClient(cfg *tls.Config, opts Options) *Session {
	s := newSession(opts)
	s.tc = tls.Client(&s.sh, cfg)
	return s
}

func newSession(opts Options) *Session {
	s := &Session{timeout: opts.HandshakeTimeout, done: make(chan struct{})}
	if s.timeout == 0 {
		s.timeout = DefaultHandshakeTimeout
	}
	sh := &s.sh
	sh.cond.L = &sh.mu
	sh.blocking = true
	sh.maxIn = opts.MaxBufferedInput
	if sh.maxIn <= 0 {
		sh.maxIn = DefaultMaxBufferedInput
	}
	sh.notify = opts.Notify
	sh.local, sh.remote = opts.LocalAddr, opts.RemoteAddr
	if sh.local == nil {
		sh.local = noAddr{}
	}
	if sh.remote == nil {
		sh.remote = noAddr{}
	}
	return s
}

// Feed gives the session ciphertext read from the socket; it copies b.
// Any goroutine, either phase (after the handshake, Decrypt(nil, plain)
// reads what was fed).
//
// pause reports that the session now holds MaxBufferedInput bytes or more
// that crypto/tls has not pulled: the loop must stop reading the socket
// (TCP flow control then holds the peer back) until InputPaused reports
// false: during the handshake Notify is called when crypto/tls has drained
// half; once Handshake has returned, Decrypt drains it. So the session
// holds at most MaxBufferedInput plus one read. A loop that feeds while paused gets
// ReasonOverflow (nothing kept; close the connection). After Close Feed
// fails with ReasonClosed.
func (s *Session) Feed(b []byte) (pause bool, err error) {
	sh := &s.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return false, &Error{Reason: ReasonClosed, Op: "feed", Err: ErrClosed}
	}
	if !sh.appendInLocked(b) {
		return true, &Error{Reason: ReasonOverflow, Op: "feed", Err: ErrOverflow}
	}
	if len(b) > 0 {
		sh.cond.Signal()
	}
	if sh.pendingLocked() >= sh.maxIn {
		sh.paused = true
	}
	return sh.paused, nil
}

// InputPaused reports whether the loop should keep from reading the
// socket: Feed returned pause and crypto/tls has not drained the buffered
// input to half the bound yet.
func (s *Session) InputPaused() bool {
	sh := &s.sh
	sh.mu.Lock()
	p := sh.paused
	sh.mu.Unlock()
	return p
}

// FeedEOF tells the session the peer closed its side of the TCP
// connection. Once the buffered ciphertext is consumed, crypto/tls sees EOF:
// a running handshake fails with ReasonEOF, and Decrypt reports ReasonEOF
// (without close_notify; crypto/tls accepts that only at a record boundary,
// conn.go:630, otherwise it is io.ErrUnexpectedEOF).
func (s *Session) FeedEOF() {
	sh := &s.sh
	sh.mu.Lock()
	sh.eof = true
	sh.cond.Broadcast()
	sh.mu.Unlock()
}

// Handshake runs the server handshake. It blocks until the handshake
// succeeds or fails, the context ends, Options.HandshakeTimeout passes, or
// Close is called, and returns nil or an *Error. It must be called once, on
// a goroutine of its own; Done is closed when it returns. After a nil
// return the loop must call Decrypt(nil, plain) once without waiting for the
// socket: data the client sent right behind its Finished may already be
// buffered inside the session.
func (s *Session) Handshake(ctx context.Context) error {
	if !s.state.CompareAndSwap(stateNew, stateHandshaking) {
		if s.state.Load() == stateClosed {
			return &Error{Reason: ReasonClosed, Op: "handshake", Err: ErrClosed}
		}
		return &Error{Reason: ReasonOther, Op: "handshake", Detail: "Handshake called twice"}
	}
	defer close(s.done)
	var cancel context.CancelFunc
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	// Close cancels ctx too: callbacks that honour ClientHelloInfo.Context
	// (GetConfigForClient, GetCertificate, ...) then return early.
	s.sh.mu.Lock()
	s.hsCancel = cancel
	closed := s.sh.closed
	s.sh.mu.Unlock()
	if closed {
		cancel()
	}
	// HandshakeContext closes the shim if ctx ends first (conn.go:1538),
	// which wakes a blocked Read, and then returns ctx.Err().
	err := s.tc.HandshakeContext(ctx)

	sh := &s.sh
	sh.mu.Lock()
	sh.notify = nil
	s.hsCancel = nil
	if err == nil && !sh.closed {
		sh.blocking = false
		sh.mu.Unlock()
		if s.state.CompareAndSwap(stateHandshaking, stateEstablished) {
			return nil
		}
		err = ErrClosed // Close won the race
	} else {
		sh.mu.Unlock()
	}

	e := &Error{Op: "handshake", Err: err}
	switch {
	case s.userEnd.Load():
		e.Reason, e.Detail = ReasonClosed, "session closed during the handshake"
	case ctx.Err() == context.DeadlineExceeded && classify(err, true) == ReasonTimeout:
		e.Reason, e.Detail = ReasonTimeout, "handshake did not complete in time"
	default:
		e.Reason = classify(err, true)
		if e.Reason == ReasonClosed {
			e.Detail = "handshake context canceled"
		}
		if e.Reason == ReasonEOF {
			e.Detail = "peer closed the connection during the handshake"
		}
	}
	s.hsErr = e
	s.state.CompareAndSwap(stateHandshaking, stateFailed)
	return e
}

// Done is closed when Handshake has returned, or when Close is called on a
// session whose handshake never started.
func (s *Session) Done() <-chan struct{} { return s.done }

// Established reports whether Handshake has succeeded (and Close has not
// been called).
func (s *Session) Established() bool { return s.state.Load() == stateEstablished }

// TakeOutput appends the pending ciphertext (handshake flights, alerts,
// KeyUpdate replies, close_notify) to dst, clears it, and returns dst. Any
// goroutine. Output that Encrypt and CloseNotify produce goes straight to
// their dst instead, after the pending output.
func (s *Session) TakeOutput(dst []byte) []byte {
	sh := &s.sh
	sh.mu.Lock()
	dst = append(dst, sh.out...)
	sh.out = sh.out[:0]
	sh.mu.Unlock()
	return dst
}

// PendingOutput returns how many bytes TakeOutput would return. The loop
// checks it after Decrypt, which may produce output (a KeyUpdate reply to
// the client, or an alert when it fails).
func (s *Session) PendingOutput() int {
	sh := &s.sh
	sh.mu.Lock()
	n := len(sh.out)
	sh.mu.Unlock()
	return n
}

// Buffered returns how many bytes of ciphertext the session holds that
// crypto/tls has not pulled yet (the part bounded by MaxBufferedInput).
func (s *Session) Buffered() int {
	sh := &s.sh
	sh.mu.Lock()
	n := sh.pendingLocked()
	sh.mu.Unlock()
	return n
}

func (s *Session) notEstablished(op string) error {
	switch s.state.Load() {
	case stateFailed:
		return s.hsErr
	case stateClosed:
		return &Error{Reason: ReasonClosed, Op: op, Err: ErrClosed}
	}
	return &Error{Reason: ReasonOther, Op: op, Err: ErrNotEstablished}
}

// Decrypt decrypts ciphertext (read from the socket; borrowed, not retained
// after the call) together with whatever the session already buffered, and
// writes plaintext into plain. Loop goroutine only, established phase only;
// it never blocks.
//
// It returns n bytes of plaintext in plain[:n], to be processed before err
// is looked at. more reports that plain was filled: there may be more
// plaintext or buffered ciphertext, and the loop must call Decrypt(nil,
// plain) again (before waiting for the socket) once it has consumed plain.
// Ciphertext that did not fit is copied into the session; a loop that
// calls Decrypt with new ciphertext while more is set and MaxBufferedInput
// is already held gets ReasonOverflow.
//
// err is nil when all input is consumed (any trailing partial record is
// kept). Otherwise it is an *Error and sticky. ReasonEOF (close_notify, or
// FeedEOF at a record boundary) ends only the read side: Encrypt and
// CloseNotify still work, as TLS 1.3 half-close allows. Any other error ends
// both sides; crypto/tls has then usually queued an alert, which
// TakeOutput returns for a best-effort flush before closing.
func (s *Session) Decrypt(ciphertext, plain []byte) (n int, more bool, err error) {
	if s.rerr != nil {
		return 0, false, s.rerr
	}
	if s.state.Load() != stateEstablished {
		return 0, false, s.notEstablished("decrypt")
	}
	sh := &s.sh
	sh.mu.Lock()
	sh.borrow = ciphertext
	sh.mu.Unlock()

	// crypto/tls can produce something only from plaintext it kept when
	// plain was filled last time (s.held), or from a new record header or
	// the rest of a record in the shim (the shim hands out one record at a
	// time, so crypto/tls holds no further ciphertext after a record), or
	// to report EOF.
	call := s.held
	for n < len(plain) {
		if !call {
			sh.mu.Lock()
			call = sh.eof || sh.closed || sh.progressLocked()
			sh.mu.Unlock()
			if !call {
				break
			}
		}
		call = false
		m, rerr := s.tc.Read(plain[n:])
		n += m
		if rerr != nil {
			if rerr != errWouldBlock {
				err = s.failRead(rerr)
			}
			break
		}
	}
	s.held = err == nil && n == len(plain)

	sh.mu.Lock()
	rest := sh.borrow
	sh.borrow = nil
	kept := sh.closed || sh.appendInLocked(rest)
	sh.mu.Unlock()
	if !kept && err == nil {
		err = s.fail(&Error{Reason: ReasonOverflow, Op: "decrypt", Err: ErrOverflow})
	}
	return n, s.held, err
}

// failRead records a read error from crypto/tls and returns it as an *Error.
func (s *Session) failRead(err error) error {
	if err == io.EOF {
		sh := &s.sh
		sh.mu.Lock()
		transport := sh.eofRead
		sh.mu.Unlock()
		e := &Error{Reason: ReasonEOF, Op: "decrypt", Err: err, Detail: "peer sent close_notify"}
		if transport {
			e.Detail = "peer closed the connection without close_notify"
		}
		s.rerr = e
		return e
	}
	e := &Error{Reason: classify(err, false), Op: "decrypt", Err: err}
	switch {
	case e.Reason == ReasonEOF:
		e.Detail = "peer closed the connection inside a record"
	case strings.Contains(err.Error(), "when waiting for *tls.helloRequestMsg"):
		// TLS 1.2: any handshake message after the handshake goes to
		// handleRenegotiation (conn.go:1259), which a server refuses with
		// unexpected_message unless it is a HelloRequest.
		e.Detail = "renegotiation refused"
	}
	return s.fail(e)
}

// fail makes e sticky for both directions.
func (s *Session) fail(e *Error) error {
	s.rerr = e
	if s.werr == nil {
		s.werr = e
	}
	return e
}

// Encrypt appends the pending output (as TakeOutput would) and then the
// TLS records carrying plaintext to dst, and returns dst. Loop goroutine
// only, established phase only; it never blocks and allocates only if dst
// must grow. crypto/tls splits plaintext into records of up to 16 KiB
// (smaller for the first ~128 KiB of a connection unless
// tls.Config.DynamicRecordSizingDisabled).
func (s *Session) Encrypt(dst, plaintext []byte) ([]byte, error) {
	if s.werr != nil {
		return dst, s.werr
	}
	if s.state.Load() != stateEstablished {
		return dst, s.notEstablished("encrypt")
	}
	dst = s.beginDirect(dst)
	_, err := s.tc.Write(plaintext)
	dst = s.endDirect()
	if err != nil {
		return dst, s.fail(&Error{Reason: classify(err, false), Op: "encrypt", Err: err})
	}
	return dst, nil
}

// beginDirect moves the pending output to dst and sends the shim's output
// there until endDirect, which returns it.
func (s *Session) beginDirect(dst []byte) []byte {
	sh := &s.sh
	sh.mu.Lock()
	dst = append(dst, sh.out...)
	sh.out = sh.out[:0]
	sh.w, sh.direct = dst, true
	sh.mu.Unlock()
	return dst
}

func (s *Session) endDirect() []byte {
	sh := &s.sh
	sh.mu.Lock()
	dst := sh.w
	sh.w, sh.direct = nil, false
	sh.mu.Unlock()
	return dst
}

// CloseNotify appends the pending output and a close_notify alert to dst
// and returns dst; later Encrypt calls fail with ErrWriteClosed. The loop
// sends it after the last reply, then shuts down the socket's write side
// (or closes it). Loop goroutine only, established phase only; it never
// blocks: crypto/tls's CloseWrite only writes one alert record to the shim
// (conn.go:1463-1485) and does the same in TLS 1.2 and 1.3. It does not
// wait for the peer's close_notify.
func (s *Session) CloseNotify(dst []byte) ([]byte, error) {
	if s.werr != nil {
		return dst, s.werr
	}
	if s.state.Load() != stateEstablished {
		return dst, s.notEstablished("close_notify")
	}
	dst = s.beginDirect(dst)
	err := s.tc.CloseWrite()
	dst = s.endDirect()
	if err != nil {
		return dst, s.fail(&Error{Reason: classify(err, false), Op: "close_notify", Err: err})
	}
	s.werr = &Error{Reason: ReasonClosed, Op: "encrypt", Err: ErrWriteClosed}
	return dst, nil
}

// State returns the connection state (version, cipher suite, ALPN protocol,
// peer certificates, resumption). Before the handshake has succeeded, and
// after Close, it returns the zero value: crypto/tls's ConnectionState takes the handshake
// mutex, which a running handshake holds, and would block.
func (s *Session) State() tls.ConnectionState {
	if s.state.Load() != stateEstablished {
		return tls.ConnectionState{}
	}
	return s.tc.ConnectionState()
}

// Release drops the session's own input and output buffers if they are
// empty, so that an idle session holds as little as crypto/tls allows. The
// buffers come back on demand. Loop goroutine only. It cannot shrink what
// crypto/tls holds (see the package documentation).
func (s *Session) Release() {
	sh := &s.sh
	sh.mu.Lock()
	if sh.pendingLocked() == 0 {
		sh.in, sh.inOff = nil, 0
	}
	if len(sh.out) == 0 {
		sh.out = nil
	}
	sh.mu.Unlock()
}

// Close ends the session at once, without close_notify: a running
// Handshake returns ReasonClosed promptly (a blocked read is woken and the
// handshake context, which callbacks see as ClientHelloInfo.Context, is
// canceled; a callback that ignores it delays the return), later
// calls fail with ReasonClosed, buffers are dropped. Any goroutine,
// idempotent. It does not wait for the handshake goroutine; Done does.
func (s *Session) Close() {
	s.userEnd.Store(true)
	for {
		st := s.state.Load()
		if st == stateClosed {
			break
		}
		if s.state.CompareAndSwap(st, stateClosed) {
			if st == stateNew {
				close(s.done)
			}
			break
		}
	}
	s.sh.Close()
	sh := &s.sh
	sh.mu.Lock()
	sh.out = nil
	cancel := s.hsCancel
	sh.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
