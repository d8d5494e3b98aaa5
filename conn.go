package frameloop

import (
	"net"
	"sync/atomic"
	"unsafe"

	"github.com/frameloop/frameloop/internal/bufpool"
	"github.com/frameloop/frameloop/internal/deadline"
	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
)

// Conn is the handle of one connection. The same *Conn is passed to every
// callback of one connection, so it can key the application's own maps.
// It stays valid after the connection closes: Write and Close then return
// ErrClosed, and never reach a later connection that reuses the same
// slot. Every method is safe from any goroutine, but Frame, which belongs
// to OnFrame.
type Conn struct {
	st   *connState
	gen  uint32
	addr sock.Addr
	// ext holds what few connections use — a value, a context, a PROXY
	// header — allocated on first use, under the loop's outMu, so that an
	// idle connection does not pay for them. Atomic so that Value, read on
	// every frame by some handlers, takes no lock.
	ext atomic.Pointer[connExt]
}

// RemoteAddr is the peer's address: with Config.ProxyProtocol, the client
// address the proxy reported.
func (c *Conn) RemoteAddr() net.Addr { return c.addr.NetAddr() }

// Write queues body as one frame, in the connection's framing, with a
// prefix of zero bytes if the framing has one (see WriteFrame). It copies
// body, so the caller may reuse it at once. Frames written by one
// goroutine to one connection are sent in the order of the calls. Nothing
// is sent before the handler returns: the loop flushes each connection's
// queue once per pass, with one write for all the frames queued in that
// pass.
//
// Write fails with ErrClosed once nothing written could be sent any more
// (after Close, once the write side is shut, once closed), with
// ErrBackpressure when the queue holds too much already (see
// Config.MaxQueued), and with ErrTooLarge for a body the framing cannot
// express or the queue could never hold; nothing is queued then.
func (c *Conn) Write(body []byte) error { return c.write(nil, body) }

// WriteFrame queues a frame with the given prefix — exactly
// Framing.Offset bytes, or ErrBadPrefix — and body: the frame's length
// field is computed. Otherwise it is Write.
func (c *Conn) WriteFrame(prefix, body []byte) error {
	if prefix == nil || len(prefix) != c.st.l.format.Offset() {
		return ErrBadPrefix
	}
	return c.write(prefix, body)
}

// WriteRaw queues bytes that already form exactly one frame in the
// connection's framing, as they are: to forward or echo a frame unchanged
// (Conn.Frame().Raw), or to write one encoded frame to many connections.
// Bytes that are not one whole frame fail with ErrBadFrame. Otherwise it
// is Write.
func (c *Conn) WriteRaw(frame []byte) error {
	if n, _, _, err := c.st.l.outFormat.Next(frame); err != nil || n != len(frame) {
		return ErrBadFrame
	}
	return c.writeRaw(frame)
}

// write queues a frame made of prefix (nil for zeros) and body.
func (c *Conn) write(prefix, body []byte) error {
	l := c.st.l
	hdr, err := l.outFormat.HeaderLen(len(body))
	if err != nil {
		return ErrTooLarge
	}
	if err := c.admit(hdr + len(body)); err != nil {
		return err
	}
	c.st.appendFrame(l.outFormat, prefix, body, hdr)
	return c.st.queuedLocked(hdr + len(body))
}

// writeRaw queues bytes that are one whole frame already. It is admit,
// append and queuedLocked in one body: the echo's path, where the two
// calls showed.
func (c *Conn) writeRaw(raw []byte) error {
	st := c.st
	l := st.l
	size := int64(len(raw))
	if size > l.maxQueued {
		return ErrTooLarge
	}
	l.outMu.Lock()
	if st.gen != c.gen || st.has(ctlCloseRequested|ctlShut) {
		l.outMu.Unlock()
		return ErrClosed
	}
	if st.queued.Load()+size > l.maxQueued {
		l.shared.backpressured++
		l.outMu.Unlock()
		return ErrBackpressure
	}
	if t := st.outTail; t != nil && cap(t.B)-len(t.B) >= len(raw) {
		t.B = append(t.B, raw...) // the common case: one check, one copy
	} else {
		st.appendBytes(raw)
	}
	st.queued.Add(size)
	l.shared.framesOut++
	wake := l.markDirtyLocked(st)
	l.outMu.Unlock()
	if wake {
		l.wake()
	}
	return nil
}

// admit takes outMu if c may queue size more bytes; otherwise it says
// why not, without the lock. The caller appends, then calls queuedLocked.
func (c *Conn) admit(size int) error {
	st := c.st
	l := st.l
	if int64(size) > l.maxQueued {
		return ErrTooLarge
	}
	l.outMu.Lock()
	if st.gen != c.gen || st.has(ctlCloseRequested|ctlShut) {
		l.outMu.Unlock()
		return ErrClosed
	}
	if st.queued.Load()+int64(size) > l.maxQueued {
		l.shared.backpressured++
		l.outMu.Unlock()
		return ErrBackpressure
	}
	return nil
}

// queuedLocked accounts for size bytes just appended (or fewer: a reply
// slot filled), releases outMu and makes sure the loop flushes them.
func (st *connState) queuedLocked(size int) error {
	l := st.l
	st.queued.Add(int64(size))
	l.shared.framesOut++
	wake := l.markDirtyLocked(st)
	l.outMu.Unlock()
	if wake {
		l.wake()
	}
	return nil
}

// Close closes the connection once the frames already written are sent.
// The loop stops reading from it at once. Close returns ErrClosed if the
// connection is already closed or closing, whoever decided it.
func (c *Conn) Close() error {
	st := c.st
	l := st.l
	l.outMu.Lock()
	if st.gen != c.gen || st.has(ctlClosing) {
		l.outMu.Unlock()
		return ErrClosed
	}
	st.setCtl(ctlCloseRequested | ctlClosing)
	wake := l.markDirtyLocked(st)
	l.outMu.Unlock()
	if wake {
		l.wake()
	}
	return nil
}

// PauseReading stops reading from the connection until ResumeReading, from
// any goroutine: flow control for work handed to other goroutines, so
// that a client pipelining requests cannot get ahead of the workers.
// Frames already read and not yet delivered wait too. The pause holds
// besides the one the output's high-water mark makes: reading resumes
// only when neither holds.
func (c *Conn) PauseReading() error { return c.setPaused(true) }

// ResumeReading ends a PauseReading; frames read before the pause are
// delivered first.
func (c *Conn) ResumeReading() error { return c.setPaused(false) }

func (c *Conn) setPaused(on bool) error {
	st := c.st
	l := st.l
	l.outMu.Lock()
	if st.gen != c.gen {
		l.outMu.Unlock()
		return ErrClosed
	}
	if on {
		st.setCtl(ctlUserPaused)
	} else {
		st.clearCtl(ctlUserPaused)
	}
	wake := l.markDirtyLocked(st)
	l.outMu.Unlock()
	if wake {
		l.wake()
	}
	return nil
}

// Queued is the number of bytes written to the connection and not yet
// taken by the kernel, reply slots not yet filled counted at 512 bytes.
func (c *Conn) Queued() int {
	c.st.l.outMu.Lock()
	defer c.st.l.outMu.Unlock()
	if c.st.gen != c.gen {
		return 0
	}
	return int(c.st.queued.Load())
}

// phase is where a connection is in its life.
type phase uint8

const (
	phaseFree      phase = iota
	phaseProxy           // waiting for the PROXY protocol header
	phaseHandshake       // TLS handshake in progress (tls.go)
	phaseOpen            // serving frames
	phaseClosing         // reading stopped; closes once output is flushed
	phaseLinger          // output flushed, write side shut: discarding input until the peer is done (lifecycle.go)
)

// connState is the pooled state behind a Conn. The loop owns every field
// except those marked as guarded by loop.outMu, which other goroutines
// reach through Conn.Write and Conn.Close. It is kept small, and owns no
// buffer while idle, because a server holds many of them.
type connState struct {
	// timer is in the loop's idle list while nothing is queued (its quiet
	// list during a shutdown), in its write list while output waits for
	// the socket, in its linger list while lingering. It is the first
	// field: see stateOf.
	timer deadline.Entry
	l     *loop
	conn  *Conn
	// in holds input not yet decoded: the unfinished frame, or, while
	// reading is paused, everything read and not yet handled.
	in *bufpool.Buf

	// queued counts the bytes in the output queue. Writes happen under
	// outMu; the loop reads it without the lock on its hot path.
	queued atomic.Int64

	// Guarded by loop.outMu.
	outHead, outTail *bufpool.Buf
	outOff           int32 // bytes of outHead already written
	// gen names this incarnation of the state: a value the loop never
	// issued before (see loop.nextGen), 0 while the state is free. It is
	// the poller tag and the check behind every Conn handle. Written under
	// outMu; the loop reads it without.
	gen uint32
	// ctl holds the ctl* bits; written under outMu. The loop reads
	// ctlCloseRequested between frames without the lock, hence atomic
	// loads (a plain field would be a data race, not a slower one).
	ctl atomic.Uint32

	fd int32
	// inCharge is what st.in costs the server's input budget: the
	// buffer's capacity, or the whole frame's once it is reserved (see
	// inbuf.go).
	inCharge uint32
	// lingerUnsent is, while lingering, how many bytes the kernel still
	// had to deliver at the last look; lingerStalls counts the looks in a
	// row that saw no progress.
	lingerUnsent int32
	// pending counts the reply slots reserved and not filled (reply.go);
	// guarded by outMu.
	pending      uint32
	idleIdx      uint16 // which idle list: loop.idleLists[idleIdx], or noIdle
	lingerStalls uint8

	interest   poller.Interest
	phase      phase
	readPaused bool // output above the high-water mark
	memPaused  bool // waiting for room in the input budget
	userPaused bool // the application paused reading (ctlUserPaused, as last seen)
	eof        bool // the peer will send nothing more
	waitWrite  bool // the kernel took less than we had: write interest armed
	timerList  timerList
	reason     CloseReason
}

// Bits of connState.ctl.
const (
	// ctlDirty: the state is in loop.dirty, waiting for a flush.
	ctlDirty uint32 = 1 << iota
	// ctlCloseRequested: Close was called. No frame is delivered after it
	// and Write is refused.
	ctlCloseRequested
	// ctlClosing: the connection is closing, whoever decided it; Close is
	// refused. Write is still taken: a closing connection sends what it
	// has, and replies to frames it received before may still come.
	ctlClosing
	// ctlShut: the write side is shut, or about to be: what is written
	// now could never be sent, so Write is refused.
	ctlShut
	// ctlUserPaused: Conn.PauseReading; the loop copies it into
	// userPaused when it flushes.
	ctlUserPaused
)

func (st *connState) has(bit uint32) bool { return st.ctl.Load()&bit != 0 }

// setCtl and clearCtl change ctl bits; outMu must be held.
func (st *connState) setCtl(bits uint32)   { st.ctl.Store(st.ctl.Load() | bits) }
func (st *connState) clearCtl(bits uint32) { st.ctl.Store(st.ctl.Load() &^ bits) }

// stateOf finds the connState a deadline entry belongs to: the entry is
// the state's first field, so they share an address. This keeps the entry
// free of a back pointer, 8 bytes on each of many idle connections.
func stateOf(e *deadline.Entry) *connState { return (*connState)(unsafe.Pointer(e)) }

// The conversion in stateOf is valid only while timer comes first.
var _ = [1]struct{}{}[unsafe.Offsetof(connState{}.timer)]

// timerList says which deadline list holds connState.timer.
type timerList uint8

const (
	timerNone timerList = iota
	timerIdle
	timerQuiet
	timerWrite
	timerLinger
	timerHandshake
)

// acceptsFrames says whether frames read from st are still delivered:
// while open, and while closing after the peer's EOF (those frames were
// sent before it). Not once Close was called, nor after an oversized
// frame: a Close from a callback makes the connection closing as soon as
// the callback returns (greet, deliver), one from elsewhere after the
// frame being delivered.
func (st *connState) acceptsFrames() bool {
	switch st.phase {
	case phaseOpen:
		return true
	case phaseClosing:
		return st.reason == ReasonPeerClosed && !st.has(ctlCloseRequested)
	}
	return false
}

// holdsUndelivered says whether st, closing after the peer's EOF, still
// holds frames read before it that a pause keeps from being delivered.
func (st *connState) holdsUndelivered() bool {
	return st.in != nil && st.reason == ReasonPeerClosed && (st.readPaused || st.userPaused)
}

// appendFrame copies a frame, whose header is hdr bytes, into the output
// queue; outMu must be held.
func (st *connState) appendFrame(f *framing.Format, prefix, body []byte, hdr int) {
	if t := st.outTail; t != nil && cap(t.B)-len(t.B) >= hdr+len(body) {
		// The common case, a frame that fits the current chunk: one check,
		// two copies.
		n := len(t.B)
		t.B = t.B[:n+hdr+len(body)]
		f.PutHeader(t.B[n:], prefix, len(body))
		copy(t.B[n+hdr:], body)
		return
	}
	var h [framing.MaxOffset + framing.MaxVarintLen]byte
	f.PutHeader(h[:], prefix, len(body))
	st.appendBytes(h[:hdr])
	st.appendBytes(body)
}

const (
	minChunk = 4 << 10
	maxChunk = 64 << 10
)

func (st *connState) appendBytes(p []byte) {
	for len(p) > 0 {
		t := st.outTail
		if t == nil || len(t.B) == cap(t.B) {
			// Size the next chunk by what is queued: small for the odd
			// reply, bigger for a pipelined burst, never so big that one
			// large frame pins a huge buffer.
			want := max(len(p), int(st.queued.Load()))
			t = bufpool.Get(min(max(want, minChunk), maxChunk))
			if st.outTail == nil {
				st.outHead = t
			} else {
				st.outTail.Next = t
			}
			st.outTail = t
		}
		n := min(len(p), cap(t.B)-len(t.B))
		t.B = append(t.B, p[:n]...)
		p = p[n:]
	}
}

// releaseOutput drops the output queue; outMu must be held.
func (st *connState) releaseOutput() {
	for b := st.outHead; b != nil; {
		next := b.Next
		bufpool.Put(b)
		b = next
	}
	st.outHead, st.outTail, st.outOff = nil, nil, 0
	st.queued.Store(0)
	st.pending = 0 // their placeholders went with the chain
}
