package frameloop

import (
	"fmt"
	"runtime/debug"
)

// A panic in a handler callback closes that callback's connection and
// nothing else, as net/http recovers per request and Netty routes a
// handler's exception to exceptionCaught. The loop notes which connection
// a callback runs for (loop.cur), and every entry point that may call the
// handler — one event, one flush, one expiry, one adoption — defers
// contain. A panic raised outside a callback is frameloop's own bug: it is
// not hidden.

// guard runs fn(l, st) and contains a handler panic raised inside it.
// Passing a method expression or a plain function, not a closure, keeps it
// free of allocations.
func (l *loop) guard(st *connState, fn func(*loop, *connState)) {
	defer l.contain()
	fn(l, st)
}

// contain recovers a panic raised by a handler callback: it logs one line
// with the stack, counts it, and closes the connection with ReasonPanic.
// It must be called directly by a deferred call.
func (l *loop) contain() {
	r := recover()
	if r == nil {
		return
	}
	c := l.cur
	l.cur = nil
	if c == nil {
		panic(r)
	}
	l.settleSpan() // the replies echoed before the panic are still sent
	l.stats.panics++
	l.log.Error("handler panicked; closing its connection",
		"remote", c.addr.String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	st := c.st
	if st.gen != c.gen || st.phase == phaseFree {
		return // OnClose panicked: the connection is closed already
	}
	l.abort(st, ReasonPanic)
}

// The handler's callbacks, called only through these.

func (l *loop) callOpen(st *connState) {
	l.cur, l.curRaw = st.conn, nil
	l.h.OnOpen(st.conn)
	l.cur = nil
}

func (l *loop) callFrame(st *connState, payload []byte) {
	l.cur = st.conn
	l.h.OnFrame(st.conn, payload)
	l.cur = nil
}

func (l *loop) callClose(c *Conn, err error) {
	l.cur, l.curRaw = c, nil
	l.h.OnClose(c, err)
	l.cur = nil
}
