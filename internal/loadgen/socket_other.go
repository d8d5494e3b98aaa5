//go:build unix && !linux

package loadgen

import (
	"syscall"

	"golang.org/x/sys/unix"
)

func newSocket(family int) (int, error) {
	// No SOCK_NONBLOCK everywhere: hold the fork lock so that no child
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

func bindNoPort(int) {}
