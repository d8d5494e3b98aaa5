package frameloop_test

// docs/behaviour.md §6.1: what a Conn tells about its connection —
// LocalAddr, the PROXY header's destination, LOCAL flag and TLVs, a value
// of the application's, a context — and the reason OnClose gets for every
// kind of close.

import (
	"errors"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// openSeen records what OnOpen could read about each connection.
type openSeen struct {
	*recorder
	mu    sync.Mutex
	local []string
	proxy []*frameloop.ProxyHeader
	value []any
}

func (h *openSeen) OnOpen(c *frameloop.Conn) {
	h.recorder.OnOpen(c)
	c.SetValue("session")
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := c.LocalAddr(); a != nil {
		h.local = append(h.local, a.String())
	}
	h.proxy = append(h.proxy, c.ProxyHeader())
	h.value = append(h.value, c.Value())
}

func TestConnLocalAddrAndValue(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		h := &openSeen{recorder: newRecorder(t)}
		ts := startServer(t, h, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, c, []byte("hi"), ioTimeout)
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.local) != 1 || h.local[0] != c.RemoteAddr().String() {
			t.Errorf("LocalAddr in OnOpen: %v, want the address the client dialled, %v", h.local, c.RemoteAddr())
		}
		if h.proxy[0] != nil {
			t.Errorf("ProxyHeader without the PROXY protocol: %+v, want nil", h.proxy[0])
		}
		if h.value[0] != "session" {
			t.Errorf("Value after SetValue: %v", h.value[0])
		}
	})
}

func TestConnProxyHeaderDestinationAndTLVs(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.ProxyProtocol = true
		h := &openSeen{recorder: newRecorder(t)}
		ts := startServer(t, h, cfg)
		src := netip.MustParseAddrPort("192.0.2.7:40000")
		dst := netip.MustParseAddrPort("198.51.100.1:443")
		tlvs := append(tlvBytes(frameloop.ProxyTLVAuthority, "example.com"), tlvBytes(frameloop.ProxyTLVUniqueID, "req-42")...)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.WriteAll(c, ppV2Proxy(src, dst, tlvs...), ioTimeout)
		testkit.Echo(t, c, []byte("hi"), ioTimeout)
		local := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.WriteAll(local, ppV2(0, 0x00, nil), ioTimeout) // a health check
		testkit.Echo(t, local, []byte("hi"), ioTimeout)

		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.proxy) != 2 || h.proxy[0] == nil || h.proxy[1] == nil {
			t.Fatalf("ProxyHeader in OnOpen: %v", h.proxy)
		}
		p := h.proxy[0]
		if p.Local || p.Source != src || p.Destination != dst {
			t.Errorf("ProxyHeader = %+v, want source %v, destination %v", p, src, dst)
		}
		if v, ok := p.TLV(frameloop.ProxyTLVAuthority); !ok || string(v) != "example.com" {
			t.Errorf("SNI TLV = %q, %v", v, ok)
		}
		if v, ok := p.TLV(frameloop.ProxyTLVUniqueID); !ok || string(v) != "req-42" {
			t.Errorf("unique id TLV = %q, %v", v, ok)
		}
		if !h.proxy[1].Local {
			t.Errorf("a LOCAL header: ProxyHeader.Local = false")
		}
	})
}

func tlvBytes(typ byte, v string) []byte {
	return append([]byte{typ, byte(len(v) >> 8), byte(len(v))}, v...)
}

// OnClose gets an error for every reason, which ReasonOf maps back.
func TestOnCloseReasonForEveryKindOfClose(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = 1000
		rec := newRecorder(t)
		rec.onFrame = func(c *frameloop.Conn, p []byte) {
			if string(p) == "close" {
				c.Close()
				return
			}
			c.Write(p)
		}
		ts := startServer(t, rec, cfg)
		cases := []struct {
			do     func(c interface{ Write([]byte) (int, error) }) error
			want   error
			reason frameloop.CloseReason
		}{
			{func(c interface{ Write([]byte) (int, error) }) error { return nil }, frameloop.ErrPeerClosed, frameloop.ReasonPeerClosed},
			{func(c interface{ Write([]byte) (int, error) }) error {
				_, err := c.Write(testkit.Frame([]byte("close")))
				return err
			},
				frameloop.ErrLocalClose, frameloop.ReasonLocal},
			{func(c interface{ Write([]byte) (int, error) }) error {
				_, err := c.Write(testkit.Header(5000))
				return err
			},
				frameloop.ErrFrameTooLarge, frameloop.ReasonOversize},
			{nil, syscall.ECONNRESET, frameloop.ReasonReset},
		}
		for _, tc := range cases {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			testkit.Echo(t, c, []byte("hi"), ioTimeout)
			switch {
			case tc.do == nil:
				resetClose(c)
			default:
				if err := tc.do(c); err != nil {
					t.Fatal(err)
				}
				if tc.reason == frameloop.ReasonPeerClosed {
					c.Close()
				} else {
					testkit.ExpectClosed(t, c, ioTimeout)
					c.Close()
				}
			}
			ev := rec.closeFor(t, c, ioTimeout)
			if !errors.Is(ev.err, tc.want) || frameloop.ReasonOf(ev.err) != tc.reason {
				t.Errorf("OnClose got %v (reason %v), want %v (%v)", ev.err, frameloop.ReasonOf(ev.err), tc.want, tc.reason)
			}
		}
	})
}
