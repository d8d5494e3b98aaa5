package loadgen

import "github.com/frameloop/frameloop/internal/poller"

type connState uint8

const (
	stateNew        connState = iota // not opened yet
	stateConnecting                  // connect in progress; waiting for writability
	stateRetry                       // Unix socket whose listen backlog was full; connect again soon
	stateOpen
	stateClosed
)

// conn is one connection's state, owned by its worker. It holds no buffers:
// what it sends is regenerated from (id, seq, offset), and what it receives
// is checked as it streams through the worker's read buffer.
type conn struct {
	fd        int
	id        uint32 // global id, stamped into every payload
	index     uint32 // position in the worker's table; the poller tag
	state     connState
	interest  poller.Interest
	queued    bool // on the worker's write queue for this pass
	done      bool // idle mode: answered its frame or failed (counted once)
	connectBy int64

	// Send side. Frames 0..next-1 are written; off bytes of frame next are.
	next uint64
	off  int
	due  uint64 // open loop: frames whose intended time has come

	// Receive side: a reply is taken apart as it streams in.
	expected uint64 // oldest frame neither answered nor given up as lost
	hdrN     int    // header bytes of the current reply held in hdr, while it is split
	hlen     int    // its header size once complete, else 0
	plen     int    // its payload length (once hlen > 0)
	pgot     int    // its payload bytes seen so far
	seq      uint64 // the frame it is checked against
	alt      bool   // seq is a candidate other than expected, named by the stamp
	h        uint64 // pattern seed of seq
	stamp    [stampSize]byte
	bad      bool // the reply differs from frame seq (length, stamp or pattern)
	hbad     bool // its header differs: prefix bytes, or a varint's encoding
	stale    bool // the reply answers nothing in flight: count it, do not advance
	// hdr holds a header split between reads; once the header is complete,
	// hdr[:prefix size] holds its prefix, checked when the stamp names the
	// frame.
	hdr [maxHeader]byte

	// origins[seq&mask] is when frame seq's latency starts: its first byte's
	// write (closed loop) or its intended time (open loop). At most pipeline
	// frames are in flight, so a ring of the next power of two suffices.
	origins []int64
	mask    uint64
}

// started is the number of frames whose first byte has been written.
func (c *conn) started() uint64 {
	if c.off > 0 {
		return c.next + 1
	}
	return c.next
}
