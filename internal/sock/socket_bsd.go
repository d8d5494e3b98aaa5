//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package sock

import (
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket opens a non-blocking, close-on-exec stream socket.
func Socket(family int) (int, error) {
	// No SOCK_NONBLOCK on every BSD: hold the fork lock so that no child
	// inherits the descriptor before it is marked close-on-exec.
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Acceptor accepts connections from a listener.
type Acceptor struct{}

// Accept takes one connection from the listener lfd, non-blocking and
// close-on-exec.
func (a *Acceptor) Accept(lfd int) (int, Addr, error) {
	fd, sa, err := accept(lfd)
	if err != nil {
		if errno, ok := err.(unix.Errno); ok {
			return -1, Addr{}, errno
		}
		return -1, Addr{}, err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return fd, AddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))), nil
	case *unix.SockaddrInet6:
		return fd, AddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))), nil
	case *unix.SockaddrUnix:
		return fd, UnixAddr(), nil
	}
	return fd, Addr{}, nil
}

// SetNoDelay turns Nagle's algorithm off: replies are already batched per
// loop pass, so delaying them further only adds latency.
func SetNoDelay(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
}
