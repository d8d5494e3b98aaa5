package frameloop_test

// Config.ProxyProtocol: the PROXY v1/v2 header read before the first
// frame. The handler sees a connection only once its header is complete,
// with the address the proxy reported (or the socket's own peer for LOCAL
// and UNKNOWN); a connection without a valid header is closed without a
// reply, counted as ReasonProxyHeader, and never reaches the handler.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/proxyhdr"
	"github.com/frameloop/frameloop/internal/testkit"
)

// ---- PROXY headers ----

var ppSigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ppV2 is a v2 header: cmd 0 (LOCAL) or 1 (PROXY), family/transport byte
// fam, then block (addresses and TLVs).
func ppV2(cmd, fam byte, block []byte) []byte {
	h := append([]byte{}, ppSigV2...)
	h = append(h, 0x20|cmd, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(block)))
	return append(h, block...)
}

// ppV2Addrs is the address block of a PROXY header for src and dst (both
// IPv4 or both IPv6), followed by tlvs.
func ppV2Addrs(src, dst netip.AddrPort, tlvs ...byte) (fam byte, block []byte) {
	fam = 0x11
	if src.Addr().Is6() {
		fam = 0x21
	}
	block = append(block, src.Addr().AsSlice()...)
	block = append(block, dst.Addr().AsSlice()...)
	block = binary.BigEndian.AppendUint16(block, src.Port())
	block = binary.BigEndian.AppendUint16(block, dst.Port())
	return fam, append(block, tlvs...)
}

func ppV2Proxy(src, dst netip.AddrPort, tlvs ...byte) []byte {
	fam, block := ppV2Addrs(src, dst, tlvs...)
	return ppV2(1, fam, block)
}

func ppV1(proto string, src, dst netip.AddrPort) []byte {
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, src.Addr(), dst.Addr(), src.Port(), dst.Port())
}

// ---- a handler that records what OnOpen saw ----

// ppRecorder echoes, records the RemoteAddr each OnOpen saw, and notes any
// OnClose for a connection that OnOpen never saw.
type ppRecorder struct {
	mu     sync.Mutex
	opened map[*frameloop.Conn]string
	remote []string // RemoteAddr().String() at OnOpen, in order
	closed int
	stray  []string // OnClose without OnOpen
}

func newPPRecorder(t testing.TB) *ppRecorder {
	r := &ppRecorder{opened: map[*frameloop.Conn]string{}}
	// Registered before the server's shutdown, so it runs after it: every
	// connection has closed by then.
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.stray) > 0 && !t.Failed() {
			t.Errorf("OnClose ran without OnOpen for %d connections: %v", len(r.stray), r.stray)
		}
		if r.closed != len(r.opened) {
			t.Errorf("%d connections opened, %d closed", len(r.opened), r.closed)
		}
	})
	return r
}

func (r *ppRecorder) OnOpen(c *frameloop.Conn) {
	a := c.RemoteAddr().String()
	r.mu.Lock()
	r.opened[c] = a
	r.remote = append(r.remote, a)
	r.mu.Unlock()
}

func (r *ppRecorder) OnFrame(c *frameloop.Conn, p []byte) { c.Write(p) }

func (r *ppRecorder) OnClose(c *frameloop.Conn, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.opened[c]; !ok {
		r.stray = append(r.stray, fmt.Sprintf("%v (err %v)", c.RemoteAddr(), err))
		return
	}
	r.closed++
}

func (r *ppRecorder) opens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.remote...)
}

func (r *ppRecorder) strays() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.stray...)
}

// ---- accepted headers ----

type ppCase struct {
	name   string
	header func(i int) []byte // i makes the reported port unique
	// want is the RemoteAddr OnOpen must see; "" means the socket's own
	// peer, the client's local address.
	want func(i int) string
}

func ppAcceptedCases() []ppCase {
	v4 := func(i int) netip.AddrPort { return netip.MustParseAddrPort(fmt.Sprintf("192.0.2.7:%d", 20000+i)) }
	v6 := func(i int) netip.AddrPort { return netip.MustParseAddrPort(fmt.Sprintf("[2001:db8::7]:%d", 20000+i)) }
	dst4 := netip.MustParseAddrPort("198.51.100.1:443")
	dst6 := netip.MustParseAddrPort("[2001:db8::1]:443")
	str := func(f func(int) netip.AddrPort) func(int) string {
		return func(i int) string { return f(i).String() }
	}
	peer := func(int) string { return "" }
	// A TLV of type NOOP (0x04) filling a v2 header to exactly MaxLen.
	fillTo := func(hdrLen int) []byte {
		n := proxyhdr.MaxLen - hdrLen - 3
		tlv := []byte{0x04, byte(n >> 8), byte(n)}
		return append(tlv, make([]byte, n)...)
	}
	return []ppCase{
		{"v1 TCP4", func(i int) []byte { return ppV1("TCP4", v4(i), dst4) }, str(v4)},
		{"v1 TCP6", func(i int) []byte { return ppV1("TCP6", v6(i), dst6) }, str(v6)},
		{"v1 UNKNOWN", func(int) []byte { return []byte("PROXY UNKNOWN\r\n") }, peer},
		{"v1 UNKNOWN with addresses", func(int) []byte { return []byte("PROXY UNKNOWN 192.0.2.7 198.51.100.1 1 2\r\n") }, peer},
		// The longest v1 line the spec allows: 107 bytes, CRLF included.
		{"v1 UNKNOWN 107 bytes", func(int) []byte { return []byte("PROXY UNKNOWN " + strings.Repeat("x", 91) + "\r\n") }, peer},
		{"v2 TCP4", func(i int) []byte { return ppV2Proxy(v4(i), dst4) }, str(v4)},
		{"v2 TCP6", func(i int) []byte { return ppV2Proxy(v6(i), dst6) }, str(v6)},
		{"v2 TCP4 with TLVs", func(i int) []byte {
			// PP2_TYPE_UNIQUE_ID, then PP2_TYPE_NOOP: skipped unparsed.
			return ppV2Proxy(v4(i), dst4, 0x05, 0x00, 0x03, 'a', 'b', 'c', 0x04, 0x00, 0x00)
		}, str(v4)},
		{"v2 TCP6 of MaxLen bytes", func(i int) []byte { return ppV2Proxy(v6(i), dst6, fillTo(16+36)...) }, str(v6)},
		// What HAProxy 2.6 sends on a health check with check-send-proxy
		// and send-proxy-v2: LOCAL, AF_UNSPEC, no address block.
		{"v2 LOCAL (HAProxy health check)", func(int) []byte { return ppV2(0, 0x00, nil) }, peer},
		// LOCAL ignores whatever addresses it carries.
		{"v2 LOCAL with addresses", func(i int) []byte {
			fam, block := ppV2Addrs(v4(i), dst4)
			return ppV2(0, fam, block)
		}, peer},
		// PROXY over AF_UNSPEC: the proxy does not know the client.
		{"v2 PROXY AF_UNSPEC", func(int) []byte { return ppV2(1, 0x00, nil) }, peer},
	}
}

// ppPayloads are the frames sent after a header: an empty one, small ones,
// and one larger than the loop's 64 KiB read buffer.
func ppPayloads(i int) [][]byte {
	return [][]byte{[]byte(fmt.Sprintf("first %d", i)), {}, testkit.Pattern(1000, uint64(i)), testkit.Pattern(100<<10, uint64(i)+1), []byte("last")}
}

// ppWriteMode is how a header and the frames after it are written.
type ppWriteMode struct {
	name string
	// write sends hdr then stream (the frames); before is called once all
	// of the header but its last byte has been sent, when that can be
	// told apart (nil otherwise).
	write func(c net.Conn, hdr, stream []byte, before func()) error
}

var ppWriteModes = []ppWriteMode{
	{"header then frames", func(c net.Conn, hdr, stream []byte, _ func()) error {
		if err := testkit.WriteAll(c, hdr, ioTimeout); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond) // most likely a read of its own
		return testkit.WriteAll(c, stream, ioTimeout)
	}},
	{"header and frames in one write", func(c net.Conn, hdr, stream []byte, _ func()) error {
		return testkit.WriteAll(c, append(append([]byte{}, hdr...), stream...), ioTimeout)
	}},
	{"header and a frame and a half", func(c net.Conn, hdr, stream []byte, _ func()) error {
		// The header, the first frame and 2 bytes of the second frame's
		// length: the loop must keep the unfinished tail.
		first := 4 + int(binary.LittleEndian.Uint32(stream))
		cut := first + 2
		if err := testkit.WriteAll(c, append(append([]byte{}, hdr...), stream[:cut]...), ioTimeout); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
		return testkit.WriteAll(c, stream[cut:], ioTimeout)
	}},
	{"header byte by byte", func(c net.Conn, hdr, stream []byte, before func()) error {
		for i := range hdr {
			if i == len(hdr)-1 {
				before()
			}
			if err := testkit.WriteAll(c, hdr[i:i+1], ioTimeout); err != nil {
				return err
			}
			// Each byte in a read of its own, mostly; the loop parses again
			// each time. Long headers go in small pieces, to keep it quick.
			if len(hdr) < 200 || i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		return testkit.WriteAll(c, stream, ioTimeout)
	}},
}

func TestProxyHeaderGivesClientAddress(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.ProxyProtocol = true
		rec := newPPRecorder(t)
		ts := startServer(t, rec, cfg)
		i := 0
		for _, tc := range ppAcceptedCases() {
			for _, mode := range ppWriteModes {
				i++
				c := testkit.DialTCP(t, ts.addr, ioTimeout)
				hdr := tc.header(i)
				payloads := ppPayloads(i)
				var stream []byte
				for _, p := range payloads {
					stream = append(stream, testkit.Frame(p)...)
				}
				want := tc.want(i)
				if want == "" {
					want = c.LocalAddr().String()
				}
				opensBefore := len(rec.opens())
				var early []string
				before := func() {
					// All but the last header byte sent: the handler must
					// not have seen this connection yet.
					time.Sleep(20 * time.Millisecond)
					early = rec.opens()[opensBefore:]
				}
				werr := make(chan error, 1)
				go func() { werr <- mode.write(c, hdr, stream, before) }()
				var rerr error
				for k, p := range payloads {
					if err := testkit.ExpectFrameErr(c, p, ioTimeout); err != nil {
						rerr = fmt.Errorf("reply %d: %w", k, err)
						c.SetWriteDeadline(time.Now())
						break
					}
				}
				if err := <-werr; err != nil && rerr == nil {
					rerr = fmt.Errorf("writing: %w", err)
				}
				if rerr != nil {
					t.Fatalf("%s, %s: %v", tc.name, mode.name, rerr)
				}
				if len(early) > 0 {
					t.Errorf("%s, %s: OnOpen ran before the header was complete (saw %v)", tc.name, mode.name, early)
				}
				// OnOpen ran before the first frame was handled, so it is
				// recorded by now.
				if got := rec.opens()[opensBefore:]; len(got) != 1 || got[0] != want {
					t.Errorf("%s, %s: OnOpen saw RemoteAddr %v, want [%s]", tc.name, mode.name, got, want)
				}
				c.Close()
			}
		}
		if st := ts.stats(); st.ClosedBy(frameloop.ReasonProxyHeader) != 0 {
			t.Errorf("%d connections closed for their PROXY header, want 0", st.ClosedBy(frameloop.ReasonProxyHeader))
		}
	})
}

// ---- rejected headers ----

func ppRejectedCases() []struct {
	name  string
	input []byte
} {
	src := netip.MustParseAddrPort("192.0.2.7:1234")
	dst := netip.MustParseAddrPort("198.51.100.1:443")
	v2ok := ppV2Proxy(src, dst)
	withByte := func(b []byte, i int, v byte) []byte {
		b = append([]byte{}, b...)
		b[i] = v
		return b
	}
	tooLongV2 := ppV2(1, 0x11, nil)
	binary.BigEndian.PutUint16(tooLongV2[14:], proxyhdr.MaxLen-16+1)
	return []struct {
		name  string
		input []byte
	}{
		{"no header, a frame first", testkit.Frame([]byte("hello"))},
		{"no header, an empty frame first", testkit.Frame(nil)},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}},
		{"lower-case v1", []byte("proxy TCP4 192.0.2.7 198.51.100.1 1234 443\r\n")},
		{"v1 unknown protocol", []byte("PROXY TCP5 192.0.2.7 198.51.100.1 1234 443\r\n")},
		{"v1 IPv6 address in TCP4", []byte("PROXY TCP4 2001:db8::7 198.51.100.1 1234 443\r\n")},
		{"v1 address out of range", []byte("PROXY TCP4 192.0.2.256 198.51.100.1 1234 443\r\n")},
		{"v1 port out of range", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n")},
		{"v1 missing port", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234\r\n")},
		{"v1 LF without CR", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\n")},
		{"v1 without CRLF past 107 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("x", 200))},
		{"v1 of 108 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n")},
		{"v2 bad signature", withByte(v2ok, 11, 'X')},
		{"v2 version 1", withByte(v2ok, 12, 0x11)},
		{"v2 version 3", withByte(v2ok, 12, 0x31)},
		{"v2 command 2", withByte(v2ok, 12, 0x22)},
		{"v2 PROXY over UDP", withByte(v2ok, 13, 0x12)},
		{"v2 undefined family", withByte(v2ok, 13, 0x41)},
		{"v2 TCP4 address block too short", ppV2(1, 0x11, make([]byte, 8))},
		{"v2 TCP6 address block too short", ppV2(1, 0x21, make([]byte, 12))},
		{"v2 announcing more than MaxLen", tooLongV2},
	}
}

func TestProxyHeaderRejected(t *testing.T) {
	cases := ppRejectedCases()
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.ProxyProtocol = true
		// No idle timeout: every close below is the header's doing.
		cfg.IdleTimeout = 0
		rec := newPPRecorder(t)
		ts := startServer(t, rec, cfg)
		for _, tc := range cases {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			if err := testkit.WriteAll(c, tc.input, ioTimeout); err != nil {
				t.Fatalf("%s: writing: %v", tc.name, err)
			}
			// Closed at once, without any reply, though the client keeps
			// its side open.
			if err := testkit.ExpectClosedErr(c, ioTimeout); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			c.Close()
		}
		ts.waitStats(t, ioTimeout, "every connection closed for its PROXY header", func(st frameloop.Stats) bool {
			return st.ClosedBy(frameloop.ReasonProxyHeader) == uint64(len(cases)) && st.Connections == 0
		})
		if st := ts.stats(); totalClosed(st) != uint64(len(cases)) || st.FramesIn != 0 || st.FramesOut != 0 {
			t.Errorf("stats after rejecting %d connections: %s", len(cases), fmtStats(&st))
		}
		if got := rec.opens(); len(got) != 0 {
			t.Errorf("OnOpen ran for rejected connections: %v", got)
		}
		// The server still serves a connection with a valid header.
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		if err := testkit.WriteAll(c, ppV2(0, 0, nil), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.Echo(t, c, []byte("still serving"), ioTimeout)
	})
}

// A client that stops before its header is complete (or never starts) is
// closed by the idle timeout, which covers the header; trickling the header
// does not push it.
func TestProxyHeaderIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.ProxyProtocol = true
		cfg.IdleTimeout = idle
		rec := newPPRecorder(t)
		ts := startServer(t, rec, cfg)
		full := ppV1("TCP4", netip.MustParseAddrPort("192.0.2.7:1234"), netip.MustParseAddrPort("198.51.100.1:443"))
		v2 := ppV2Proxy(netip.MustParseAddrPort("192.0.2.7:1234"), netip.MustParseAddrPort("198.51.100.1:443"))
		clients := []struct {
			name    string
			partial []byte
			trickle bool
		}{
			{"sends nothing", nil, false},
			{"half a v1 header", full[:len(full)/2], false},
			{"v1 header without its LF", full[:len(full)-1], false},
			{"half a v2 header", v2[:20], false},
			{"trickles a header", nil, true},
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		errs := make([]error, len(clients))
		for k, cl := range clients {
			start := time.Now() // before the dial: the server may accept before Dial returns
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			wg.Go(func() {
				if len(cl.partial) > 0 {
					if err := testkit.WriteAll(c, cl.partial, ioTimeout); err != nil {
						errs[k] = err
						return
					}
				}
				if cl.trickle {
					// A byte of a (long, valid) UNKNOWN line every 50 ms,
					// until the server closes.
					line := []byte("PROXY UNKNOWN " + strings.Repeat("x", 91) + "\r\n")
					wg.Go(func() {
						for i := 0; i < len(line); i++ {
							if testkit.WriteAll(c, line[i:i+1], time.Second) != nil {
								return
							}
							time.Sleep(50 * time.Millisecond)
						}
					})
				}
				if err := testkit.ExpectClosedErr(c, ioTimeout); err != nil {
					errs[k] = err
					return
				}
				d := time.Since(start)
				// Timeouts fire within 100 ms of their deadline; the margin
				// above it is for a loaded machine under -race.
				if d < idle-20*time.Millisecond || d > idle+time.Second {
					errs[k] = fmt.Errorf("closed after %v, want about %v", d.Round(time.Millisecond), idle)
				}
				c.Close()
			})
		}
		wg.Wait()
		for k, err := range errs {
			if err != nil {
				t.Errorf("%s: %v", clients[k].name, err)
			}
		}
		ts.waitStats(t, ioTimeout, "every client closed by the idle timeout", func(st frameloop.Stats) bool {
			return st.ClosedBy(frameloop.ReasonIdleTimeout) == uint64(len(clients)) && st.Connections == 0
		})
		if st := ts.stats(); totalClosed(st) != uint64(len(clients)) {
			t.Errorf("stats: %s", fmtStats(&st))
		}
		if got := rec.opens(); len(got) != 0 {
			t.Errorf("OnOpen ran for connections whose header never completed: %v", got)
		}
	})
}

// A client that ends its side (or resets) before its header is complete is
// closed; the handler never hears of it, OnClose included.
func TestProxyHeaderPeerGoneEarly(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.ProxyProtocol = true
		cfg.IdleTimeout = 0
		rec := newPPRecorder(t)
		ts := startServer(t, rec, cfg)
		v1 := []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n")
		ends := []struct {
			name      string
			partial   []byte
			end       func(c *net.TCPConn) error
			halfClose bool // the client can still see the server close
		}{
			{"half-close after nothing", nil, (*net.TCPConn).CloseWrite, true},
			{"half-close after half a header", v1[:10], (*net.TCPConn).CloseWrite, true},
			{"close after half a header", v1[:10], (*net.TCPConn).Close, false},
			{"reset after half a header", v1[:10], resetClose, false},
		}
		for _, e := range ends {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			if len(e.partial) > 0 {
				if err := testkit.WriteAll(c, e.partial, ioTimeout); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond) // read by the server first
			}
			if err := e.end(c); err != nil {
				t.Fatalf("%s: %v", e.name, err)
			}
			if e.halfClose {
				if err := testkit.ExpectClosedErr(c, ioTimeout); err != nil {
					t.Errorf("%s: %v", e.name, err)
				}
				c.Close()
			}
		}
		ts.waitStats(t, ioTimeout, "every connection closed", func(st frameloop.Stats) bool {
			return totalClosed(st) == uint64(len(ends)) && st.Connections == 0
		})
		// An end of stream before the header is complete counts as a
		// missing header; a reset as a reset.
		if st := ts.stats(); st.ClosedBy(frameloop.ReasonProxyHeader) != 3 || st.ClosedBy(frameloop.ReasonReset) != 1 {
			t.Errorf("want 3 closed as proxy_header and 1 as reset: %s", fmtStats(&st))
		}
		if got := rec.opens(); len(got) != 0 {
			t.Errorf("OnOpen ran for connections whose header never completed: %v", got)
		}
		if s := rec.strays(); len(s) != 0 {
			t.Errorf("OnClose ran for %d connections whose header never completed (so OnOpen never ran): %v", len(s), s)
		}
	})
}

// A connection with a valid header behaves as any other afterwards: an
// oversize frame closes it after the replies before it.
func TestProxyHeaderThenOversize(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.ProxyProtocol = true
		cfg.MaxMessage = 100
		rec := newPPRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		var in []byte
		in = append(in, ppV2(0, 0, nil)...)
		in = append(in, testkit.Frame([]byte("before"))...)
		in = append(in, testkit.Header(101)...)
		if err := testkit.WriteAll(c, in, ioTimeout); err != nil {
			t.Fatal(err)
		}
		got, err := testkit.ReadUntilClosed(c, ioTimeout)
		if !testkit.IsClosed(err) || !bytes.Equal(got, testkit.Frame([]byte("before"))) {
			t.Fatalf("got %s then %v, want the echo of the frame before the oversize one, then the close", testkit.Preview(got), err)
		}
		c.Close() // the server lingers until the peer closes too
		ts.waitStats(t, ioTimeout, "closed as oversize", func(st frameloop.Stats) bool {
			return st.ClosedBy(frameloop.ReasonOversize) == 1
		})
	})
}

// closeOnOpen closes every connection in OnOpen and counts the frames it
// is nevertheless given.
type closeOnOpen struct {
	*recorder
	frames atomic.Int64
}

func (h *closeOnOpen) OnOpen(c *frameloop.Conn) {
	h.recorder.OnOpen(c)
	c.Close()
}

func (h *closeOnOpen) OnFrame(c *frameloop.Conn, p []byte) { h.frames.Add(1) }

// Close from OnOpen means no frame is delivered — also the frames that
// came in the same read as the PROXY header, decoded right after OnOpen.
func TestProxyCloseInOnOpenStopsTheFramesOfTheSameRead(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.ProxyProtocol = true
		h := &closeOnOpen{recorder: newRecorder(t)}
		ts := startServer(t, h, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		src := netip.MustParseAddrPort("192.0.2.7:4000")
		hdr := ppV2Proxy(src, netip.MustParseAddrPort("198.51.100.1:443"))
		if err := testkit.WriteAll(c, append(hdr, append(testkit.Frame([]byte("one")), testkit.Frame([]byte("two"))...)...), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectClosed(t, c, ioTimeout)
		if n := h.frames.Load(); n != 0 {
			t.Errorf("%d frames delivered to a connection closed in OnOpen", n)
		}
	})
}
