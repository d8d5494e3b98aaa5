package frameloop

import (
	"errors"
	"syscall"
	"time"
)

// CloseReason says why a connection closed.
type CloseReason uint8

const (
	ReasonPeerClosed   CloseReason = iota // the peer closed its side
	ReasonIdleTimeout                     // no complete frame for IdleTimeout
	ReasonWriteTimeout                    // queued output made no progress for WriteTimeout
	ReasonOversize                        // a header announced more than MaxMessage
	ReasonReset                           // the peer reset the connection
	ReasonShutdown                        // the server shut down
	ReasonProxyHeader                     // a missing or malformed PROXY header
	ReasonError                           // any other socket error
	ReasonLocal                           // the application called Close
	numReasons
)

var reasonNames = [numReasons]string{
	"peer_closed", "idle_timeout", "write_timeout", "oversize", "reset",
	"shutdown", "proxy_header", "error", "local",
}

// String is the reason's metric label, e.g. "idle_timeout".
func (r CloseReason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// CloseReasons lists every reason, in order.
func CloseReasons() []CloseReason {
	rs := make([]CloseReason, numReasons)
	for i := range rs {
		rs[i] = CloseReason(i)
	}
	return rs
}

// err is the error OnClose receives for a close the server decided.
func (r CloseReason) err() error {
	switch r {
	case ReasonIdleTimeout:
		return ErrIdleTimeout
	case ReasonWriteTimeout:
		return ErrWriteTimeout
	case ReasonOversize:
		return ErrFrameTooLarge
	case ReasonShutdown:
		return ErrServerClosed
	case ReasonProxyHeader:
		return ErrBadProxyHeader
	}
	return nil
}

func reasonForError(err error) CloseReason {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) {
		return ReasonReset
	}
	return ReasonError
}

// Stats is a snapshot of a server's counters, summed over its loops.
type Stats struct {
	Connections  int    // open now
	Accepted     uint64 // connections accepted
	Closed       [numReasons]uint64
	FramesIn     uint64 // complete frames received
	FramesOut    uint64 // frames queued by Write
	BytesIn      uint64 // bytes read from sockets
	BytesOut     uint64 // bytes the kernel took
	ReadPauses   uint64 // times reading paused for a full output queue
	Backpressure uint64 // writes refused with ErrBackpressure
	AcceptPaused bool   // accepting is paused (connection cap, or out of descriptors)
}

// ClosedBy is the number of connections closed for reason r.
func (s Stats) ClosedBy(r CloseReason) uint64 {
	if r < numReasons {
		return s.Closed[r]
	}
	return 0
}

// loopStats are counted by a loop on its own goroutine, without atomics,
// and published under outMu once per pass.
type loopStats struct {
	accepted     uint64
	closed       [numReasons]uint64
	framesIn     uint64
	bytesIn      uint64
	bytesOut     uint64
	readPauses   uint64
	acceptPaused bool
}

// sharedStats are guarded by loop.outMu.
type sharedStats struct {
	loop          loopStats
	framesOut     uint64
	backpressured uint64
}

// rateLimit lets one log line through per period and counts the rest.
type rateLimit struct {
	every      time.Duration
	next       int64
	suppressed int
}

func (r *rateLimit) allow(now int64) bool {
	if now < r.next {
		r.suppressed++
		return false
	}
	r.next = now + int64(r.every)
	return true
}

func (r *rateLimit) takeSuppressed() int {
	n := r.suppressed
	r.suppressed = 0
	return n
}
