//go:build unix

package poller

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// wakePipe is a non-blocking pipe whose read end a poller watches, for
// the backends with no wakeup primitive of their own (poll, and kqueue
// where there is no EVFILT_USER). Wakes coalesce in the pipe: a full pipe
// already holds a wakeup; the poller drains it when the read end is ready.
type wakePipe struct {
	r, w int
}

func openWakePipe() (wakePipe, error) {
	var fds [2]int
	// Not every platform has pipe2: hold the fork lock so that no child
	// inherits the pipe before it is marked close-on-exec.
	syscall.ForkLock.RLock()
	err := unix.Pipe(fds[:])
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return wakePipe{}, os.NewSyscallError("pipe", err)
	}
	p := wakePipe{r: fds[0], w: fds[1]}
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			p.close()
			return wakePipe{}, os.NewSyscallError("fcntl", err)
		}
	}
	return p, nil
}

func (p wakePipe) wake() error {
	b := [1]byte{1}
	for {
		_, err := unix.Write(p.w, b[:])
		switch err {
		case nil, unix.EAGAIN: // a full pipe already holds a wakeup
			return nil
		case unix.EINTR:
			continue
		default:
			return os.NewSyscallError("pipe write", err)
		}
	}
}

func (p wakePipe) drain() {
	var buf [64]byte
	for {
		n, err := unix.Read(p.r, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n < len(buf) {
			return // EAGAIN or a short read: drained
		}
	}
}

func (p wakePipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}
