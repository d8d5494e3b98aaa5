package frameloop

import (
	"errors"

	"github.com/frameloop/frameloop/internal/bufpool"
)

// Reply slots: a place in a connection's output order, reserved when a
// request arrives and filled later from any goroutine. Protocols that
// answer in request order (Kafka, Redis, HTTP/1.1, most RPC) can hand slow
// requests to workers and still answer in order, without a goroutine or a
// queue per connection.
//
// A slot is a placeholder node in the connection's output chain: a buffer
// whose bytes are nil until filled. The flush writes up to the first
// unfilled placeholder and stops; what was written after it waits, in
// order, and goes out as soon as it is filled. Each unfilled slot counts
// slotCharge bytes against the connection's output: many unfilled slots
// pass the high-water mark, so reading pauses on its own while the
// workers catch up, and Reserve fails with ErrBackpressure at MaxQueued.

// slotCharge is what an unfilled slot counts against a connection's
// queued output.
const slotCharge = 512

// ErrReplyUsed is returned when a Reply is filled or cancelled twice, or
// is the zero Reply.
var ErrReplyUsed = errors.New("frameloop: reply already filled or cancelled")

// Reply is a place reserved in a connection's output order (Conn.Reserve).
// Fill it exactly once, from any goroutine, with Write, WriteFrame,
// WriteRaw, or Cancel for no reply. It is a small value: pass it to the
// worker that computes the answer.
type Reply struct {
	s   *slot
	gen uint32
}

// slot is the loop's record of an unfilled Reply. Slots are recycled per
// loop; gen changes with each use, so that a Reply already used, or one
// whose connection closed, is recognised.
type slot struct {
	l    *loop
	c    *Conn
	node *bufpool.Buf // the placeholder in c's output chain
	gen  uint32
}

// Reserve reserves the place of the next reply in the connection's output
// order: frames written after it, by Write or other replies, are sent
// after it. It fails with ErrClosed once the connection is closed or
// Close was called, and with ErrBackpressure when the connection's output
// holds too much already (Config.MaxQueued): a handler can then pause
// reading, or close. To keep a connection open for work without a reply
// (a shutdown waits for it), reserve and Cancel when done.
func (c *Conn) Reserve() (Reply, error) {
	st := c.st
	l := st.l
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if st.gen != c.gen || st.has(ctlCloseRequested|ctlShut) {
		return Reply{}, ErrClosed
	}
	if st.queued.Load()+slotCharge > l.maxQueued {
		l.shared.backpressured++
		return Reply{}, ErrBackpressure
	}
	s := l.takeSlotLocked()
	s.c = c
	s.node = l.takeWrapperLocked()
	st.linkLocked(s.node)
	st.pending++
	st.queued.Add(slotCharge)
	return Reply{s: s, gen: s.gen}, nil
}

// Write fills the reply with a frame carrying body, as Conn.Write would.
// It returns ErrClosed if the connection closed meanwhile (nothing is
// queued then), ErrReplyUsed if the reply was filled already. A fill is
// never refused for room: the room was granted by Reserve.
func (r Reply) Write(body []byte) error {
	s := r.s
	if s == nil {
		return ErrReplyUsed
	}
	hdr, err := s.l.outFormat.HeaderLen(len(body))
	if err != nil {
		return ErrTooLarge
	}
	return r.fill(hdr+len(body), func(b []byte) { s.l.outFormat.PutHeader(b, nil, len(body)); copy(b[hdr:], body) })
}

// WriteFrame fills the reply with a frame of the given prefix (exactly
// Framing.Offset bytes) and body, as Conn.WriteFrame would.
func (r Reply) WriteFrame(prefix, body []byte) error {
	s := r.s
	if s == nil {
		return ErrReplyUsed
	}
	if prefix == nil || len(prefix) != s.l.format.Offset() {
		return ErrBadPrefix
	}
	hdr, err := s.l.outFormat.HeaderLen(len(body))
	if err != nil {
		return ErrTooLarge
	}
	return r.fill(hdr+len(body), func(b []byte) { s.l.outFormat.PutHeader(b, prefix, len(body)); copy(b[hdr:], body) })
}

// WriteRaw fills the reply with bytes that are one whole frame, as
// Conn.WriteRaw would.
func (r Reply) WriteRaw(frame []byte) error {
	s := r.s
	if s == nil {
		return ErrReplyUsed
	}
	if n, _, _, err := s.l.outFormat.Next(frame); err != nil || n != len(frame) {
		return ErrBadFrame
	}
	return r.fill(len(frame), func(b []byte) { copy(b, frame) })
}

// Cancel gives the place up: nothing is sent for it, and what waits behind
// it goes out.
func (r Reply) Cancel() error {
	if r.s == nil {
		return ErrReplyUsed
	}
	return r.fill(0, nil)
}

// fill puts size bytes, written by put, in the reply's place.
func (r Reply) fill(size int, put func([]byte)) error {
	s := r.s
	l := s.l
	if int64(size) > l.maxQueued {
		return ErrTooLarge
	}
	l.outMu.Lock()
	if s.gen != r.gen {
		l.outMu.Unlock()
		return ErrReplyUsed
	}
	c, node := s.c, s.node
	l.releaseSlotLocked(s)
	st := c.st
	if st.gen != c.gen || st.has(ctlShut) {
		// Closed, or closing with its write side shut: its output was
		// dropped, the placeholder with it.
		l.outMu.Unlock()
		return ErrClosed
	}
	if size == 0 {
		node.B = emptyReply
	} else {
		b := bufpool.Get(size)
		put(b.B[:size])
		node.B, b.B = b.B[:size], nil
		l.wrappers = append(l.wrappers, b) // the empty wrapper serves the next slot
	}
	st.pending--
	return st.queuedLocked(size - slotCharge)
}

// emptyReply fills a cancelled slot: not nil (nil marks a placeholder),
// but nothing to send.
var emptyReply = []byte{}

// takeSlotLocked returns a free slot; outMu must be held.
func (l *loop) takeSlotLocked() *slot {
	if n := len(l.slots); n > 0 {
		s := l.slots[n-1]
		l.slots = l.slots[:n-1]
		return s
	}
	return &slot{l: l, gen: 1}
}

// releaseSlotLocked ends a slot's use and keeps it for the next; outMu
// must be held.
func (l *loop) releaseSlotLocked(s *slot) {
	s.gen++
	s.c, s.node = nil, nil
	l.slots = append(l.slots, s)
}

// takeWrapperLocked returns an empty buffer wrapper for a placeholder;
// outMu must be held.
func (l *loop) takeWrapperLocked() *bufpool.Buf {
	if n := len(l.wrappers); n > 0 {
		b := l.wrappers[n-1]
		l.wrappers = l.wrappers[:n-1]
		return b
	}
	return &bufpool.Buf{}
}

// linkLocked appends node to st's output chain; outMu must be held.
func (st *connState) linkLocked(node *bufpool.Buf) {
	if st.outTail == nil {
		st.outHead = node
	} else {
		st.outTail.Next = node
	}
	st.outTail = node
}
