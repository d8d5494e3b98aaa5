package frameloop

import (
	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/sock"
	"golang.org/x/sys/unix"
)

// minInBuffer is the smallest buffer an unfinished frame gets.
const minInBuffer = 512

// next decodes the frame at the start of buf (framing.Format.Next): n is
// the frame's size when complete, h its header's; otherwise need is what
// it takes to know more. The loop never parses a header itself.
func (l *loop) next(buf []byte) (n, h, need int, err error) { return l.format.Next(buf) }

// pendingFrame reports the total size of the unfinished frame st.in
// starts with, if its header is complete.
func (l *loop) pendingFrame(st *connState) (total int, ok bool) {
	if st.in == nil {
		return 0, false
	}
	n, _, need, err := l.next(st.in.B)
	if err != nil || n > 0 || need <= len(st.in.B) {
		return 0, false
	}
	return need, true
}

// readable reads once from st. The poller is level-triggered, so bytes
// left in the socket are reported again at the next wait; one read per
// event keeps a busy connection from starving the others.
func (l *loop) readable(st *connState) {
	switch st.phase {
	case phaseLinger:
		l.discard(st)
		return
	case phaseProxy:
		l.readProxy(st)
		return
	case phaseHandshake:
		l.readHandshake(st)
		return
	case phaseClosing:
		return
	}
	if total, ok := l.pendingFrame(st); ok {
		// Reading more of a frame than its buffer holds: the whole frame
		// is charged to the input budget first.
		if total > cap(st.in.B) && !l.reserveIn(st, total) {
			l.waitForMemory(st)
			return
		}
		// A frame larger than the shared buffer is read straight into its
		// own buffer, saving a copy per read (not through TLS, where the
		// bytes read are ciphertext).
		if total-len(st.in.B) >= len(l.rbuf) && l.tls == nil {
			l.readLarge(st, total)
			return
		}
	}
	if l.tls != nil {
		l.readTLS(st)
		return
	}
	buf := l.rbuf
	if l.srv.inmem.tight() {
		buf = buf[:tightRead]
	}
	n, ok := l.read(st, buf)
	if !ok {
		return
	}
	frames := l.stats.framesIn
	l.consume(st, buf[:n])
	l.afterInput(st, frames)
}

// afterInput runs once the frames a read brought are handled: it pushes
// the idle deadline if a frame completed, and flushes the replies at once —
// one write for the whole batch, while the bytes are still in cache, and
// holding an output buffer only for the time of the write.
func (l *loop) afterInput(st *connState, framesBefore uint64) {
	if st.phase == phaseFree {
		return
	}
	l.touched(st, framesBefore)
	if (st.queued.Load() > 0 && !st.waitWrite) || st.phase == phaseClosing || l.spanOf == st {
		l.flush(st, false)
	}
}

// read reads into buf; ok is false when there was nothing to read or the
// connection ended (it is then closing or closed).
func (l *loop) read(st *connState, buf []byte) (n int, ok bool) {
	n, err := sock.Read(int(st.fd), buf)
	switch {
	case err == unix.EAGAIN:
		return 0, false
	case err != nil:
		l.closeNow(st, reasonForError(err), err)
		return 0, false
	case n == 0:
		l.peerEOF(st)
		return 0, false
	}
	l.stats.bytesIn += uint64(n)
	l.heard(st)
	return n, true
}

// touched pushes st's idle deadline forward if a frame completed since
// the frame count was `before`. Partial frames do not count: a client
// trickling a frame a byte at a time is idle.
func (l *loop) touched(st *connState, before uint64) {
	if l.stats.framesIn != before && st.timerList == timerIdle {
		l.setTimer(st, timerIdle)
	}
}

// readLarge reads the rest of a large frame into the connection's buffer,
// growing it only as bytes arrive, so that announcing a large frame costs
// no memory until it is actually sent.
func (l *loop) readLarge(st *connState, total int) {
	have := len(st.in.B)
	if have == cap(st.in.B) {
		l.growIn(st, min(total, max(2*have, have+len(l.rbuf))))
	}
	n, ok := l.read(st, st.in.B[have:min(cap(st.in.B), total)])
	if !ok {
		return
	}
	st.in.B = st.in.B[:have+n]
	if have+n < total {
		return
	}
	frames := l.stats.framesIn
	l.deliverPending(st)
	l.afterInput(st, frames)
}

// consume handles bytes just read into the shared buffer.
func (l *loop) consume(st *connState, data []byte) {
	if st.in != nil {
		var done bool
		if data, done = l.completePending(st, data); !done {
			return
		}
	}
	l.echoFrom(st)
	used, need, ok := l.decodeFrames(st, data)
	l.direct = nil
	if !ok {
		return
	}
	if rest := data[used:]; len(rest) > 0 && st.acceptsFrames() {
		l.stash(st, rest, need)
	}
}

// completePending appends to the unfinished frame in st.in until it is
// complete and delivers it. It returns the bytes left over, and done ==
// false when the frame is still unfinished (all of data was taken) or the
// connection is closing.
func (l *loop) completePending(st *connState, data []byte) (rest []byte, done bool) {
	for {
		n, _, need, err := l.next(st.in.B)
		if err != nil {
			l.badFrame(st, err, st.in.B)
			return nil, false
		}
		if n > 0 {
			break
		}
		if len(data) == 0 {
			return nil, false
		}
		data = data[l.fill(st, data, need):]
	}
	l.deliverPending(st)
	if !st.acceptsFrames() {
		return nil, false
	}
	return data, true
}

// deliverPending delivers the complete frame st.in holds and releases the
// buffer. The buffer stays attached during the call: if the handler
// panics, closing the connection releases it (and its charge).
func (l *loop) deliverPending(st *connState) {
	n, h, _, _ := l.next(st.in.B)
	l.deliver(st, st.in.B[:n], h)
	l.dropIn(st)
}

// fill moves bytes from data into st.in until it holds total bytes, and
// returns how many it took. The buffer grows with what arrives, never
// straight to the size a header announces.
func (l *loop) fill(st *connState, data []byte, total int) int {
	have := len(st.in.B)
	take := min(total-have, len(data))
	if have+take > cap(st.in.B) {
		l.growIn(st, min(total, max(2*cap(st.in.B), have+take)))
	}
	st.in.B = append(st.in.B, data[:take]...)
	return take
}

// decodeFrames delivers the complete frames at the start of data. It
// stops at an unfinished frame (need is then its size), when the
// connection's output passes the high-water mark (reading pauses), or when
// the connection starts closing. ok is false when the connection is
// closing and its input is to be discarded.
func (l *loop) decodeFrames(st *connState, data []byte) (used, need int, ok bool) {
	for used < len(data) {
		if !st.acceptsFrames() {
			return used, 0, false
		}
		if st.queued.Load()+l.spanned(st) > l.highWater {
			l.pauseReading(st)
			return used, 0, true
		}
		if st.has(ctlUserPaused) {
			st.userPaused = true // PauseReading: not one more frame
			l.setInterest(st)
			return used, 0, true
		}
		n, ok := l.format.Complete(data[used:])
		h := 4
		if !ok {
			var want int
			var err error
			n, h, want, err = l.next(data[used:])
			if err != nil {
				l.badFrame(st, err, data[used:])
				return used, 0, false
			}
			if n == 0 {
				return used, want, true
			}
		}
		l.deliver(st, data[used:used+n], h)
		used += n
	}
	return used, 0, true
}

// deliver hands one frame, whose header is h bytes, to the handler;
// Conn.Frame finds it in l.curRaw meanwhile.
func (l *loop) deliver(st *connState, raw []byte, h int) {
	l.stats.framesIn++
	l.curRaw = raw
	l.callFrame(st, raw[h:])
	if st.has(ctlCloseRequested) && st.phase == phaseOpen {
		// Closed by the handler (or by another goroutine, seen early):
		// frames after this one are not delivered.
		l.startClosing(st, ReasonLocal)
	}
}

// stash keeps bytes that could not be handled yet: an unfinished frame
// (need is its size, if known) or, while reading is paused, everything
// left of the read.
func (l *loop) stash(st *connState, data []byte, need int) {
	size := len(data)
	if !st.readPaused && need <= len(l.rbuf) {
		size = max(size, need) // small frames get their whole size at once
	}
	l.newIn(st, max(size, minInBuffer), data)
}

// pauseReading stops reading from st until its output drains below the
// low-water mark: the client is sending faster than it reads its replies.
func (l *loop) pauseReading(st *connState) {
	if st.readPaused {
		return
	}
	st.readPaused = true
	l.stats.readPauses++
	l.setInterest(st)
}

// resumeReading is called once neither the output's high-water mark nor
// the application holds reading paused any more. Frames buffered while
// paused are handled before the loop waits again: the socket may never
// report them, since they were already read from it.
func (l *loop) resumeReading(st *connState) {
	if st.in != nil {
		gen := st.gen
		frames := l.stats.framesIn
		l.decodeStashed(st)
		if st.gen != gen {
			return
		}
		l.touched(st, frames)
	}
	l.setInterest(st)
}

// decodeStashed decodes the frames held in st.in and compacts what is left
// to the front of the buffer, so that an unfinished header is never split
// across the buffer's end.
func (l *loop) decodeStashed(st *connState) {
	in := st.in
	used, _, ok := l.decodeFrames(st, in.B)
	if st.in != in {
		return // released by a close
	}
	if !ok {
		l.dropIn(st)
		return
	}
	rest := copy(in.B, in.B[used:])
	in.B = in.B[:rest]
	if rest == 0 {
		l.dropIn(st)
	}
}

// peerEOF handles the end of the peer's stream: it has sent everything.
// Replies to what it sent are still delivered; then the connection closes.
func (l *loop) peerEOF(st *connState) {
	st.eof = true
	if !st.readPaused && !st.userPaused {
		l.dropIn(st) // an unfinished frame can never finish now
	}
	switch st.phase {
	case phaseLinger:
		l.closeNow(st, st.reason, st.reason.err())
		return
	case phaseProxy:
		// Gone before its header was complete: the handler never saw it.
		l.closeNow(st, ReasonProxyHeader, ErrBadProxyHeader)
		return
	}
	l.startClosing(st, ReasonPeerClosed)
}

// badFrame closes st after a header the framing refuses: a body above
// MaxMessage (oversize), or a length that is no length (bad_frame: a
// varint too long, a size the adjustment makes negative). The replies to
// the frames before it are still sent.
func (l *loop) badFrame(st *connState, err error, hdr []byte) {
	reason, msg := ReasonOversize, "closing connection: frame larger than max-message"
	if err != framing.ErrTooLarge {
		reason, msg = ReasonBadFrame, "closing connection: malformed frame header"
	}
	if l.sizeWarn.allow(l.now) {
		v, _ := l.format.LengthValue(hdr)
		l.log.Warn(msg, "remote", st.conn.addr.String(), "length_field", v, "max", l.cfg.MaxMessage,
			"suppressed", l.sizeWarn.takeSuppressed())
	}
	l.dropIn(st)
	l.startClosing(st, reason)
}

// discard reads and drops input from a lingering connection.
func (l *loop) discard(st *connState) {
	n, err := sock.Read(int(st.fd), l.rbuf)
	switch {
	case err == unix.EAGAIN:
	case err != nil || n == 0:
		// The close was decided before: its reason stands, whether the
		// peer ends with a FIN or a reset.
		l.closeNow(st, st.reason, st.reason.err())
	default:
		l.stats.bytesIn += uint64(n)
	}
}
