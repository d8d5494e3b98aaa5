package loadgen

import (
	"fmt"

	"github.com/frameloop/frameloop/internal/poller"
	"golang.org/x/sys/unix"
)

// maxWritesPerPass bounds how long one connection keeps the worker when it
// has more to send than one write buffer: past it, the connection waits for
// the next pass (write interest armed) so that the others are served.
const maxWritesPerPass = 8

// queueWrite asks for c to be flushed at the end of this pass: all frames
// that became sendable in the pass then go out in one write.
func (w *worker) queueWrite(c *conn) {
	if !c.queued && c.state == stateOpen {
		c.queued = true
		w.queue = append(w.queue, c.index)
	}
}

func (w *worker) flushQueue() {
	for _, i := range w.queue {
		c := &w.conns[i]
		c.queued = false
		if c.state == stateOpen {
			w.flush(c)
		}
	}
	w.queue = w.queue[:0]
}

// frameLimit is one past the last frame c may have started by now.
func (w *worker) frameLimit(c *conn) uint64 {
	started := c.started()
	if !w.begun || w.now >= w.pl.sendUntil {
		return started // only the frame being written, if any, is finished
	}
	lim := c.expected + w.pipeline
	if w.openLoop {
		lim = min(lim, c.due)
	}
	if w.perConn > 0 {
		lim = min(lim, w.perConn)
	}
	return max(lim, started)
}

// flush writes what c may send now: the rest of a partly written frame, then
// new frames up to the limit, generated into the worker's write buffer.
// Bytes the socket does not take are simply regenerated next time.
func (w *worker) flush(c *conn) {
	limit := w.frameLimit(c)
	for range maxWritesPerPass {
		n := w.fill(c, limit)
		if n == 0 {
			w.wantWrite(c, false)
			return
		}
		t := now()
		m, err := writeFd(c.fd, w.wbuf[:n])
		if err != nil {
			switch err {
			case unix.EAGAIN:
				w.wantWrite(c, true)
			case unix.EINTR:
				continue
			default:
				w.fail(c, fmt.Errorf("write: %w", err))
			}
			return
		}
		w.advance(c, m, t)
		if m < n {
			w.wantWrite(c, true)
			return
		}
	}
	w.wantWrite(c, true)
}

// fill generates c's next bytes into the write buffer, from where the last
// write stopped to the end of frame limit-1 or of the buffer.
func (w *worker) fill(c *conn, limit uint64) int {
	buf := w.wbuf
	x := &w.wire
	n := 0
	seq, off := c.next, c.off
	for n < len(buf) && (off > 0 || seq < limit) {
		plen := w.sizes.of(c.id, seq)
		var k int
		if x.fast { // fillFrame's dispatch, which does not inline
			k = fillU32le(buf[n:], c.id, seq, plen, off)
		} else {
			k = x.fillAny(buf[n:], c.id, seq, plen, off)
		}
		n += k
		if off += k; off == x.headerLen(plen)+plen {
			seq, off = seq+1, 0
		}
	}
	return n
}

// advance accounts for m bytes written at time t, starting the latency clock
// of each frame whose first byte was among them.
func (w *worker) advance(c *conn, m int, t int64) {
	for m > 0 {
		plen := w.sizes.of(c.id, c.next)
		flen := w.wire.headerLen(plen) + plen
		if c.off == 0 {
			origin := t
			if w.openLoop {
				origin = w.intended(c.id, c.next)
				if t >= w.pl.recordFrom && t < w.pl.sendUntil {
					w.recordLag(t - origin)
				}
			}
			c.origins[c.next&c.mask] = origin
			w.inflight++
			w.st.sent++
		}
		k := min(m, flen-c.off)
		c.off += k
		m -= k
		if c.off == flen {
			c.next, c.off = c.next+1, 0
		}
	}
}

// wantWrite arms or drops write interest; read interest stays on throughout.
func (w *worker) wantWrite(c *conn, on bool) {
	in := poller.Read
	if on {
		in |= poller.Write
	}
	if in == c.interest {
		return
	}
	if err := w.p.Modify(c.fd, c.index, c.interest, in); err != nil {
		w.fail(c, err)
		return
	}
	c.interest = in
}

// intended is when frame k of connection id is due in open loop. Frames are
// spread evenly over time and connections: the global sequence g = id + k*conns
// is due at start + g/rate.
func (w *worker) intended(id uint32, k uint64) int64 {
	g := uint64(id) + k*w.totalConns
	return w.pl.start + int64(float64(g)*w.nsPerFrame)
}

// schedule makes due every frame whose intended time has come. The worker's
// frames come due in a fixed cyclic order over its connections, so a cursor
// finds them in O(1) each.
func (w *worker) schedule() {
	for w.schedAt <= w.now && w.schedAt < w.pl.sendUntil {
		c := &w.conns[w.schedIdx]
		c.due = w.schedK + 1
		w.queueWrite(c)
		if w.schedIdx++; w.schedIdx == len(w.conns) {
			w.schedIdx, w.schedK = 0, w.schedK+1
		}
		w.schedAt = w.intended(w.conns[w.schedIdx].id, w.schedK)
	}
}

// recordLag adds how late a frame was started, in nanoseconds after its
// intended time, to the send-lag histogram (open loop). Frames wait for
// the generator's pass to come round, and for a pipeline slot when the
// server is more than --pipeline frames behind on the connection.
func (w *worker) recordLag(ns int64) {
	us := (ns + 500) / 1000
	w.lag.RecordValue(min(max(us, 0), histMax))
}
