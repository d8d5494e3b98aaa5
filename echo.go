package frameloop

import (
	"unsafe"

	"github.com/frameloop/frameloop/internal/sock"
	"golang.org/x/sys/unix"
)

// The echo's direct path. An echo server's reply is the frame it just
// read, and the frame is still in the loop's read buffer: when nothing is
// queued for the connection, copying it into the output queue, under
// outMu, only to write it from there a moment later is work the kernel's
// own copy makes pointless. So EchoHandler, while the loop decodes the
// frames of one read of a connection with an empty queue, only notes the
// frames it echoes — a span of the read buffer, since they follow one
// another — and the connection's flush writes the span straight from the
// read buffer, before anything queued, with no lock taken. Only what the
// socket does not take is copied into the queue, at its head. This is the
// hand-written C server's path; profiling put the copy and the three
// locked instructions per frame at 4–8 % of the server's CPU (bench/
// PROFILE.md, candidates 1 and 2).
//
// The order of replies holds: the span starts only with an empty queue,
// so everything queued after it was written after the frames it holds
// (by the handler itself, or concurrently by another goroutine), and the
// flush writes the span first. The span never outlives the read that
// filled the buffer: afterInput flushes it, a close drops it, and a
// handler's panic moves it into the queue (settleSpan).

// echoFrom is called before the frames of one read into l.rbuf are
// decoded for st: if nothing is queued, EchoHandler may note its replies
// as a span. Not over TLS, where the read buffer holds ciphertext.
func (l *loop) echoFrom(st *connState) {
	if l.tls == nil && st.queued.Load() == 0 {
		l.direct = st
	}
}

// echo replies to the frame being delivered with the frame itself:
// EchoHandler.OnFrame, on the loop's goroutine, which knows the frame is
// whole, so the check WriteRaw makes would only repeat the decoder's.
func (c *Conn) echo() error {
	st := c.st
	l := st.l
	raw := l.curRaw
	if l.direct != st || st.queued.Load() != 0 {
		return c.writeRaw(raw)
	}
	if st.gen != c.gen || st.has(ctlCloseRequested|ctlShut) {
		return ErrClosed
	}
	switch {
	case len(l.span) == 0:
		l.span, l.spanOf = raw, st
	case follows(l.span, raw):
		// Frames are decoded in order from one buffer, so each follows
		// the last; anything else (a handler echoing only some frames)
		// goes through the queue, after the span.
		l.span = l.span[:len(l.span)+len(raw)]
	default:
		return c.writeRaw(raw)
	}
	if int64(len(l.span)) > l.maxQueued {
		// Not one byte more than the queue could hold.
		l.span = l.span[:len(l.span)-len(raw)]
		if len(l.span) == 0 {
			l.spanOf = nil
		}
		l.outMu.Lock()
		l.shared.backpressured++
		l.outMu.Unlock()
		return ErrBackpressure
	}
	l.stats.framesOut++
	return nil
}

// spanned is how many bytes the span holds for st: output as much as the
// queue's, for the high-water mark.
func (l *loop) spanned(st *connState) int64 {
	if l.spanOf != st {
		return 0
	}
	return int64(len(l.span))
}

// writeSpan writes st's span straight from the read buffer. It returns
// whether the socket took all of it; ok is false if st closed. What the
// socket left is copied to the head of the queue.
func (l *loop) writeSpan(st *connState) (all, progress, ok bool) {
	span := l.span
	l.span, l.spanOf = nil, nil
	n, err := sock.Write(int(st.fd), span)
	if err != nil && err != unix.EAGAIN {
		l.closeNow(st, reasonForError(err), err)
		return false, false, false
	}
	if n > 0 {
		l.stats.bytesOut += uint64(n)
	}
	if n == len(span) {
		return true, true, true
	}
	l.outMu.Lock()
	st.prependOutput(span[n:])
	l.outMu.Unlock()
	return false, n > 0, true
}

// settleSpan moves a span still pending into its connection's queue, for
// the cases where the read that filled the buffer ends without a flush (a
// handler's panic): the next read would overwrite it.
func (l *loop) settleSpan() {
	l.direct = nil
	st := l.spanOf
	if st == nil {
		return
	}
	span := l.span
	l.span, l.spanOf = nil, nil
	l.outMu.Lock()
	st.prependOutput(span)
	l.markDirtyLocked(st)
	l.outMu.Unlock()
}

// dropSpan forgets st's span: st is closing now, without a flush.
func (l *loop) dropSpan(st *connState) {
	if l.spanOf == st {
		l.span, l.spanOf = nil, nil
	}
	if l.direct == st {
		l.direct = nil
	}
}

// prependOutput copies p in front of the queued output; outMu must be
// held. Nothing of the queue's head has been written (outOff is 0): it was
// all queued after the span that p is the rest of.
func (st *connState) prependOutput(p []byte) {
	head, tail := st.outHead, st.outTail
	st.outHead, st.outTail = nil, nil
	st.appendBytes(p)
	st.queued.Add(int64(len(p)))
	if head != nil {
		st.outTail.Next = head
		st.outTail = tail
	}
}

// follows says whether b starts where a ends, in the same buffer.
func follows(a, b []byte) bool {
	return cap(a)-len(a) >= len(b) &&
		unsafe.Add(unsafe.Pointer(unsafe.SliceData(a)), len(a)) == unsafe.Pointer(unsafe.SliceData(b))
}
