package loadgen

import "golang.org/x/sys/unix"

// bindNoPort defers the choice of the local port from bind to connect, where
// the kernel may reuse a port for different destinations. Best effort: an
// older kernel simply picks the port at bind.
func bindNoPort(fd int) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
}
