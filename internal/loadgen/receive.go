package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/frameloop/frameloop/internal/frame"
	"golang.org/x/sys/unix"
)

var errServerClosed = errors.New("the server closed the connection")

func (w *worker) onReadable(c *conn) {
	n, err := readFd(c.fd, w.rbuf)
	if err != nil {
		if err != unix.EAGAIN && err != unix.EINTR {
			w.fail(c, fmt.Errorf("read: %w", err))
		}
		return // level-triggered: a read still pending comes back next pass
	}
	if n == 0 {
		w.fail(c, errServerClosed)
		return
	}
	w.consume(c, w.rbuf[:n], now())
}

// consume checks the reply bytes b, received at t, against the frames c has
// in flight, carrying a reply cut anywhere over to the next read.
func (w *worker) consume(c *conn, b []byte, t int64) {
	for len(b) > 0 {
		if c.hdrN < frame.HeaderSize {
			if c.hdrN == 0 && len(b) >= frame.HeaderSize {
				c.plen = int(frame.Length(b))
				b = b[frame.HeaderSize:]
			} else {
				k := copy(c.hdr[c.hdrN:], b)
				c.hdrN += k
				b = b[k:]
				if c.hdrN < frame.HeaderSize {
					return
				}
				c.plen = int(frame.Length(c.hdr[:]))
			}
			c.hdrN = frame.HeaderSize
			c.pgot, c.bad, c.stale = 0, false, false
			if c.plen > maxSize {
				// No frame of this run was that large, and following the length
				// could mean waiting for gigabytes: the stream is lost.
				w.st.mismatches++
				w.fail(c, fmt.Errorf("a reply announced %d payload bytes, more than any frame sent", c.plen))
				return
			}
			if c.plen == 0 {
				w.identify(c)
				w.finish(c, t)
				continue
			}
		}
		if stampLen := min(c.plen, stampSize); c.pgot < stampLen {
			k := copy(c.stamp[c.pgot:stampLen], b)
			c.pgot += k
			b = b[k:]
			if c.pgot < stampLen {
				return
			}
			w.identify(c)
		}
		if c.pgot < c.plen {
			k := min(len(b), c.plen-c.pgot)
			if !c.bad && !checkPattern(b[:k], c.h, c.pgot-stampSize) {
				c.bad = true
			}
			c.pgot += k
			b = b[k:]
			if c.pgot < c.plen {
				return
			}
		}
		w.finish(c, t)
	}
}

// minResync is the shortest payload whose stamp may name a frame other than
// the oldest in flight: it must carry enough pattern (32 bits) after the
// stamp to confirm that frame, or a damaged stamp could pass for another.
const minResync = stampSize + 4

// identify decides, once a reply's length and stamp are in, which frame it
// is checked against. Normally that is the oldest frame in flight. A stamp
// naming another frame in flight, with that frame's length, makes that frame
// the candidate instead, and finish settles it once the pattern has
// confirmed it or not: a later frame means the server dropped the replies in
// between (they are lost, and checking resumes there instead of failing
// every reply after); an earlier one is a duplicate or a reply that
// overtook, a mismatch that answers nothing.
func (w *worker) identify(c *conn) {
	started := c.started()
	c.seq, c.alt = c.expected, false
	if c.expected >= started { // nothing is in flight
		c.stale, c.bad = true, true
		return
	}
	if c.plen >= minResync {
		sid := binary.LittleEndian.Uint32(c.stamp[0:])
		sseq := binary.LittleEndian.Uint64(c.stamp[4:])
		if sid == c.id && sseq != c.expected && sseq < started && c.plen == w.sizes.of(c.id, sseq) {
			c.seq, c.alt = sseq, true
			c.h = patternSeed(c.id, sseq)
			return
		}
	}
	if c.plen != w.sizes.of(c.id, c.seq) || !stampMatches(c.stamp[:min(c.plen, stampSize)], c.id, c.seq) {
		c.bad = true
	}
	c.h = patternSeed(c.id, c.seq)
}

// finish accounts for a complete reply received at t.
func (w *worker) finish(c *conn, t int64) {
	c.hdrN = 0
	if c.alt {
		switch {
		case c.bad: // the stamp was damaged: a wrong reply to the oldest frame
			c.seq = c.expected
		case c.seq < c.expected: // an intact copy of a frame answered before
			c.stale = true
		default: // the replies in between never came
			skipped := c.seq - c.expected
			w.st.lost += int64(skipped)
			w.inflight -= int64(skipped)
			c.expected = c.seq
		}
	}
	if c.stale {
		w.st.mismatches++
		return
	}
	c.expected = c.seq + 1
	w.inflight--
	if c.bad {
		w.st.mismatches++
	} else {
		w.st.replies++
		if t >= w.pl.recordFrom && t < w.pl.sendUntil {
			w.record(t - c.origins[c.seq&c.mask])
			w.st.frames++
			w.st.bytes += int64(frame.HeaderSize + c.plen)
		}
	}
	if w.perConn > 0 && c.expected >= w.perConn && !c.done {
		c.done = true
		w.st.resolved++
	}
	w.queueWrite(c) // a pipeline slot is free
}

// record adds one latency, in nanoseconds, to the histogram, which counts
// microseconds from 1 µs to 60 s.
func (w *worker) record(ns int64) {
	us := (ns + 500) / 1000
	w.hist.RecordValue(min(max(us, histMin), histMax))
}
