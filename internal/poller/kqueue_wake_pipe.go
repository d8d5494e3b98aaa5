//go:build netbsd || openbsd

package poller

import (
	"os"

	"golang.org/x/sys/unix"
)

// waker is a non-blocking pipe whose read end is watched with EVFILT_READ:
// x/sys has no EVFILT_USER for these systems (OpenBSD and NetBSD before 10
// lack it), as Go's own netpoller also found. Wakes coalesce in the pipe;
// Wait drains it.
type waker struct {
	wakeR, wakeW int
}

func (p *kqueue) openWake() error {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return os.NewSyscallError("pipe2", err)
	}
	p.wakeR, p.wakeW = fds[0], fds[1]
	ev := keventBuf(1)
	unix.SetKevent(&ev[0], p.wakeR, unix.EVFILT_READ, unix.EV_ADD)
	if err := p.control(ev); err != nil {
		p.closeWake()
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

func (p *kqueue) isWake(ev *unix.Kevent_t) bool {
	return ev.Filter == unix.EVFILT_READ && int(ev.Ident) == p.wakeR
}

func (p *kqueue) drainWake() {
	var buf [64]byte
	for {
		n, err := unix.Read(p.wakeR, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n < len(buf) {
			return // EAGAIN or a short read: drained
		}
	}
}

func (p *kqueue) Wake() error {
	b := [1]byte{1}
	for {
		_, err := unix.Write(p.wakeW, b[:])
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

func (p *kqueue) closeWake() {
	unix.Close(p.wakeR)
	unix.Close(p.wakeW)
}
