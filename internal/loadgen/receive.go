package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/frameloop/frameloop/internal/framing"
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
		if c.hlen == 0 {
			if w.wire.fast && c.hdrN == 0 && len(b) >= 4 {
				// The default format, its header in one piece: the common case.
				v := binary.LittleEndian.Uint32(b)
				if v > maxSize {
					w.badHeader(c, b, framing.ErrTooLarge)
					return
				}
				c.hlen, c.plen, c.hbad = 4, int(v), false
				b = b[4:]
			} else if b = w.header(c, b); c.hlen == 0 {
				return
			}
			c.pgot, c.bad, c.stale = 0, false, false
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

// header takes in the header of the next reply from b, where it may be
// split over several reads: the part seen so far waits in c.hdr. Once the
// header is complete it sets c.hlen and c.plen, keeps the prefix in c.hdr
// and returns the bytes after the header; until then it returns nil, having
// kept all of b.
func (w *worker) header(c *conn, b []byte) []byte {
	x := &w.wire
	src, had := b, c.hdrN
	if had > 0 {
		k := copy(c.hdr[had:x.maxHdr], b)
		src = c.hdr[:had+k]
	}
	h, plen, err := x.decodeHeader(src)
	if err != nil {
		w.badHeader(c, src, err)
		return nil
	}
	if h == 0 {
		// Incomplete, so shorter than the largest header: b fitted in.
		if had == 0 {
			c.hdrN = copy(c.hdr[:], b)
		} else {
			c.hdrN = len(src)
		}
		return nil
	}
	if had == 0 {
		copy(c.hdr[:x.off], b)
	}
	c.hdrN, c.hlen, c.plen = 0, h, plen
	// The length's value is checked once the stamp has named the frame, its
	// encoding here: a varint longer than the minimal one the sender wrote
	// carries the same value in other bytes.
	c.hbad = x.varint && h != x.headerLen(plen)
	return b[h-had:]
}

// badHeader ends c on a reply header that is no header of this run: a
// length beyond any frame sent (following it could mean waiting for
// gigabytes) or a malformed one. The stream is lost.
func (w *worker) badHeader(c *conn, hdr []byte, err error) {
	w.st.mismatches++
	if v, ok := w.wire.f.LengthValue(hdr); ok && errors.Is(err, framing.ErrTooLarge) {
		if w.wire.adjust == 0 {
			err = fmt.Errorf("a reply announced %d payload bytes, more than any frame sent", v)
		} else {
			err = fmt.Errorf("a reply's length field holds %d (adjust %+d), more than any frame sent", v, w.wire.adjust)
		}
	} else {
		err = fmt.Errorf("a reply's header is malformed (%s framing): %v", w.wire.name, err)
	}
	w.fail(c, err)
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
			if w.wire.off > 0 {
				w.checkPrefix(c)
			}
			return
		}
	}
	if c.plen != w.sizes.of(c.id, c.seq) || !stampMatches(c.stamp[:min(c.plen, stampSize)], c.id, c.seq) {
		c.bad = true
	}
	c.h = patternSeed(c.id, c.seq)
	if w.wire.off > 0 {
		w.checkPrefix(c)
	}
}

// checkPrefix compares the reply's prefix bytes with those of frame c.seq.
func (w *worker) checkPrefix(c *conn) {
	if x := &w.wire; !x.prefixMatches(c.hdr[:x.off], c.id, c.seq) {
		c.hbad = true
	}
}

// finish accounts for a complete reply received at t.
func (w *worker) finish(c *conn, t int64) {
	hlen := c.hlen
	c.hlen = 0
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
	if c.bad || c.hbad {
		w.st.mismatches++
	} else {
		w.st.replies++
		if t >= w.pl.recordFrom && t < w.pl.sendUntil {
			w.record(t - c.origins[c.seq&c.mask])
			w.st.frames++
			w.st.bytes += int64(hlen + c.plen)
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
