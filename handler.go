package frameloop

// Handler receives a connection's events. All three methods run on the
// connection's event loop goroutine, one at a time for that loop, so they
// must not block: a slow handler stalls every connection of its loop. Hand
// long work to another goroutine and reply from there with Conn.Write.
type Handler interface {
	// OnOpen is called once the connection is accepted (and, with
	// Config.ProxyProtocol, once its PROXY header is read).
	OnOpen(c *Conn)

	// OnFrame is called for each complete frame, in arrival order.
	// payload is valid only until OnFrame returns: it points into a buffer
	// the loop reuses for the next read. Copy it to keep it.
	OnFrame(c *Conn, payload []byte)

	// OnClose is called once, after the connection is closed. err says
	// why, never nil: ErrPeerClosed, ErrLocalClose (Conn.Close),
	// ErrIdleTimeout, ErrWriteTimeout, ErrFrameTooLarge, ErrBadFrame,
	// ErrServerClosed, ErrBadProxyHeader, ErrHandlerPanic, or the socket
	// error (such as ECONNRESET). ReasonOf maps it to its CloseReason.
	OnClose(c *Conn, err error)
}

// EchoHandler answers every frame with the identical bytes: prefix,
// length field and body, whatever the framing. While nothing is queued for
// the connection, the reply is written straight from the loop's read
// buffer (no copy, no lock). A handler of the application's may call
// EchoHandler.OnFrame from its own OnFrame, never from elsewhere: the
// echo is then in order with the handler's Writes around it.
type EchoHandler struct{}

func (EchoHandler) OnOpen(*Conn)              {}
func (EchoHandler) OnFrame(c *Conn, _ []byte) { c.echo() }
func (EchoHandler) OnClose(*Conn, error)      {}
