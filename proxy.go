package frameloop

// readProxy reads the PROXY protocol header that must open st.
func (l *loop) readProxy(st *connState) {
	l.closeNow(st, ReasonProxyHeader, ErrBadProxyHeader)
}
