package frameloop

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/frameloop/frameloop/internal/deadline"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
)

var errInvalidDescriptor = errors.New("frameloop: poller reports the descriptor invalid")

const (
	// lingerPoll is how often a lingering connection looks whether the
	// peer has received everything; lingerStallPolls looks in a row
	// without progress (lingerTimeout) end the linger.
	lingerPoll       = 50 * time.Millisecond
	lingerStallPolls = int(lingerTimeout / lingerPoll)
	// slabStates is how many states are allocated at once: one allocation
	// of many, so that a state costs its size and not its size class.
	slabStates = 64
)

// open starts serving a freshly accepted descriptor and returns its state,
// or nil if the poller refused it.
func (l *loop) open(fd int, addr sock.Addr) *connState {
	if l.cfg.endpoint.Network != "unix" {
		// Replies are already batched per pass; Nagle would only delay them.
		sock.SetNoDelay(fd)
	}
	st := l.newState()
	l.outMu.Lock()
	st.gen = l.nextGen()
	l.outMu.Unlock()
	st.fd = int32(fd)
	st.phase = phaseOpen
	if l.cfg.ProxyProtocol {
		st.phase = phaseProxy // then TLS, if any (proxy.go)
	}
	c := &Conn{st: st, gen: st.gen, addr: addr}
	st.conn = c
	if err := l.p.Add(fd, st.gen, poller.Read); err != nil {
		l.log.Error("watching a new connection failed", "err", err)
		sock.Close(fd)
		l.outMu.Lock()
		st.gen = 0
		l.outMu.Unlock()
		st.conn, st.fd, st.phase = nil, -1, phaseFree
		l.free = append(l.free, st)
		l.load.Add(-1)
		l.srv.adm.release()
		return nil
	}
	st.interest = poller.Read
	if fd >= len(l.conns) {
		l.growTable(fd)
	}
	l.conns[fd] = st
	l.nconns++
	l.stats.accepted++
	l.setIdle(st)
	switch {
	case st.phase == phaseProxy:
	case l.cfg.TLS != nil:
		l.startTLS(st)
	default:
		l.greet(st)
	}
	return st
}

// growTable makes room for descriptor fd. The first table covers every
// descriptor the process may open, up to 64Ki: memory the kernel maps only
// as slots are written, so it costs 8 bytes per connection and leaves no
// garbage behind. Beyond, it doubles (append's gentler growth for large
// slices would leave several tables' worth of garbage).
func (l *loop) growTable(fd int) {
	size := max(2*len(l.conns), fd+1)
	if len(l.conns) == 0 {
		size = max(size, min(sock.DescriptorLimit(), 1<<16))
	}
	grown := make([]*connState, size)
	copy(grown, l.conns)
	l.conns = grown
}

// greet reports a connection ready to serve to the handler.
func (l *loop) greet(st *connState) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("connection opened", "remote", st.conn.addr.String(), "fd", st.fd)
	}
	l.callOpen(st)
	if st.has(ctlCloseRequested) {
		// Closed from OnOpen: no frame is delivered, not even those that
		// came with the PROXY header.
		l.startClosing(st, ReasonLocal)
	}
}

// newState takes a free state, allocating a slab of them when none is
// left. States are never given back to the garbage collector: a server
// that once held N connections will hold N again.
func (l *loop) newState() *connState {
	if len(l.free) == 0 {
		slab := make([]connState, slabStates)
		for i := range slab {
			slab[i].l = l
			slab[i].fd = -1
			l.free = append(l.free, &slab[len(slab)-1-i])
		}
	}
	n := len(l.free)
	st := l.free[n-1]
	l.free[n-1] = nil
	l.free = l.free[:n-1]
	return st
}

// startClosing stops reading from st; it closes once its output is sent.
func (l *loop) startClosing(st *connState, reason CloseReason) {
	if st.phase >= phaseClosing {
		return
	}
	st.phase = phaseClosing
	st.reason = reason
	if reason != ReasonPeerClosed {
		// No frame will be delivered any more: nothing to pause reading
		// for. (After the peer's EOF, the frames stashed while paused
		// still are.)
		st.readPaused = false
	}
	if st.memPaused {
		st.memPaused = false
		l.memWaiting.Add(-1)
	}
	l.setInterest(st)
	l.outMu.Lock()
	st.setCtl(ctlClosing)
	l.markDirtyLocked(st)
	l.outMu.Unlock()
}

// abort closes st after its handler panicked: no frame is delivered any
// more, what was already written is still sent.
func (l *loop) abort(st *connState, reason CloseReason) {
	l.dropIn(st)
	if st.phase == phaseClosing {
		st.reason = reason
	}
	l.startClosing(st, reason)
}

// finishClose ends a closing connection whose output is all sent. When
// the peer may still be sending, closing now would make the kernel answer
// with a reset, and a reset can destroy the replies the peer has not read
// yet; so the write side is shut first — the peer reads the replies, then
// the end of the stream — and the connection lingers, discarding input,
// until the peer closes too or has acknowledged every byte, or the bytes
// stop moving for lingerTimeout.
func (l *loop) finishClose(st *connState) {
	l.dropIn(st)
	if tc := l.tlsOf(st); tc != nil && !tc.notified {
		// close_notify goes after the last reply; the flush that sends it
		// finishes the close.
		l.closeNotify(st, tc)
		if st.queued.Load() > 0 {
			l.markDirty(st)
			return
		}
	}
	if st.eof {
		l.closeNow(st, st.reason, st.reason.err())
		return
	}
	l.outMu.Lock()
	st.setCtl(ctlShut)
	l.outMu.Unlock()
	if err := sock.ShutdownWrite(int(st.fd)); err != nil {
		l.closeNow(st, st.reason, st.reason.err())
		return
	}
	st.phase = phaseLinger
	st.lingerUnsent, st.lingerStalls = int32(sock.Unsent(int(st.fd))), 0
	l.setTimer(st, timerLinger)
	l.setInterest(st)
}

// lingerExpired looks at a lingering connection again: once the peer has
// acknowledged everything, closing cannot destroy a reply (where the
// platform cannot tell, only the stall limit ends the linger).
func (l *loop) lingerExpired(st *connState) {
	unsent := sock.Unsent(int(st.fd))
	switch {
	case unsent == 0:
		l.closeNow(st, st.reason, st.reason.err())
		return
	case unsent > 0 && unsent < int(st.lingerUnsent):
		st.lingerUnsent, st.lingerStalls = int32(unsent), 0
	default:
		st.lingerStalls++
		if int(st.lingerStalls) >= lingerStallPolls {
			l.closeNow(st, st.reason, st.reason.err())
			return
		}
	}
	l.setTimer(st, timerLinger)
}

// closeNow closes st at once and frees its slot.
func (l *loop) closeNow(st *connState, reason CloseReason, err error) {
	fd := int(st.fd)
	l.dropSpan(st)
	l.dropTLS(st, reason, err) // a failure's alert goes out before the close
	l.p.Remove(fd, st.interest)
	sock.Close(fd)
	st.timer.Remove()
	st.timerList = timerNone
	l.conns[fd] = nil
	l.dropIn(st)
	if st.memPaused {
		l.memWaiting.Add(-1)
	}
	l.outMu.Lock()
	st.gen = 0
	st.releaseOutput()
	st.ctl.Store(0)
	st.conn.closedLocked()
	l.outMu.Unlock()

	c := st.conn
	wasOpen := st.phase != phaseProxy && st.phase != phaseHandshake
	st.conn = nil
	st.fd = -1
	st.interest = 0
	st.phase = phaseFree
	st.readPaused, st.memPaused, st.userPaused, st.eof, st.waitWrite = false, false, false, false, false
	st.idleIdx = 0
	st.reason = 0
	l.free = append(l.free, st)
	l.nconns--
	l.load.Add(-1)
	l.stats.closed[reason]++
	l.srv.adm.release()
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("connection closed", "remote", c.addr.String(), "reason", reason.String(), "err", err)
	}
	if wasOpen {
		l.callClose(c, err)
	}
}

// setInterest tells the poller what st now waits for. Write interest is
// armed only while output waits for the socket: a writable socket is
// almost always writable, and watching it for nothing would spin.
func (l *loop) setInterest(st *connState) {
	var want poller.Interest
	if !st.readPaused && !st.memPaused && !st.userPaused && st.phase != phaseClosing && l.tlsMayRead(st) {
		want |= poller.Read
	}
	if st.waitWrite {
		want |= poller.Write
	}
	if want == st.interest {
		return
	}
	if err := l.p.Modify(int(st.fd), st.gen, st.interest, want); err != nil {
		l.log.Error("changing interest failed", "err", err)
	}
	st.interest = want
}

// setTimer puts st in the deadline list that now governs it: idle while
// nothing is queued (quiet while the server drains), write while output
// waits, linger while lingering.
func (l *loop) setTimer(st *connState, which timerList) {
	if which == timerIdle && l.draining {
		which = timerQuiet
	}
	var list *deadline.List
	switch which {
	case timerIdle:
		list = l.idleList(st)
	case timerQuiet:
		list = &l.quiet
	case timerWrite:
		if l.cfg.WriteTimeout > 0 {
			list = &l.write
		}
	case timerLinger:
		list = &l.linger
	case timerHandshake:
		list = &l.handshake
	}
	if list == nil {
		st.timer.Remove()
		st.timerList = timerNone
		return
	}
	// A deadline counts from now, not from when the pass began: a long
	// pass must not make a timeout fire early. The clock only moves
	// forward, so appending keeps the lists sorted. (Read only here: with
	// no timeout to arm, a flush reads no clock.)
	l.now = l.clock()
	list.Touch(&st.timer, l.now)
	st.timerList = which
}

func (l *loop) setIdle(st *connState) { l.setTimer(st, timerIdle) }

// idleTimer is the list setIdle puts a connection in: idle, or quiet
// while the server drains.
func (l *loop) idleTimer() timerList {
	if l.draining {
		return timerQuiet
	}
	return timerIdle
}
