package frameloop

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
	"golang.org/x/sys/unix"
)

const (
	// listenerTag marks the listener's events; connection generations skip
	// it, so a stale event for a closed listener's descriptor number never
	// matches a connection.
	listenerTag = math.MaxUint32
	// acceptBatch bounds the accepts per readiness event, so that a flood
	// of connections cannot starve the loop's open ones.
	acceptBatch = 128
	minBackoff  = 5 * time.Millisecond
	maxBackoff  = time.Second
)

// listener is a loop's listening socket, if it has one, and why it is
// not being watched.
type listener struct {
	fd       int
	watched  bool
	atCap    bool          // paused: the server holds MaxConns connections
	backoff  time.Duration // nonzero while out of descriptors (an episode)
	retryAt  int64         // when to try accepting again after a resource error
	failures int           // resource errors in this episode
}

// admission counts connections across all loops, so that the connection
// cap is global. A slot is taken before accept and given back on close.
type admission struct {
	open   atomic.Int64
	max    int64
	resume func() // called when the count drops below max again
}

func (a *admission) acquire() bool {
	for {
		n := a.open.Load()
		if n >= a.max {
			return false
		}
		if a.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (a *admission) release() {
	if a.open.Add(-1) == a.max-1 {
		a.resume()
	}
}

// acceptReady accepts what the listener holds, never more connections than
// there are free slots.
func (l *loop) acceptReady() {
	for range acceptBatch {
		if !l.srv.adm.acquire() {
			l.pauseAtCap()
			return
		}
		fd, addr, err := l.acceptor.Accept(l.ln.fd)
		if err != nil {
			l.srv.adm.release()
			switch {
			case err == unix.EAGAIN:
				return
			case sock.IsTemporaryAcceptError(err):
				continue
			default:
				l.backoffAccept(err)
				return
			}
		}
		if l.ln.backoff != 0 {
			l.log.Info("accepting again", "failed_attempts", l.ln.failures)
			l.ln.backoff, l.ln.failures = 0, 0
		}
		l.srv.place(l, fd, addr)
	}
}

func (l *loop) watchListener(on bool) {
	if l.ln.fd < 0 || l.ln.watched == on {
		return
	}
	old, in := poller.Interest(0), poller.Read
	if !on {
		old, in = in, old
	}
	if err := l.p.Modify(l.ln.fd, listenerTag, old, in); err != nil {
		l.log.Error("changing listener interest failed", "err", err)
		return
	}
	l.ln.watched = on
}

// pauseAtCap stops watching the listener: the backlog holds new
// connections until a slot frees.
func (l *loop) pauseAtCap() {
	l.ln.atCap = true
	l.watchListener(false)
}

// resumeAfterCap watches the listener again if a slot is free. It runs on
// every loop after any loop frees a slot at the cap, whatever closed the
// connection: peer, timeout, oversize, error or shutdown.
func (l *loop) resumeAfterCap() {
	if !l.ln.atCap || l.srv.adm.open.Load() >= l.srv.adm.max {
		return
	}
	l.ln.atCap = false
	if l.ln.retryAt == 0 {
		l.watchListener(true)
	}
}

// backoffAccept pauses accepting after an error such as EMFILE. With a
// level-triggered poller the pending connection would report readiness
// again at once, so watching the listener would spin the CPU; instead the
// loop retries after a backoff that doubles up to maxBackoff. It logs once
// per episode, not once per attempt.
func (l *loop) backoffAccept(err error) {
	l.ln.failures++
	if l.ln.backoff == 0 {
		l.ln.backoff = minBackoff
		level := "out of resources"
		if !sock.IsResourceError(err) {
			level = "unexpected error"
		}
		l.log.Warn("accept failed, pausing accepts; open connections are still served",
			"err", err, "kind", level)
	} else {
		l.ln.backoff = min(2*l.ln.backoff, maxBackoff)
	}
	l.ln.retryAt = l.now + int64(l.ln.backoff)
	l.watchListener(false)
}

func (l *loop) resumeAfterBackoff() {
	if !l.ln.atCap {
		l.watchListener(true)
	}
}

// adoptHandoffs opens the connections another loop accepted for this one.
func (l *loop) adoptHandoffs() {
	l.outMu.Lock()
	batch := l.handoffs
	l.handoffs = nil
	l.outMu.Unlock()
	for _, h := range batch {
		if l.draining {
			sock.Close(h.fd)
			l.load.Add(-1)
			l.srv.adm.release()
			continue
		}
		l.open(h.fd, h.addr)
	}
}

func (l *loop) closeListener() {
	if l.ln.fd < 0 {
		return
	}
	l.p.Remove(l.ln.fd, 0)
	sock.Close(l.ln.fd)
	l.ln = listener{fd: -1}
	l.srv.listening.Done()
}

// beginShutdown stops accepting and starts draining: what has arrived is
// read and handled, replies are sent, and each connection closes once it
// has nothing left to send. Idle connections close at once.
func (l *loop) beginShutdown() {
	if l.draining {
		return
	}
	l.draining = true
	l.closeListener()
	for _, st := range l.conns {
		if st == nil {
			continue
		}
		switch st.phase {
		case phaseProxy:
			l.closeNow(st, ReasonShutdown, ErrServerClosed)
		case phaseOpen:
			l.drainOnShutdown(st)
		}
	}
}

// drainOnShutdown starts closing st for a shutdown. The frames already
// received are still answered: those the loop has read, and those the
// kernel holds for it, counted now, however long that takes within the
// shutdown timeout. What the client sends from now on is not read.
func (l *loop) drainOnShutdown(st *connState) {
	unread := sock.Unread(int(st.fd))
	// Idle — nothing to read, nothing queued, nothing the kernel still has
	// to send — closes at once. Otherwise a close could reset the peer and
	// destroy replies it has not read, so it goes the graceful way.
	if unread == 0 && st.queued.Load() == 0 && !st.readPaused && !st.waitWrite &&
		st.in == nil && sock.Unsent(int(st.fd)) == 0 {
		l.closeNow(st, ReasonShutdown, ErrServerClosed)
		return
	}
	if unread > 0 {
		if l.unread == nil {
			l.unread = make(map[*connState]int)
		}
		l.unread[st] = unread
	}
	l.startClosing(st, ReasonShutdown)
}

// readLimit is how much may be read from st now: everything, except while
// closing for a shutdown, when only what had arrived before it.
func (l *loop) readLimit(st *connState) int {
	if st.phase != phaseClosing {
		return math.MaxInt
	}
	return l.unread[st]
}

// countRead charges n bytes read to a closing connection's budget.
func (l *loop) countRead(st *connState, n int) {
	if st.phase != phaseClosing {
		return
	}
	if left := l.unread[st] - n; left > 0 {
		l.unread[st] = left
	} else {
		delete(l.unread, st)
	}
}
