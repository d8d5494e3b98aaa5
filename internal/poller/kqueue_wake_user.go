//go:build darwin || dragonfly || freebsd

package poller

import (
	"os"

	"golang.org/x/sys/unix"
)

// waker is an EVFILT_USER event, ident 0. EV_CLEAR resets it as Wait
// reports it, so any number of triggers before then coalesce into one
// event and there is nothing to drain.
type waker struct {
	trigger []unix.Kevent_t // written once in openWake, then only read
}

func (p *kqueue) openWake() error {
	ev := keventBuf(1)
	unix.SetKevent(&ev[0], 0, unix.EVFILT_USER, unix.EV_ADD|unix.EV_CLEAR)
	if err := p.control(ev); err != nil {
		return os.NewSyscallError("kevent", err)
	}
	unix.SetKevent(&ev[0], 0, unix.EVFILT_USER, 0)
	ev[0].Fflags = unix.NOTE_TRIGGER
	p.trigger = ev
	return nil
}

func (p *kqueue) isWake(ev *unix.Kevent_t) bool { return ev.Filter == unix.EVFILT_USER }

func (p *kqueue) drainWake() {}

// Wake is a kevent call of its own: kqueue may be changed from any thread
// while another waits on it.
func (p *kqueue) Wake() error {
	if err := p.control(p.trigger); err != nil {
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

func (p *kqueue) closeWake() {}
