package proxyhdr

// Differential check against github.com/pires/go-proxyproto. It is imported
// only here, in a _test.go file, so it is a test-only requirement in go.mod
// and never part of the module's build graph (go list -deps
// ./internal/proxyhdr does not show it).

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

type oracleResult struct {
	ok       bool
	local    bool
	fam      proxyproto.AddressFamilyAndProtocol
	src, dst netip.AddrPort
	n        int // bytes the library consumed
	err      error
}

func runOracle(data []byte) (r oracleResult) {
	rd := bytes.NewReader(data)
	// Large enough that a whole header arrives in one fill, as the library's
	// v1 parser insists.
	br := bufio.NewReaderSize(rd, 2*MaxLen)
	ph, err := proxyproto.Read(br)
	if err != nil {
		r.err = err
		return r
	}
	r.ok = true
	r.n = len(data) - rd.Len() - br.Buffered()
	r.local = ph.Command.IsLocal()
	r.fam = ph.TransportProtocol
	if src, dst, ok := ph.TCPAddrs(); ok {
		r.src = tcpAddrPort(src)
		r.dst = tcpAddrPort(dst)
	}
	return r
}

func tcpAddrPort(a *net.TCPAddr) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip, uint16(a.Port))
}

// Where this package deliberately differs from go-proxyproto.
func v2Byte(data []byte, i int) (byte, bool) {
	if len(data) > i && data[0] == sigV2[0] {
		return data[i], true
	}
	return 0, false
}

// v2 PROXY over AF_UNSPEC: the library rejects it; we treat it as LOCAL
// (the spec leaves the choice to the receiver; HAProxy accepts it).
func isProxyUnspec(data []byte) bool {
	c, ok1 := v2Byte(data, 12)
	f, ok2 := v2Byte(data, 13)
	return ok1 && ok2 && c == 0x21 && f == famUnspec
}

// v2 PROXY over a datagram transport: the library accepts it; on a TCP
// server it cannot describe the connection, so we reject it.
func isProxyDatagram(data []byte) bool {
	c, ok1 := v2Byte(data, 12)
	f, ok2 := v2Byte(data, 13)
	return ok1 && ok2 && c == 0x21 && (f == famUDP4 || f == famUDP6 || f == famUnixDgm)
}

func checkOracle(t *testing.T, data []byte) {
	t.Helper()
	h, n, err := Parse(data)
	or := runOracle(data)

	if err == nil {
		if isProxyUnspec(data) {
			return
		}
		if !or.ok {
			t.Fatalf("we accept %q (%+v, n=%d); go-proxyproto: %v", data, h, n, or.err)
		}
		if or.n != n {
			t.Fatalf("%q: we consume %d bytes, go-proxyproto %d", data, n, or.n)
		}
		switch {
		case h.Local:
			// v2 PROXY over AF_UNIX: the library returns paths, we LOCAL.
			if !or.local && !or.fam.IsUnix() {
				t.Fatalf("%q: we say local, go-proxyproto %+v", data, or)
			}
		case or.local || or.src != h.Source || or.dst != h.Dest:
			t.Fatalf("%q: we say %+v, go-proxyproto %+v", data, h, or)
		}
		return
	}

	if !or.ok {
		return
	}
	// The library accepts what we do not (or not yet).
	switch {
	case err == errV2Family && isProxyDatagram(data):
	case err == errV2TooLong && or.n > MaxLen:
		// Our cap counts the whole header, the library's only the part
		// after the fixed 16 bytes.
	case err == errV1LineEnd && bytes.HasPrefix(data, []byte("PROXY UNKNOWN ")):
		// The library ignores a stray CR in UNKNOWN's ignored part.
	default:
		t.Fatalf("go-proxyproto accepts %q (%+v); we say %v", data, or, err)
	}
}
