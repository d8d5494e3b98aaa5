package frameloop_test

// Addresses: a server on IPv6 loopback, and the peer address a Conn
// reports.

import (
	"net"
	"testing"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestIPv6LoopbackEchoes(t *testing.T) {
	probe, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("this test needs the IPv6 loopback, ::1: %v", err)
	}
	probe.Close()
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.Addr = "[::1]:0"
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		addr, ok := ts.srv.Addr().(*net.TCPAddr)
		if !ok || !addr.IP.Equal(net.IPv6loopback) || addr.Port == 0 {
			t.Fatalf("Addr() = %v, want [::1] with the port bound", ts.srv.Addr())
		}
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, c, []byte("over IPv6"), ioTimeout)
		testkit.Echo(t, c, testkit.Pattern(100<<10, 1), ioTimeout)
		// openFor matches the Conn's RemoteAddr against the client's own
		// address: [::1] and the client's port.
		server := rec.openFor(t, c, ioTimeout)
		if ra, ok := server.RemoteAddr().(*net.TCPAddr); !ok || ra.IP.To4() != nil {
			t.Errorf("RemoteAddr() = %v, want an IPv6 address", server.RemoteAddr())
		}
	})
}

func TestRemoteAddrIsThePeer(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, c, []byte("hi"), ioTimeout)
		server := rec.openFor(t, c, ioTimeout)
		if got, want := server.RemoteAddr().String(), c.LocalAddr().String(); got != want {
			t.Errorf("RemoteAddr() = %s, want the client's address %s", got, want)
		}
	})
}
