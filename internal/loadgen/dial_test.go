package loadgen

import (
	"net"
	"net/netip"
	"testing"

	"github.com/frameloop/frameloop/internal/sock"
	"golang.org/x/sys/unix"
)

func TestDialerSpreadsSourceAddresses(t *testing.T) {
	ports := ephemeralPorts()
	lo := sock.Endpoint{Network: "tcp4", IP: netip.MustParseAddr("127.0.0.1"), Port: 9}
	d, err := newDialer(lo, 10)
	if err != nil || d.sources != nil {
		t.Fatalf("10 connections: sources %v, %v", d.sources, err)
	}
	d, err = newDialer(lo, 3*ports)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.sources) < 3 || d.perSource*len(d.sources) < 3*ports || d.perSource >= ports {
		t.Errorf("%d sources of %d for %d connections over %d ports", len(d.sources), d.perSource, 3*ports, ports)
	}
	if a := d.sources[0].(*unix.SockaddrInet4).Addr; netip.AddrFrom4(a).String() != "127.0.0.2" {
		t.Errorf("first source %v", a)
	}
	other := sock.Endpoint{Network: "tcp4", IP: netip.MustParseAddr("10.1.2.3"), Port: 9}
	if _, err := newDialer(other, 3*ports); err == nil {
		t.Error("spreading accepted for a target outside 127.0.0.0/8")
	}
}

// A socket bound to a spread source address connects from it.
func TestDialerBindsSource(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ep, _ := sock.ParseEndpoint(ln.Addr().String())
	d, err := newDialer(ep, 1)
	if err != nil {
		t.Fatal(err)
	}
	d.sources = []unix.Sockaddr{&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 2}}, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 3}}}
	d.perSource = 1
	fd, err := d.socket(1) // the second source
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, d.target); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.3" {
		t.Errorf("connected from %s, want 127.0.0.3", got)
	}
}
