//go:build unix

package sock

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// LocalAddrPort is the local address of socket fd; ok is false if it
// cannot be read or is not an IP address.
func LocalAddrPort(fd int) (ap netip.AddrPort, ok bool) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, false
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}
