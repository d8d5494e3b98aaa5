package frameloop

import (
	"errors"
	"syscall"
	"time"

	"github.com/frameloop/frameloop/internal/tlslayer"
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
	ReasonPanic                           // a handler callback panicked
	ReasonBadFrame                        // a malformed length field (varint too long, negative size)
	ReasonTLS                             // a failed TLS handshake, a bad TLS record
	numReasons
)

var reasonNames = [numReasons]string{
	"peer_closed", "idle_timeout", "write_timeout", "oversize", "reset",
	"shutdown", "proxy_header", "error", "local", "panic", "bad_frame", "tls",
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
	case ReasonPeerClosed:
		return ErrPeerClosed
	case ReasonLocal:
		return ErrLocalClose
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
	case ReasonPanic:
		return ErrHandlerPanic
	case ReasonBadFrame:
		return ErrBadFrame
	case ReasonTLS:
		return ErrTLS
	}
	return nil
}

// ReasonOf returns the reason of a close from the error OnClose received:
// the reason's own error (ErrIdleTimeout, ErrPeerClosed, ...), or a
// socket error (a reset, or another error).
func ReasonOf(err error) CloseReason {
	for r := range numReasons {
		if e := r.err(); e != nil && errors.Is(err, e) {
			return r
		}
	}
	return reasonForError(err)
}

func reasonForError(err error) CloseReason {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) {
		return ReasonReset
	}
	return ReasonError
}

// Stats is a snapshot of a server's counters, summed over its loops.
type Stats struct {
	Connections  int                    // open now
	Accepted     uint64                 // connections accepted
	Closed       map[CloseReason]uint64 // by reason; ClosedBy reads it
	FramesIn     uint64                 // complete frames received
	FramesOut    uint64                 // frames queued by Write
	BytesIn      uint64                 // bytes read from sockets
	BytesOut     uint64                 // bytes the kernel took
	ReadPauses   uint64                 // times reading paused for a full output queue
	Backpressure uint64                 // writes refused with ErrBackpressure
	AcceptPaused bool                   // accepting is paused (connection cap, or out of descriptors)
	// Panics counts handler callbacks that panicked. A panic in OnOpen or
	// OnFrame also closes its connection (ReasonPanic); one in OnClose
	// comes after the close.
	Panics uint64
	// InputMemory is the input the loops hold for frames not yet
	// complete, in bytes, as charged to Config.MaxInputMemory.
	InputMemory int64
	// MemoryPauses counts the times a connection stopped being read
	// because buffering its frame would pass Config.MaxInputMemory.
	MemoryPauses uint64

	// With Config.TLS: handshakes completed, failed by reason ("timeout",
	// "eof", "bad_record", "handshake_failure", "bad_certificate",
	// "overflow", "closed", "other"), running now, and how long the
	// completed ones took from the accept: counts per bucket of
	// TLSHandshakeBuckets (one more for the slower ones) and their sum.
	TLSHandshakes          uint64
	TLSHandshakeFailures   map[string]uint64
	TLSHandshaking         int
	TLSHandshakeLatency    [len(TLSHandshakeBuckets) + 1]uint64
	TLSHandshakeLatencySum time.Duration
}

// ClosedBy is the number of connections closed for reason r.
func (s Stats) ClosedBy(r CloseReason) uint64 { return s.Closed[r] }

// loopStats are counted by a loop on its own goroutine, without atomics,
// and published under outMu once per pass.
type loopStats struct {
	accepted     uint64
	closed       [numReasons]uint64
	framesIn     uint64
	framesOut    uint64 // by the echo's direct path (echo.go)
	bytesIn      uint64
	bytesOut     uint64
	readPauses   uint64
	memPauses    uint64
	panics       uint64
	acceptPaused bool
	tlsOK        uint64
	tlsFailed    [tlslayer.ReasonOther + 1]uint64
	tlsLatency   latencyHistogram
}

// sharedStats are guarded by loop.outMu.
type sharedStats struct {
	loop          loopStats
	framesOut     uint64
	backpressured uint64
}
