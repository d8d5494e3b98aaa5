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
// deadline 0. Setting it also clears an expiry not yet read, which is what
// keeps the level-triggered descriptor from staying ready.
func (t *timer) set(deadline, now int64) error {
	if deadline == t.armed {
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

// fired notes that the deadline passed; the next set re-arms the timer.
func (t *timer) fired() { t.armed = -1 }

func (t *timer) close() { unix.Close(t.fd) }
