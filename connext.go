package frameloop

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/frameloop/frameloop/internal/sock"
	"github.com/frameloop/frameloop/internal/tlslayer"
)

// connExt is what a Conn holds only when asked for: see Conn.ext.
type connExt struct {
	value  atomic.Pointer[any] // read without a lock
	ctx    context.Context
	cancel context.CancelFunc
	proxy  *ProxyHeader
	tls    *tlslayer.Session
}

// extLocked returns c's extension, creating it; outMu must be held.
func (c *Conn) extLocked() *connExt {
	x := c.ext.Load()
	if x == nil {
		x = &connExt{}
		c.ext.Store(x)
	}
	return x
}

// Value returns the value stored with SetValue. It takes no lock.
func (c *Conn) Value() any {
	if x := c.ext.Load(); x != nil {
		if v := x.value.Load(); v != nil {
			return *v
		}
	}
	return nil
}

// SetValue stores a value of the application's with the connection, for
// instance its session state.
func (c *Conn) SetValue(v any) {
	l := c.st.l
	l.outMu.Lock()
	c.extLocked().value.Store(&v)
	l.outMu.Unlock()
}

// Context returns a context cancelled when the connection closes, so that
// work started for it — a worker filling a Reply — can stop once nobody
// will read the answer. The context is created on the first call; after
// the connection has closed, it is born cancelled.
func (c *Conn) Context() context.Context {
	l := c.st.l
	l.outMu.Lock()
	defer l.outMu.Unlock()
	x := c.extLocked()
	if x.ctx == nil {
		x.ctx, x.cancel = context.WithCancel(context.Background())
		if c.st.gen != c.gen {
			x.cancel()
		}
	}
	return x.ctx
}

// closedLocked cancels c's context, if it has one; outMu must be held.
func (c *Conn) closedLocked() {
	if x := c.ext.Load(); x != nil && x.cancel != nil {
		x.cancel()
	}
}

// LocalAddr is the address the client connected to, as the socket has it
// (with a PROXY header, ProxyHeader().Destination is the one the client
// used). It is nil once the connection is closed.
func (c *Conn) LocalAddr() net.Addr {
	l := c.st.l
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if c.st.gen != c.gen {
		return nil
	}
	if l.cfg.endpoint.Network == "unix" {
		return &net.UnixAddr{Net: "unix", Name: l.cfg.endpoint.Path}
	}
	ap, ok := sock.LocalAddrPort(int(c.st.fd))
	if !ok {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// ProxyHeader is what a PROXY protocol header said about a connection
// (Config.ProxyProtocol).
type ProxyHeader struct {
	// Local: the proxy opened the connection itself (a v2 LOCAL health
	// check) or could not tell the addresses (v1 UNKNOWN, v2 UNSPEC):
	// Source and Destination are not set, RemoteAddr is the socket's peer.
	Local bool
	// Source is the client's address, Destination the address the client
	// connected to on the proxy.
	Source, Destination netip.AddrPort
	// TLVs are the v2 header's type-length-value fields, in order.
	TLVs []ProxyTLV
}

// ProxyTLV is one type-length-value field of a PROXY v2 header.
type ProxyTLV struct {
	Type  byte
	Value []byte
}

// PROXY v2 TLV types (the PROXY protocol specification, 2.2.7).
const (
	ProxyTLVALPN      = 0x01
	ProxyTLVAuthority = 0x02 // the host name the client asked for (SNI)
	ProxyTLVUniqueID  = 0x05
)

// TLV returns the value of the first TLV of type t, if any.
func (h *ProxyHeader) TLV(t byte) ([]byte, bool) {
	for _, tlv := range h.TLVs {
		if tlv.Type == t {
			return tlv.Value, true
		}
	}
	return nil, false
}

// ProxyHeader returns what the connection's PROXY header said, from OnOpen
// on; nil without Config.ProxyProtocol.
func (c *Conn) ProxyHeader() *ProxyHeader {
	l := c.st.l
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if x := c.ext.Load(); x != nil {
		return x.proxy
	}
	return nil
}
