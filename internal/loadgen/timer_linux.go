package loadgen

import (
	"os"

	"golang.org/x/sys/unix"
)

// timer wakes the worker's poller at a nanosecond-precise time: open-loop
// frames are due every few microseconds, and epoll_wait's millisecond
// timeout would send them late, in bursts, adding up to a millisecond to
// every latency measured from its intended time.
type timer struct {
	fd    int
	armed int64 // the deadline set; 0: disarmed
}

func newTimer() (*timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	return &timer{fd: fd}, nil
}

// set makes the timer fire at deadline (on the package clock), or never for
// deadline 0. A timer still pending for an earlier deadline is left alone:
// it wakes the worker a little early, which costs one pass, whereas moving
// it costs a reprogramming of the CPU's timer, which is dear where that
// traps to a hypervisor (see spinWindow). Setting it also clears an expiry
// not yet read.
func (t *timer) set(deadline, now int64) error {
	if deadline == t.armed || (t.armed > now && (deadline == 0 || t.armed < deadline)) {
		return nil
	}
	var spec unix.ItimerSpec
	if deadline != 0 {
		d := max(deadline-now, 1) // a zero it_value would disarm it
		spec.Value = unix.NsecToTimespec(d)
	}
	for {
		err := unix.TimerfdSettime(t.fd, 0, &spec, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("timerfd_settime", err)
		}
		t.armed = deadline
		return nil
	}
}

// fired notes that the timer expired: reading the expiry count keeps the
// level-triggered descriptor from staying ready, and leaves the one-shot
// timer disarmed, which costs no reprogramming (it is no longer queued).
func (t *timer) fired() {
	var b [8]byte
	for {
		if _, err := unix.Read(t.fd, b[:]); err != unix.EINTR {
			break
		}
	}
	t.armed = 0
}

func (t *timer) close() { unix.Close(t.fd) }
