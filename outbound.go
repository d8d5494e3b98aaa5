package frameloop

import (
	"github.com/frameloop/frameloop/internal/bufpool"
	"golang.org/x/sys/unix"
)

// writeRounds bounds the writes one flush makes while the socket keeps
// taking everything and writers keep adding more.
const writeRounds = 4

// flush writes st's queued output with one writev per round and updates
// what st waits for. writable says the poller just reported the socket
// writable; otherwise a connection already waiting for that is not tried,
// as the write would only fail with EAGAIN.
//
// This is where the output policy lives: write interest is armed only
// while output is left over; output above the high-water mark has paused
// reading, and below the low-water mark resumes it; the write deadline
// runs while output waits and is pushed on progress; a closing connection
// closes once nothing is left.
func (l *loop) flush(st *connState, writable bool) {
	if st.phase == phaseLinger {
		// The write side is shut: what was written since cannot be sent.
		l.outMu.Lock()
		st.releaseOutput()
		l.outMu.Unlock()
		return
	}
	if st.has(ctlCloseRequested) && st.phase < phaseClosing {
		st.phase, st.reason, st.readPaused = phaseClosing, ReasonLocal, false
	}
	gen := st.gen
	var blocked, progress, more, ok bool
	if tc := l.tlsOf(st); tc != nil {
		blocked, progress, more, ok = l.writeTLS(st, tc, writable)
	} else {
		blocked, progress, more, ok = l.writePlain(st, writable)
	}
	if !ok {
		return // closed
	}
	if more {
		// The socket took all it was given in this flush's rounds and
		// more is ready: the next round of flushDirty (or the next pass)
		// goes on, so that one connection does not hold the loop.
		l.markDirty(st)
	}

	// What is left waits either for the socket — write interest, and the
	// write timeout for a slow consumer — or, behind a reply slot not yet
	// filled, for the application: then neither, and the idle timeout
	// governs as if nothing were queued.
	if blocked && st.queued.Load() > 0 {
		st.waitWrite = true
		if progress || st.timerList != timerWrite {
			l.setTimer(st, timerWrite)
		}
	} else {
		st.waitWrite = false
		if st.timerList != l.idleTimer() {
			l.setIdle(st)
		}
	}
	resume := false
	if st.readPaused && st.queued.Load() < l.lowWater {
		st.readPaused, resume = false, true
	}
	if paused := st.has(ctlUserPaused); paused != st.userPaused {
		st.userPaused, resume = paused, !paused
	}
	if resume && !st.readPaused && !st.userPaused {
		l.resumeReading(st)
		if st.gen != gen {
			return
		}
	}
	l.setInterest(st)
	if st.phase == phaseClosing && st.queued.Load() == 0 && !st.holdsUndelivered() {
		l.finishClose(st)
	}
}

// writePlain writes st's queued output with one writev per round. It
// returns whether the socket refused some (blocked), whether it took
// anything, and whether output is ready that the rounds left (more); ok is
// false if st closed.
func (l *loop) writePlain(st *connState, writable bool) (blocked, progress, more, ok bool) {
	blocked = st.waitWrite && !writable
	if l.spanOf == st {
		// Nothing was queued when the span began, so it goes first
		// (echo.go); the span exists only while nothing waits to write.
		var all bool
		if all, progress, ok = l.writeSpan(st); !ok {
			return false, false, false, false
		}
		if !all {
			return true, progress, false, true
		}
	}
	if st.queued.Load() == 0 && !st.has(ctlDirty) {
		// Nothing to write, and nothing to clear: a writer that queues
		// from now on marks the connection dirty and is flushed in turn.
		return blocked, progress, false, true
	}
	round := 0
	for ; round < writeRounds; round++ {
		l.outMu.Lock()
		st.clearCtl(ctlDirty) // this flush takes care of what was written so far
		var bufs [][]byte
		var total int
		if !blocked {
			bufs, total = l.gather(st)
		}
		l.outMu.Unlock()
		if total == 0 {
			break
		}
		n, err := l.wv.Writev(int(st.fd), bufs)
		clear(bufs)
		if err != nil && err != unix.EAGAIN {
			l.closeNow(st, reasonForError(err), err)
			return false, progress, false, false
		}
		if n > 0 {
			l.outMu.Lock()
			st.consumeOutput(n)
			l.outMu.Unlock()
			l.stats.bytesOut += uint64(n)
			progress = true
		}
		if blocked = n < total; blocked {
			break
		}
	}
	return blocked, progress, round == writeRounds, true
}

// gather lists the queued buffers for one writev, up to the first reply
// slot not yet filled; outMu must be held.
func (l *loop) gather(st *connState) (bufs [][]byte, total int) {
	bufs = l.vec[:0]
	off := int(st.outOff)
	for b := st.outHead; b != nil && b.B != nil && len(bufs) < cap(l.vec); b = b.Next {
		seg := b.B[off:]
		off = 0
		if len(seg) > 0 {
			bufs = append(bufs, seg)
			total += len(seg)
		}
	}
	return bufs, total
}

// consumeOutput drops n written bytes from the front of the queue and
// returns emptied buffers to the pool; outMu must be held.
func (st *connState) consumeOutput(n int) {
	st.queued.Add(-int64(n))
	for n > 0 {
		b := st.outHead
		left := len(b.B) - int(st.outOff)
		if n < left {
			st.outOff += int32(n)
			return
		}
		n -= left
		st.outHead, st.outOff = b.Next, 0
		if st.outHead == nil {
			st.outTail = nil
		}
		bufpool.Put(b)
	}
}
