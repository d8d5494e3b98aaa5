package sock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket opens a non-blocking, close-on-exec stream socket.
func Socket(family int) (int, error) {
	return unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// Acceptor accepts connections without allocating: accept4 writes the
// peer's address into a buffer the Acceptor owns.
type Acceptor struct {
	raw unix.RawSockaddrAny
}

// Accept takes one connection from the listener lfd, non-blocking and
// close-on-exec. It returns the raw errno so callers can compare it.
func (a *Acceptor) Accept(lfd int) (int, Addr, error) {
	n := uint32(unix.SizeofSockaddrAny)
	fd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd),
		uintptr(unsafe.Pointer(&a.raw)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, Addr{}, errno
	}
	return int(fd), a.addr(), nil
}

func (a *Acceptor) addr() Addr {
	switch a.raw.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&a.raw))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		out := Addr{family: familyInet4, port: uint16(p[0])<<8 | uint16(p[1])}
		out.ip[10], out.ip[11] = 0xff, 0xff
		copy(out.ip[12:], sa.Addr[:])
		return out
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&a.raw))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return Addr{family: familyInet6, port: uint16(p[0])<<8 | uint16(p[1]), ip: sa.Addr}
	case unix.AF_UNIX:
		return UnixAddr()
	}
	return Addr{}
}

// one is the value of a boolean socket option turned on. Being a package
// variable, passing its address to setsockopt allocates nothing, unlike
// unix.SetsockoptInt on every accepted connection.
var one int32 = 1

// SetNoDelay turns Nagle's algorithm off: replies are already batched per
// loop pass, so delaying them further only adds latency.
func SetNoDelay(fd int) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
