package tlslayer

import (
	"io"
	"net"
	"sync"
	"time"
)

// wouldBlockError is what the shim's Read returns, once the handshake is
// over, when it has no ciphertext left. It is a net.Error whose Temporary
// method reports true: crypto/tls's readRecordOrCCS (conn.go:633 for the
// record header, conn.go:678 for the body) does not store such an error in
// c.in.err, so the next Read resumes where this one stopped, with the partial
// record kept in c.rawInput.
//
// The check there is a plain type assertion, err.(net.Error), so the value
// must reach crypto/tls unwrapped; it does (atLeastReader and
// bytes.Buffer.ReadFrom pass a non-EOF error through unchanged).
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "tlslayer: no ciphertext buffered (would block)" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

const recordHeaderLen = 5

// errWouldBlock is compared by identity; a zero-size value in an interface
// does not allocate.
var errWouldBlock net.Error = wouldBlockError{}

// shim is the net.Conn that crypto/tls reads ciphertext from and writes
// ciphertext to. It never touches a socket.
//
// Input is the owned slice in[inOff:] (what Feed copied, or what a Decrypt
// call left over) followed by borrow (the caller's ciphertext, only for the
// duration of one Decrypt call). While blocking is set (handshake phase) Read
// waits for input; afterwards it returns errWouldBlock.
//
// Output is appended to out, or, while an Encrypt or CloseNotify call runs,
// straight to that call's destination w. Write never fails: a write error
// would be sticky in crypto/tls (conn.go:1248, conn.go:1255).
type shim struct {
	mu   sync.Mutex
	cond sync.Cond // L is &mu; signalled on input, EOF and close

	in       []byte
	inOff    int
	borrow   []byte
	recLeft  int     // body bytes of the current record not yet handed out
	hdrN     int     // bytes of the next record's header handed out so far
	hdr      [5]byte // those bytes
	maxIn    int     // Feed asks the loop to pause reading at this much pending input
	paused   bool    // Feed asked the loop to pause; Read notifies when half is drained
	blocking bool    // handshake phase
	eof      bool    // the transport reported EOF (FeedEOF)
	eofRead  bool    // Read has returned io.EOF
	closed   bool    // Close (by Session.Close, or by crypto/tls when the handshake context ends)

	out    []byte
	direct bool   // append output to w instead of out
	w      []byte // destination of the running Encrypt/CloseNotify
	notify func() // handshake phase only: output became available, or a paused loop may read again

	local, remote net.Addr
}

func (c *shim) pendingLocked() int { return len(c.in) - c.inOff }

// Read implements net.Conn for crypto/tls.
func (c *shim) Read(p []byte) (int, error) {
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if n := c.readLocked(p); n > 0 || len(p) == 0 {
			// A loop that paused reading the socket (Feed reported
			// pause) resumes once the handshake has drained half.
			var notify func()
			if c.paused && c.pendingLocked() <= c.maxIn/2 {
				c.paused = false
				if c.blocking {
					notify = c.notify
				}
			}
			c.mu.Unlock()
			if notify != nil {
				notify()
			}
			return n, nil
		}
		if c.eof {
			c.eofRead = true
			c.mu.Unlock()
			return 0, io.EOF
		}
		if !c.blocking {
			c.mu.Unlock()
			return 0, errWouldBlock
		}
		c.cond.Wait()
	}
}

// readLocked hands crypto/tls input, never past the end of the current
// record: after crypto/tls has consumed a record its c.rawInput is empty,
// so Session.Decrypt knows that only the shim can hold more, and calls Read
// again only when the shim holds enough for progress (progressLocked). Each
// Read that finds nothing costs crypto/tls an allocation (the atLeastReader
// in readFromUntil, conn.go:837) for nothing.
func (c *shim) readLocked(p []byte) int {
	n := 0
	for n < len(p) {
		if c.recLeft == 0 {
			// At or inside a record header.
			k := c.takeLocked(p[n:min(len(p), n+recordHeaderLen-c.hdrN)])
			if k == 0 {
				break
			}
			copy(c.hdr[c.hdrN:], p[n:n+k])
			c.hdrN += k
			n += k
			if c.hdrN < recordHeaderLen {
				break
			}
			c.hdrN = 0
			c.recLeft = int(c.hdr[3])<<8 | int(c.hdr[4])
			if c.recLeft == 0 {
				break // an empty record, complete
			}
			continue
		}
		k := c.takeLocked(p[n:min(len(p), n+c.recLeft)])
		if k == 0 {
			break
		}
		c.recLeft -= k
		n += k
		if c.recLeft == 0 {
			break // the record is complete: stop at its end
		}
	}
	return n
}

// takeLocked copies input into p: the owned part first, then the borrowed.
func (c *shim) takeLocked(p []byte) int {
	n := 0
	if c.inOff < len(c.in) {
		n = copy(p, c.in[c.inOff:])
		c.inOff += n
		if c.inOff == len(c.in) {
			c.in, c.inOff = c.in[:0], 0
		}
	}
	if n < len(p) && len(c.borrow) > 0 {
		m := copy(p[n:], c.borrow)
		c.borrow = c.borrow[m:]
		n += m
	}
	return n
}

// progressLocked reports whether Decrypt should call crypto/tls's Read:
// the input holds the rest of the current record, or the complete header of
// the next one (crypto/tls checks a header before it reads the body,
// conn.go:672, so an oversized or non-TLS header fails at once instead of
// sitting in the shim), or there is borrowed input left, part of a record
// that crypto/tls may as well take now: it has to buffer the record anyway,
// and otherwise the shim would copy it first.
func (c *shim) progressLocked() bool {
	if len(c.borrow) > 0 {
		return true
	}
	avail := c.pendingLocked()
	if c.recLeft > 0 {
		return avail >= c.recLeft
	}
	return avail >= recordHeaderLen-c.hdrN
}

// appendInLocked copies b after the pending input. It refuses (false) only
// if the pending input is already at maxIn: a caller that stops reading the
// socket when told to (Feed's pause) never sees that, and the pending input
// stays below maxIn plus one read.
func (c *shim) appendInLocked(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if c.pendingLocked() >= c.maxIn {
		return false
	}
	if c.inOff > 0 && len(c.in)+len(b) > cap(c.in) {
		// Slide the unread bytes down before growing.
		m := copy(c.in, c.in[c.inOff:])
		c.in, c.inOff = c.in[:m], 0
	}
	c.in = append(c.in, b...)
	return true
}

// Write implements net.Conn for crypto/tls. It never fails.
func (c *shim) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		// Nobody will take it: drop it, but do not fail (a failed write is
		// sticky in crypto/tls).
		c.mu.Unlock()
		return len(p), nil
	}
	if c.direct {
		c.w = append(c.w, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	notify := c.notify
	if len(c.out) != 0 || !c.blocking {
		notify = nil
	}
	c.out = append(c.out, p...)
	c.mu.Unlock()
	if notify != nil {
		notify()
	}
	return len(p), nil
}

// Close implements net.Conn. crypto/tls calls it from the context.AfterFunc
// of HandshakeContext (conn.go:1538) when the handshake context ends; it
// wakes a Read blocked in the handshake.
func (c *shim) Close() error {
	c.mu.Lock()
	c.closed = true
	c.in, c.inOff, c.borrow = nil, 0, nil
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

func (c *shim) LocalAddr() net.Addr  { return c.local }
func (c *shim) RemoteAddr() net.Addr { return c.remote }

// Deadlines are the caller's business (the handshake context); crypto/tls
// only sets write deadlines around close_notify (conn.go:1477, conn.go:1481),
// and writes here never block.
func (c *shim) SetDeadline(time.Time) error      { return nil }
func (c *shim) SetReadDeadline(time.Time) error  { return nil }
func (c *shim) SetWriteDeadline(time.Time) error { return nil }

// noAddr stands in when the caller gives no address.
type noAddr struct{}

func (noAddr) Network() string { return "tlslayer" }
func (noAddr) String() string  { return "tlslayer" }
