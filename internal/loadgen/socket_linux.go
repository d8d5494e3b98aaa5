package loadgen

import "golang.org/x/sys/unix"

func newSocket(family int) (int, error) {
	return unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// bindNoPort defers the choice of the local port from bind to connect, where
// the kernel may reuse a port for different destinations. Best effort: an
// older kernel simply picks the port at bind.
func bindNoPort(fd int) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
}
