//go:build netbsd || openbsd

package poller

import (
	"os"

	"golang.org/x/sys/unix"
)

// waker is a pipe whose read end is watched with EVFILT_READ: x/sys has
// no EVFILT_USER for these systems (OpenBSD and NetBSD before 10 lack it),
// as Go's own netpoller also found.
type waker struct {
	pipe wakePipe
}

func (p *kqueue) openWake() error {
	wp, err := openWakePipe()
	if err != nil {
		return err
	}
	p.pipe = wp
	ev := keventBuf(1)
	unix.SetKevent(&ev[0], wp.r, unix.EVFILT_READ, unix.EV_ADD)
	if err := p.control(ev); err != nil {
		wp.close()
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

func (p *kqueue) isWake(ev *unix.Kevent_t) bool {
	return ev.Filter == unix.EVFILT_READ && int(ev.Ident) == p.pipe.r
}

func (p *kqueue) drainWake() { p.pipe.drain() }

func (p *kqueue) Wake() error { return p.pipe.wake() }

func (p *kqueue) closeWake() { p.pipe.close() }
