package frameloop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/frameloop/frameloop/internal/bufpool"
	"github.com/frameloop/frameloop/internal/sock"
	"github.com/frameloop/frameloop/internal/tlslayer"
	"golang.org/x/sys/unix"
)

// TLS on the loop, with the standard library's crypto/tls (Config.TLS).
//
// The record layer is internal/tlslayer: crypto/tls over an in-memory
// transport the loop feeds with ciphertext and empties of ciphertext. It
// sits between the socket and the framing, one seam in each direction:
//
//	read:  socket → ciphertext → Session.Decrypt → plaintext → the framing decoder → OnFrame
//	write: Write → plaintext frames in the output queue → Session.Encrypt → ciphertext → writev
//
// The handshake is the one part that runs on a goroutine (crypto/tls
// drives it with blocking reads and writes), one per connection in
// handshake and at most Config.MaxHandshakes at once; connections past
// that wait unread in the kernel, without a goroutine. The handshake is
// bounded by Config.TLSHandshakeTimeout from the accept, whether it runs
// or waits. Once established, nothing runs outside the loop: records are
// decrypted and encrypted on the loop's goroutine, and no goroutine
// remains.
//
// Writes stay plaintext in the output queue until the loop flushes: they
// are encrypted then, in order, in records as large as the queue allows,
// so replies to pipelined frames share records, and Conn.Write from any
// goroutine never touches crypto/tls. The ciphertext the socket does not
// take waits in one pooled buffer per connection; it counts in the
// connection's queued output like plaintext, so watermarks, MaxQueued and
// the write timeout hold as they do without TLS.

// ErrTLS is wrapped in the OnClose error of a connection closed for its
// TLS layer: a failed handshake, a bad record.
var ErrTLS = errors.New("frameloop: TLS")

// encryptChunk bounds the plaintext encrypted at once, and so the
// ciphertext a connection holds while the socket is full.
const encryptChunk = 64 << 10

// tlsConn is a TLS connection's record layer and what the loop keeps with
// it: the ciphertext waiting for the socket, the handshake's bookkeeping.
type tlsConn struct {
	ref     connRef
	sess    *tlslayer.Session
	out     *bufpool.Buf // ciphertext not yet taken by the socket
	outOff  int
	started int64 // when the connection was accepted, for the handshake's latency
	// Loop-owned flags.
	running  bool  // the handshake goroutine holds a slot of srv.handshakes
	notified bool  // close_notify is queued
	failure  error // why the layer failed, for the close (loop-owned)
	// Guarded by loop.outMu.
	event bool // in loop.tlsEvents
	err   error
}

// tlsOf returns st's TLS layer, nil for a plaintext connection.
func (l *loop) tlsOf(st *connState) *tlsConn {
	if l.tls == nil || int(st.fd) >= len(l.tls) {
		return nil
	}
	return l.tls[st.fd]
}

// startTLS gives st its record layer and starts its handshake, or queues
// it for a handshake slot.
func (l *loop) startTLS(st *connState) {
	fd := int(st.fd)
	if fd >= len(l.tls) {
		grown := make([]*tlsConn, len(l.conns))
		copy(grown, l.tls)
		l.tls = grown
	}
	tc := &tlsConn{ref: connRef{st, st.gen}, started: l.now}
	tc.sess = tlslayer.NewServer(l.cfg.TLS, tlslayer.Options{
		HandshakeTimeout: l.cfg.TLSHandshakeTimeout,
		Notify:           func() { l.tlsEvent(tc) },
		LocalAddr:        st.conn.LocalAddr(),
		RemoteAddr:       st.conn.RemoteAddr(),
	})
	l.tls[fd] = tc
	l.outMu.Lock()
	st.conn.extLocked().tls = tc.sess
	l.outMu.Unlock()
	st.phase = phaseHandshake
	if l.cfg.TLSHandshakeTimeout > 0 {
		l.setTimer(st, timerHandshake) // from now on, instead of the idle timeout
	}
	if !l.runHandshake(st, tc) {
		l.hsWait = append(l.hsWait, tc.ref)
		l.hsWaiting.Store(true)
		l.setInterest(st) // unread until a slot frees
	}
}

// runHandshake starts st's handshake goroutine if a slot is free.
func (l *loop) runHandshake(st *connState, tc *tlsConn) bool {
	select {
	case l.srv.handshakes <- struct{}{}:
	default:
		return false
	}
	tc.running = true
	l.srv.handshaking.Add(1)
	go func() {
		err := tc.sess.Handshake(context.Background())
		l.outMu.Lock()
		tc.err = err
		l.outMu.Unlock()
		l.srv.handshaking.Add(-1)
		<-l.srv.handshakes
		l.srv.handshakeSlotFreed()
		l.tlsEvent(tc)
	}()
	l.setInterest(st)
	return true
}

// handshakeSlotFreed wakes the loops with connections waiting for a slot.
func (s *Server) handshakeSlotFreed() {
	for _, l := range s.loops {
		if l.hsWaiting.Load() {
			l.post(reqTLS)
		}
	}
}

// tlsEvent tells the loop that tc's session has something for it:
// handshake output, room for input, or the handshake's end. It runs on the
// handshake goroutine, possibly inside crypto/tls: it only queues and
// wakes.
func (l *loop) tlsEvent(tc *tlsConn) {
	l.outMu.Lock()
	if tc.event || tc.ref.st.gen != tc.ref.gen {
		l.outMu.Unlock()
		return
	}
	tc.event = true
	l.tlsEvents = append(l.tlsEvents, tc)
	l.outMu.Unlock()
	l.post(reqTLS)
}

// serveTLS handles what the handshake goroutines reported, and starts the
// handshakes waiting for a slot.
func (l *loop) serveTLS() {
	l.outMu.Lock()
	events := l.tlsEvents
	l.tlsEvents = l.tlsEventsSpare[:0]
	l.tlsEventsSpare = events
	for _, tc := range events {
		tc.event = false
	}
	l.outMu.Unlock()
	for _, tc := range events {
		if st := tc.ref.st; st.gen == tc.ref.gen && st.phase == phaseHandshake {
			l.guard(st, (*loop).handshakeProgress)
		}
	}
	clear(events)
	l.startWaitingHandshakes()
}

// startWaitingHandshakes starts handshakes for the connections waiting
// for a slot, oldest first.
func (l *loop) startWaitingHandshakes() {
	i := 0
	for ; i < len(l.hsWait); i++ {
		r := l.hsWait[i]
		if r.st.gen != r.gen || r.st.phase != phaseHandshake {
			continue
		}
		if !l.runHandshake(r.st, l.tls[r.st.fd]) {
			break
		}
	}
	n := copy(l.hsWait, l.hsWait[i:])
	clear(l.hsWait[n:])
	l.hsWait = l.hsWait[:n]
	l.hsWaiting.Store(n > 0)
}

// handshakeProgress sends what the handshake wrote, resumes reading if
// the session has room again, and when the handshake has ended, opens the
// connection or closes it.
func (l *loop) handshakeProgress(st *connState) {
	tc := l.tlsOf(st)
	l.takeTLSOutput(st, tc)
	select {
	case <-tc.sess.Done():
	default:
		l.flush(st, false)
		l.setInterest(st)
		return
	}
	l.outMu.Lock()
	err := tc.err
	l.outMu.Unlock()
	if err != nil {
		l.tlsFail(st, tc, err)
		return
	}
	l.stats.tlsOK++
	l.stats.tlsLatency.observe(l.clock() - tc.started)
	st.phase = phaseOpen
	l.setIdle(st)
	l.greet(st)
	if st.phase != phaseOpen {
		l.flush(st, false)
		return
	}
	if l.draining {
		l.drainConn(st) // a shutdown began during the handshake
		if st.phase == phaseFree {
			return
		}
	}
	// The client may have sent application data right behind its
	// Finished, which the session holds: the socket will not say so.
	gen := st.gen
	l.decrypt(st, tc, nil)
	if st.gen == gen {
		l.setInterest(st)
	}
}

// takeTLSOutput moves what the session wrote on its own (handshake
// flights, a KeyUpdate reply, an alert) into st's ciphertext.
func (l *loop) takeTLSOutput(st *connState, tc *tlsConn) {
	n := tc.sess.PendingOutput()
	if n == 0 {
		return
	}
	l.reserveCipher(tc, n)
	before := len(tc.out.B)
	tc.out.B = tc.sess.TakeOutput(tc.out.B)
	l.outMu.Lock()
	st.queued.Add(int64(len(tc.out.B) - before))
	l.markDirtyLocked(st)
	l.outMu.Unlock()
}

// reserveCipher makes room for n more bytes of ciphertext.
func (l *loop) reserveCipher(tc *tlsConn, n int) {
	if tc.out == nil {
		tc.out = bufpool.Get(n)
		return
	}
	if cap(tc.out.B)-len(tc.out.B) < n {
		nb := bufpool.Get(len(tc.out.B) - tc.outOff + n)
		nb.B = append(nb.B, tc.out.B[tc.outOff:]...)
		bufpool.Put(tc.out)
		tc.out, tc.outOff = nb, 0
	}
}

// tlsFailed closes st for its TLS layer. The alert crypto/tls queued, if
// any — in the session still, or moved into st's ciphertext already — is
// written first, on a best-effort basis: it tells the client why (an
// unknown CA, no common protocol) where a bare close would not.
func (l *loop) tlsFailed(st *connState, tc *tlsConn) {
	l.closeNow(st, ReasonTLS, fmt.Errorf("%w: %w", ErrTLS, tc.failure))
}

// tlsFail records err as tc's failure and closes st for it.
func (l *loop) tlsFail(st *connState, tc *tlsConn, err error) {
	tc.failure = err
	l.tlsFailed(st, tc)
}

// flushAlert writes what ciphertext tc holds, best effort, before a close,
// then ends the stream and reads away what the client had sent: closing a
// socket with unread input makes the kernel send a reset, and a client
// that gets one may never read the alert.
func (l *loop) flushAlert(st *connState, tc *tlsConn) {
	fd := int(st.fd)
	if tc.sess.PendingOutput() > 0 {
		l.reserveCipher(tc, tc.sess.PendingOutput())
		tc.out.B = tc.sess.TakeOutput(tc.out.B)
	}
	if tc.out != nil && tc.outOff < len(tc.out.B) {
		sock.Write(fd, tc.out.B[tc.outOff:])
	}
	sock.ShutdownWrite(fd)
	for range 4 {
		if n, err := sock.Read(fd, l.rbuf); n <= 0 || err != nil {
			break
		}
	}
}

// handshakeFailure is the reason a handshake that did not complete
// counts as, from how its connection closed.
func handshakeFailure(reason CloseReason, err error) tlslayer.Reason {
	switch reason {
	case ReasonTLS:
		return tlslayer.ReasonOf(err)
	case ReasonReset, ReasonError, ReasonPeerClosed:
		return tlslayer.ReasonEOF // the client went away
	case ReasonShutdown:
		return tlslayer.ReasonClosed
	}
	return tlslayer.ReasonOther
}

// readHandshake feeds the handshake with what the socket has.
func (l *loop) readHandshake(st *connState) {
	tc := l.tlsOf(st)
	n, err := sock.Read(int(st.fd), l.rbuf)
	switch {
	case err != nil && err != unix.EAGAIN:
		l.closeNow(st, reasonForError(err), err)
		return
	case err == unix.EAGAIN:
		return
	case n == 0:
		tc.sess.FeedEOF() // the handshake ends, and says why
		st.eof = true
		l.setInterest(st)
		return
	}
	l.stats.bytesIn += uint64(n)
	if _, err := tc.sess.Feed(l.rbuf[:n]); err != nil {
		l.tlsFail(st, tc, err)
		return
	}
	l.setInterest(st) // the session may ask for a pause
}

// readTLS reads ciphertext, decrypts it and hands the plaintext to the
// framing.
func (l *loop) readTLS(st *connState) {
	tc := l.tlsOf(st)
	n, ok := l.read(st, l.rbuf)
	if !ok {
		return
	}
	frames := l.stats.framesIn
	gen := st.gen
	l.decrypt(st, tc, l.rbuf[:n])
	if st.gen == gen {
		l.afterInput(st, frames)
	}
}

// decrypt decrypts ciphertext and what the session holds, and hands the
// plaintext to the framing until nothing is left.
func (l *loop) decrypt(st *connState, tc *tlsConn, ciphertext []byte) {
	gen := st.gen
	for {
		n, more, err := tc.sess.Decrypt(ciphertext, l.plain)
		ciphertext = nil
		if n > 0 {
			l.input(st, l.plain[:n])
			if st.gen != gen {
				return
			}
		}
		if err != nil {
			if tlslayer.ReasonOf(err) == tlslayer.ReasonEOF {
				l.peerEOF(st) // close_notify: the client is done sending
				return
			}
			l.tlsFail(st, tc, err)
			return
		}
		if !more {
			break
		}
	}
	if tc.sess.PendingOutput() > 0 {
		l.takeTLSOutput(st, tc) // a KeyUpdate reply
	}
	tc.sess.Release() // its input buffer, if all was consumed
}

// input hands plaintext to the framing: decoded at once, or, while
// reading is paused with frames already waiting, kept behind them.
func (l *loop) input(st *connState, data []byte) {
	if !st.acceptsFrames() && st.phase != phaseOpen {
		return
	}
	if (st.readPaused || st.userPaused) && st.in != nil {
		l.fill(st, data, len(st.in.B)+len(data))
		return
	}
	l.consume(st, data)
}

// encryptQueued moves plaintext from st's output queue, up to a reply
// slot not yet filled and at most encryptChunk bytes, into its
// ciphertext. It reports false if the connection failed.
func (l *loop) encryptQueued(st *connState, tc *tlsConn) bool {
	l.outMu.Lock()
	st.clearCtl(ctlDirty) // this flush takes care of what was written so far
	bufs, total := l.gather(st)
	l.outMu.Unlock()
	if total == 0 {
		return true
	}
	gathered := bufs
	var plain int
	for i, b := range bufs {
		if plain >= encryptChunk {
			bufs = bufs[:i]
			break
		}
		plain += len(b)
	}
	// Records add a header and a tag each; small records at the start of
	// a connection (dynamic record sizing) add the most, about 3 %.
	l.reserveCipher(tc, plain+plain/16+512)
	before := len(tc.out.B)
	var err error
	for _, b := range bufs {
		if tc.out.B, err = tc.sess.Encrypt(tc.out.B, b); err != nil {
			break
		}
	}
	clear(gathered)
	grew := len(tc.out.B) - before
	l.outMu.Lock()
	st.consumeOutput(plain)
	st.queued.Add(int64(grew))
	l.outMu.Unlock()
	if err != nil {
		l.tlsFail(st, tc, err)
		return false
	}
	return true
}

// writeTLS writes st's ciphertext, encrypting more from the queue as the
// socket takes it. It returns what writePlain does.
func (l *loop) writeTLS(st *connState, tc *tlsConn, writable bool) (blocked, progress, more, ok bool) {
	blocked = st.waitWrite && !writable
	gen := st.gen
	round := 0
	for ; round < writeRounds && !blocked; round++ {
		if tc.out == nil || tc.outOff == len(tc.out.B) {
			if st.phase == phaseHandshake {
				l.outMu.Lock()
				st.clearCtl(ctlDirty)
				l.outMu.Unlock()
				break // nothing to encrypt before the handshake ends
			}
			if !l.encryptQueued(st, tc) {
				return false, progress, false, st.gen == gen
			}
			if tc.out == nil || tc.outOff == len(tc.out.B) {
				break
			}
		}
		pending := tc.out.B[tc.outOff:]
		n, err := sock.Write(int(st.fd), pending)
		if err != nil && err != unix.EAGAIN {
			l.closeNow(st, reasonForError(err), err)
			return false, progress, false, false
		}
		if n > 0 {
			tc.outOff += n
			l.outMu.Lock()
			st.queued.Add(-int64(n))
			l.outMu.Unlock()
			l.stats.bytesOut += uint64(n)
			progress = true
		}
		if tc.outOff == len(tc.out.B) {
			// An idle connection holds no ciphertext buffer, and its
			// session no buffer of its own (crypto/tls keeps its).
			bufpool.Put(tc.out)
			tc.out, tc.outOff = nil, 0
			tc.sess.Release()
		}
		blocked = n < len(pending)
	}
	return blocked, progress, round == writeRounds, true
}

// closeNotify queues TLS's close_notify after the last reply, once.
func (l *loop) closeNotify(st *connState, tc *tlsConn) {
	tc.notified = true
	if !tc.sess.Established() {
		return
	}
	l.reserveCipher(tc, 64)
	before := len(tc.out.B)
	tc.out.B, _ = tc.sess.CloseNotify(tc.out.B)
	l.outMu.Lock()
	st.queued.Add(int64(len(tc.out.B) - before))
	l.outMu.Unlock()
}

// dropTLS releases st's record layer when it closes: a handshake that
// had not completed counts as failed, for the reason the connection
// closed; a failure's alert is sent first.
func (l *loop) dropTLS(st *connState, reason CloseReason, err error) {
	tc := l.tlsOf(st)
	if tc == nil {
		return
	}
	if st.phase == phaseHandshake {
		l.stats.tlsFailed[handshakeFailure(reason, err)]++
	}
	if tc.failure != nil {
		l.flushAlert(st, tc)
	}
	tc.sess.Close() // ends a running handshake; its goroutine exits on its own
	if tc.out != nil {
		bufpool.Put(tc.out)
		tc.out = nil
	}
	l.tls[st.fd] = nil
}

// handshakeExpired closes a connection whose handshake did not complete
// within Config.TLSHandshakeTimeout of its accept.
func (l *loop) handshakeExpired(st *connState) {
	l.tlsFail(st, l.tlsOf(st), &tlslayer.Error{Reason: tlslayer.ReasonTimeout, Op: "handshake",
		Detail: fmt.Sprintf("not complete within %v of the accept", l.cfg.TLSHandshakeTimeout)})
}

// TLSConnectionState returns the negotiated TLS state — version, cipher
// suite, ALPN protocol, verified peer certificates — from OnOpen on; ok
// is false without TLS or once the connection is closed.
func (c *Conn) TLSConnectionState() (state tls.ConnectionState, ok bool) {
	l := c.st.l
	l.outMu.Lock()
	var sess *tlslayer.Session
	if x := c.ext.Load(); c.st.gen == c.gen && x != nil {
		sess = x.tls
	}
	l.outMu.Unlock()
	if sess == nil || !sess.Established() {
		return tls.ConnectionState{}, false
	}
	return sess.State(), true
}

// latencyHistogram counts handshake latencies in TLSHandshakeBuckets.
type latencyHistogram struct {
	counts [len(TLSHandshakeBuckets) + 1]uint64
	sum    int64 // nanoseconds
}

func (h *latencyHistogram) observe(d int64) {
	i := 0
	for i < len(TLSHandshakeBuckets) && time.Duration(d) > TLSHandshakeBuckets[i] {
		i++
	}
	h.counts[i]++
	h.sum += d
}

// TLSHandshakeBuckets are the upper bounds of Stats.TLSHandshakeLatency's
// buckets; the last bucket counts the handshakes above them all.
var TLSHandshakeBuckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// tlsMayRead says whether st's TLS layer lets the loop read its socket:
// not while waiting for a handshake slot, and not while the session holds
// as much unconsumed ciphertext as it will take.
func (l *loop) tlsMayRead(st *connState) bool {
	if l.tls == nil || st.phase != phaseHandshake {
		return true
	}
	tc := l.tlsOf(st)
	return tc != nil && tc.running && !st.eof && !tc.sess.InputPaused()
}
