package loadgen

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/frameloop/frameloop/internal/sock"
	"golang.org/x/sys/unix"
)

// dialer makes the sockets of a run: non-blocking, close-on-exec, Nagle off
// for TCP, and bound to a spread of loopback source addresses when one
// address has too few ephemeral ports for them all. Connecting is left to
// the worker, which waits for it on its poller.
type dialer struct {
	family    int
	target    unix.Sockaddr
	tcp       bool
	sources   []unix.Sockaddr // nil: the kernel picks the source address
	perSource int             // connections per entry of sources
}

func newDialer(ep sock.Endpoint, total int) (*dialer, error) {
	d := &dialer{}
	switch ep.Network {
	case "unix":
		d.family = unix.AF_UNIX
		d.target = &unix.SockaddrUnix{Name: ep.Path}
		return d, nil
	case "tcp4":
		d.family, d.tcp = unix.AF_INET, true
		d.target = &unix.SockaddrInet4{Port: ep.Port, Addr: ep.IP.As4()}
	case "tcp6":
		d.family, d.tcp = unix.AF_INET6, true
		d.target = &unix.SockaddrInet6{Port: ep.Port, Addr: ep.IP.As16()}
	default:
		return nil, fmt.Errorf("unknown network %q", ep.Network)
	}
	ports := ephemeralPorts()
	// Leave some of the range to the rest of the machine.
	per := ports - min(1024, ports/4)
	if total <= per {
		return d, nil
	}
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	if !ep.IP.Is4() || !loopback.Contains(ep.IP) {
		return nil, fmt.Errorf("%d connections need more than the %d ephemeral ports one source address has (ip_local_port_range); "+
			"spreading them over source addresses 127.0.0.2, 127.0.0.3, ... works only for a target on 127.0.0.0/8", total, ports)
	}
	n := (total + per - 1) / per
	if n > 1<<24-3 {
		return nil, fmt.Errorf("%d connections need more loopback source addresses than 127.0.0.0/8 has", total)
	}
	src := netip.MustParseAddr("127.0.0.2")
	for range n {
		d.sources = append(d.sources, &unix.SockaddrInet4{Addr: src.As4()})
		src = src.Next()
	}
	d.perSource = per
	return d, nil
}

// clone is a copy of d for one worker. x/sys's Sockaddr values convert
// themselves into a raw buffer they hold on every Connect or Bind, so two
// threads must not share one.
func (d *dialer) clone() *dialer {
	c := *d
	c.target = cloneSockaddr(d.target)
	c.sources = make([]unix.Sockaddr, len(d.sources))
	for i, s := range d.sources {
		c.sources[i] = cloneSockaddr(s)
	}
	if d.sources == nil {
		c.sources = nil
	}
	return &c
}

func cloneSockaddr(sa unix.Sockaddr) unix.Sockaddr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &unix.SockaddrInet4{Port: sa.Port, Addr: sa.Addr}
	case *unix.SockaddrInet6:
		return &unix.SockaddrInet6{Port: sa.Port, ZoneId: sa.ZoneId, Addr: sa.Addr}
	case *unix.SockaddrUnix:
		return &unix.SockaddrUnix{Name: sa.Name}
	}
	panic(fmt.Sprintf("unexpected socket address %T", sa))
}

// socket makes the socket for connection id, ready to connect.
func (d *dialer) socket(id uint32) (int, error) {
	fd, err := sock.Socket(d.family)
	if err != nil {
		if err == unix.EMFILE || err == unix.ENFILE {
			return -1, fmt.Errorf("socket: %w (raise the open-file limit: ulimit -n)", err)
		}
		return -1, os.NewSyscallError("socket", err)
	}
	if d.tcp {
		if err := sock.SetNoDelay(fd); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("setsockopt TCP_NODELAY", err)
		}
	}
	if d.sources != nil {
		src := d.sources[int(id)/d.perSource]
		bindNoPort(fd)
		if err := unix.Bind(fd, src); err != nil {
			unix.Close(fd)
			a := src.(*unix.SockaddrInet4).Addr
			return -1, fmt.Errorf("bind source address %s: %w", netip.AddrFrom4(a), err)
		}
	}
	return fd, nil
}
