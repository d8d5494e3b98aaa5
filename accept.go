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
	backoff  time.Duration // nonzero while accepting fails (an episode)
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
func (l *loop) acceptReady() { l.acceptSome() }

// acceptSome is acceptReady; it reports whether it stopped at the batch
// limit, with more connections perhaps waiting.
func (l *loop) acceptSome() (more bool) {
	for range acceptBatch {
		if !l.srv.adm.acquire() {
			l.pauseAtCap()
			return false
		}
		fd, addr, err := l.accept(l.ln.fd)
		if err != nil {
			l.srv.adm.release()
			switch {
			case err == unix.EAGAIN:
				return false
			case sock.IsResourceError(err):
				l.backoffAccept(err)
				return false
			case sock.IsConnectionAcceptError(err):
				// That one connection failed (aborted, refused by a
				// firewall rule, its network gone), not the listener:
				// take the next.
				if err != unix.ECONNABORTED && err != unix.EINTR && l.acceptWarn.allow(l.now) {
					l.log.Warn("accept failed for one connection", "err", err,
						"suppressed", l.acceptWarn.takeSuppressed())
				}
				continue
			default:
				// The listener itself is in trouble (EBADF, EINVAL, ...):
				// retrying at once would spin.
				l.backoffAccept(err)
				return false
			}
		}
		if l.ln.backoff != 0 {
			l.log.Info("accepting again", "failed_attempts", l.ln.failures)
			l.ln.backoff, l.ln.failures = 0, 0
		}
		l.srv.place(l, fd, addr)
	}
	return true
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
			level = "listener error"
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
// They are taken one at a time, so that a panic in one's OnOpen leaves the
// others queued, not lost.
func (l *loop) adoptHandoffs() {
	for {
		l.outMu.Lock()
		if len(l.handoffs) == 0 {
			l.outMu.Unlock()
			return
		}
		h := l.handoffs[0]
		l.handoffs = l.handoffs[1:]
		l.outMu.Unlock()
		l.adopt(h)
	}
}

// adopt opens a handed-off connection. One accepted before a shutdown
// reached this loop is drained like the others, not dropped: its client
// may have sent frames already.
func (l *loop) adopt(h handoff) {
	defer l.contain()
	st := l.open(h.fd, h.addr)
	if st != nil && l.draining && st.phase != phaseFree {
		l.drainConn(st)
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
