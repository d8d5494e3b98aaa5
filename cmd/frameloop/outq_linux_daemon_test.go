//go:build linux

package main

import (
	"net"

	"golang.org/x/sys/unix"
)

const canTellUnsent = true

// unsentBytes is how much of what was written to c the peer's kernel has
// not acknowledged yet (SIOCOUTQ); ok is false if it cannot be told.
func unsentBytes(c net.Conn) (n int, ok bool) {
	tc, isTCP := c.(*net.TCPConn)
	if !isTCP {
		return 0, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil {
		return 0, false
	}
	return n, true
}
