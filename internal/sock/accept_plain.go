//go:build darwin || netbsd || openbsd

package sock

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// darwin, netbsd and openbsd lack accept4 in x/sys: accept, then set the
// flags under the fork lock.
func accept(lfd int) (int, unix.Sockaddr, error) {
	syscall.ForkLock.RLock()
	fd, sa, err := unix.Accept(lfd)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, sa, nil
}
