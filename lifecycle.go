package frameloop

import (
	"context"
	"errors"
	"log/slog"

	"github.com/frameloop/frameloop/internal/bufpool"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
)

var errInvalidDescriptor = errors.New("frameloop: poller reports the descriptor invalid")

// open starts serving a freshly accepted descriptor.
func (l *loop) open(fd int, addr sock.Addr) {
	if l.cfg.endpoint.Network != "unix" {
		// Replies are already batched per pass; Nagle would only delay them.
		sock.SetNoDelay(fd)
	}
	st := l.newState()
	st.fd = int32(fd)
	st.phase = phaseOpen
	if l.cfg.ProxyProtocol {
		st.phase = phaseProxy
	}
	c := &Conn{st: st, gen: st.gen, addr: addr}
	st.conn = c
	if err := l.p.Add(fd, st.gen, poller.Read); err != nil {
		l.log.Error("watching a new connection failed", "err", err)
		sock.Close(fd)
		st.conn, st.fd, st.phase = nil, -1, phaseFree
		l.free = append(l.free, st)
		l.load.Add(-1)
		l.srv.adm.release()
		return
	}
	st.interest = poller.Read
	if fd >= len(l.conns) {
		l.growTable(fd)
	}
	l.conns[fd] = st
	l.nconns++
	l.stats.accepted++
	l.setIdle(st)
	if st.phase == phaseOpen {
		l.greet(st)
	}
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
	l.h.OnOpen(st.conn)
}

func (l *loop) newState() *connState {
	if n := len(l.free); n > 0 {
		st := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		return st
	}
	return &connState{l: l, gen: 1}
}

// startClosing stops reading from st; it closes once its output is sent.
func (l *loop) startClosing(st *connState, reason CloseReason) {
	if st.phase >= phaseClosing {
		return
	}
	st.phase = phaseClosing
	st.reason = reason
	l.setInterest(st)
	l.markDirty(st)
}

// finishClose ends a closing connection whose output is all sent. When
// the peer may still be sending, closing now would make the kernel answer
// with a reset, and a reset can destroy the replies the peer has not read
// yet; so the write side is shut first and input is discarded until the
// peer closes too, or lingerTimeout passes.
func (l *loop) finishClose(st *connState) {
	if st.in != nil {
		bufpool.Put(st.in)
		st.in = nil
	}
	if st.eof {
		l.closeNow(st, st.reason, st.reason.err())
		return
	}
	if err := sock.ShutdownWrite(int(st.fd)); err != nil {
		l.closeNow(st, st.reason, st.reason.err())
		return
	}
	st.phase = phaseLinger
	l.setTimer(st, timerLinger)
	l.setInterest(st)
}

// closeNow closes st at once and frees its slot.
func (l *loop) closeNow(st *connState, reason CloseReason, err error) {
	fd := int(st.fd)
	l.p.Remove(fd, st.interest)
	sock.Close(fd)
	st.timer.Remove()
	st.timerList = timerNone
	l.conns[fd] = nil
	delete(l.unread, st)
	if st.in != nil {
		bufpool.Put(st.in)
		st.in = nil
	}
	l.outMu.Lock()
	st.gen++
	if st.gen == 0 || st.gen == listenerTag {
		st.gen = 1
	}
	st.releaseOutput()
	st.dirty = false
	st.closeRequested.Store(false)
	l.outMu.Unlock()

	c := st.conn
	wasOpen := st.phase != phaseProxy
	st.conn = nil
	st.fd = -1
	st.interest = 0
	st.phase = phaseFree
	st.readPaused, st.eof, st.waitWrite = false, false, false
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
		l.h.OnClose(c, err)
	}
}

// setInterest tells the poller what st now waits for. Write interest is
// armed only while output waits for the socket: a writable socket is
// almost always writable, and watching it for nothing would spin.
func (l *loop) setInterest(st *connState) {
	var want poller.Interest
	if !st.readPaused && (st.phase != phaseClosing || l.unread[st] > 0) {
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
// nothing is queued, write while output waits, linger while lingering.
func (l *loop) setTimer(st *connState, which timerList) {
	// A deadline counts from now, not from when the pass began: a long
	// pass must not make a timeout fire early. The clock only moves
	// forward, so appending keeps the lists sorted.
	l.now = l.clock()
	switch which {
	case timerIdle:
		if l.cfg.IdleTimeout > 0 {
			l.idle.Touch(&st.timer, l.now)
			st.timerList = timerIdle
			return
		}
	case timerWrite:
		if l.cfg.WriteTimeout > 0 {
			l.write.Touch(&st.timer, l.now)
			st.timerList = timerWrite
			return
		}
	case timerLinger:
		l.linger.Touch(&st.timer, l.now)
		st.timerList = timerLinger
		return
	}
	st.timer.Remove()
	st.timerList = timerNone
}

func (l *loop) setIdle(st *connState) { l.setTimer(st, timerIdle) }
