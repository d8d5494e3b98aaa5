package frameloop

import (
	"bytes"

	"github.com/frameloop/frameloop/internal/proxyhdr"
	"github.com/frameloop/frameloop/internal/sock"
)

// readProxy reads the PROXY protocol header that must open st when
// Config.ProxyProtocol is set. The header may arrive in pieces; what has
// arrived is kept in st.in (at most proxyhdr.MaxLen bytes plus one read)
// and parsed again as more comes. The handler sees the connection only
// once the header is complete, with the client's address.
func (l *loop) readProxy(st *connState) {
	n, ok := l.read(st, l.rbuf)
	if !ok {
		return
	}
	data := l.rbuf[:n]
	if st.in != nil {
		l.fill(st, data, len(st.in.B)+len(data))
		data = st.in.B
	}
	hdr, used, err := proxyhdr.Parse(data)
	switch {
	case err == proxyhdr.ErrIncomplete:
		if st.in == nil {
			l.stash(st, data, 0)
		}
		return
	case err != nil:
		if l.proxyWarn.allow(l.now) {
			l.log.Warn("closing connection: bad PROXY header", "remote", st.conn.addr.String(),
				"err", err, "suppressed", l.proxyWarn.takeSuppressed())
		}
		l.closeNow(st, ReasonProxyHeader, ErrBadProxyHeader)
		return
	}
	if !hdr.Local {
		st.conn.addr = sock.AddrFromAddrPort(hdr.Source)
	}
	st.conn.setProxyHeader(hdr, data[:used])
	st.phase = phaseOpen // or a TLS handshake, below
	if st.in != nil {
		// The frames after the header are decoded from the header's
		// buffer, which must not pass for an unfinished frame meanwhile.
		in, charge := st.in, st.inCharge
		st.in, st.inCharge = nil, 0
		defer l.releaseDetached(in, charge)
	}
	gen := st.gen
	if l.cfg.TLS != nil {
		l.startTLS(st)
		if rest := data[used:]; len(rest) > 0 {
			// The ClientHello, right behind the header.
			if _, err := l.tlsOf(st).sess.Feed(rest); err != nil {
				l.tlsFail(st, l.tlsOf(st), err)
			}
		}
		return
	}
	l.greet(st)
	if rest := data[used:]; len(rest) > 0 && st.gen == gen && st.acceptsFrames() {
		frames := l.stats.framesIn
		l.consume(st, rest)
		l.afterInput(st, frames)
	}
}

// setProxyHeader keeps what the header said for Conn.ProxyHeader, its TLVs
// copied out of the read buffer.
func (c *Conn) setProxyHeader(hdr proxyhdr.Header, raw []byte) {
	ph := &ProxyHeader{Local: hdr.Local, Source: hdr.Source, Destination: hdr.Dest}
	proxyhdr.EachTLV(proxyhdr.TLVArea(raw), func(typ byte, value []byte) {
		ph.TLVs = append(ph.TLVs, ProxyTLV{Type: typ, Value: bytes.Clone(value)})
	})
	l := c.st.l
	l.outMu.Lock()
	c.extLocked().proxy = ph
	l.outMu.Unlock()
}
