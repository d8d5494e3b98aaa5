package frameloop

import (
	"time"

	"github.com/frameloop/frameloop/internal/sock"
)

// The graceful shutdown of one loop. The contract (docs/behaviour.md §7):
// every frame a client finished sending before the shutdown is answered,
// completely, then the client reads the end of the stream; input keeps
// being read and answered while it keeps arriving.
//
// Counting what the kernel holds when the shutdown begins is not enough:
// bytes a client has sent may still sit in its own send buffer, held back
// by our receive window, and arrive only as we read. So a connection is
// served as usual until its client goes quiet — nothing unread, and no
// byte arrived for drainQuiet. In order, then: stop reading it; wait for
// its work in flight (reply slots not yet filled); flush; close,
// gracefully (finishClose). Shutdown's context bounds the whole drain.

// drainQuiet is how long a draining connection must stay silent before it
// is closed: enough for bytes already in flight to arrive.
const drainQuiet = 100 * time.Millisecond

// backlogBatches bounds the accepting a shutdown does before closing the
// listener (acceptBatch each): the kernel's backlog, not a flood that
// keeps arriving.
const backlogBatches = 64

// beginShutdown stops accepting and starts draining.
func (l *loop) beginShutdown() {
	if l.draining {
		return
	}
	l.draining = true
	// Connections the kernel completed before the shutdown are clients
	// like the others, which may have sent frames already: closing the
	// listener would reset them. They are accepted and drained; what
	// arrives after the listener closes is refused.
	if l.ln.fd >= 0 && l.ln.watched {
		for range backlogBatches {
			if !l.acceptSome() {
				break
			}
		}
	}
	l.closeListener()
	for _, st := range l.conns {
		if st != nil {
			l.guard(st, (*loop).drainConn)
		}
	}
}

// drainConn starts draining st. A connection with nothing in flight either
// way closes at once; one waiting for its PROXY header has sent no frame;
// one in a TLS handshake finishes it first. Connections already closing
// finish as they were.
func (l *loop) drainConn(st *connState) {
	switch st.phase {
	case phaseProxy:
		l.closeNow(st, ReasonShutdown, ErrServerClosed)
	case phaseHandshake:
		// The client may consider the handshake done and have sent frames
		// already: it finishes (bounded by its timeout), then drains.
	case phaseOpen:
		fd := int(st.fd)
		if st.queued.Load() == 0 && st.in == nil && !st.readPaused && !st.waitWrite &&
			sock.Unread(fd) == 0 && sock.Unsent(fd) == 0 {
			l.closeNow(st, ReasonShutdown, ErrServerClosed)
			return
		}
		if st.timerList != timerWrite {
			l.setIdle(st) // the quiet list, now
		}
	}
}

// quietExpired stops reading a draining connection whose client has been
// silent for drainQuiet — unless bytes are waiting to be read after all
// (the loop has not got to them yet, or reading is paused), in which case
// it waits on. Closing then waits for the work in flight (reply slots not
// yet filled), flushes, and closes gracefully.
func (l *loop) quietExpired(st *connState) {
	if st.phase == phaseOpen && sock.Unread(int(st.fd)) == 0 {
		l.startClosing(st, ReasonShutdown)
		return
	}
	l.setIdle(st)
}

// heard notes that bytes arrived on st: while draining, they restart its
// quiet period.
func (l *loop) heard(st *connState) {
	if l.draining && st.timerList == timerQuiet {
		l.setTimer(st, timerQuiet)
	}
}

// tryStop reports whether a drained loop may stop, and if so marks it
// stopped, under outMu: a connection handed to the loop before that is
// adopted and drained first; one handed after is kept by the loop that
// accepted it (Server.place).
func (l *loop) tryStop() bool {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if len(l.handoffs) > 0 {
		return false
	}
	l.stopped = true
	return true
}
