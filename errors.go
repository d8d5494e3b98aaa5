package frameloop

import "errors"

var (
	// ErrClosed is returned by Write and Close on a connection that is
	// closed or closing. A handle never reaches a later connection that
	// reuses its slot: each handle carries the generation it was issued for.
	ErrClosed = errors.New("frameloop: connection closed")

	// ErrBackpressure is returned by Write when the frame would take the
	// connection's queued output past Config.MaxQueued. Nothing is queued;
	// the caller decides whether to drop the frame, retry later or close.
	ErrBackpressure = errors.New("frameloop: connection output queue full")

	// ErrTooLarge is returned by Write for a body the framing cannot
	// express or the queue could never hold.
	ErrTooLarge = errors.New("frameloop: payload too large")

	// ErrBadPrefix is returned by WriteFrame for a prefix whose length is
	// not Framing.Offset.
	ErrBadPrefix = errors.New("frameloop: frame prefix length differs from Framing.Offset")

	// ErrServerClosed is returned by Serve after Shutdown, and passed to
	// OnClose for connections closed by a shutdown.
	ErrServerClosed = errors.New("frameloop: server closed")

	// Reasons passed to Handler.OnClose; ReasonOf maps each back to its
	// CloseReason.
	ErrPeerClosed     = errors.New("frameloop: closed by the peer")
	ErrLocalClose     = errors.New("frameloop: closed by the application (Conn.Close)")
	ErrIdleTimeout    = errors.New("frameloop: idle timeout")
	ErrWriteTimeout   = errors.New("frameloop: write timeout (slow consumer)")
	ErrFrameTooLarge  = errors.New("frameloop: frame exceeds the maximum message size")
	ErrBadProxyHeader = errors.New("frameloop: missing or malformed PROXY protocol header")
	ErrHandlerPanic   = errors.New("frameloop: a handler callback panicked")
	ErrBadFrame       = errors.New("frameloop: malformed frame header")
)
