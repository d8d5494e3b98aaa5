// Package poller is the readiness API under the event loop: one small
// interface with one file per backend, in the manner of Redis's ae_*.c.
//
// A Poller is owned by one goroutine (its loop); only Wake may be called
// from elsewhere. Every registration carries a tag, returned with each
// event, so that the loop can tell an event meant for a descriptor's
// previous owner from one meant for its current one.
package poller

import (
	"fmt"
	"runtime"
)

// Interest says which readiness a descriptor is watched for.
type Interest uint8

const (
	Read Interest = 1 << iota
	Write
)

// Ready flags of an Event.
const (
	Readable uint8 = 1 << iota
	Writable
	// Hangup covers the error conditions every backend reports whether or
	// not they were asked for (EPOLLERR/EPOLLHUP, POLLERR/POLLHUP/POLLNVAL,
	// EV_EOF with an error). The loop handles it by reading, which surfaces
	// the cause.
	Hangup
	// Invalid means the descriptor is not open (POLLNVAL). Reading cannot
	// explain it; the loop drops the descriptor.
	Invalid
)

// Event is one ready descriptor.
type Event struct {
	Fd    int32
	Tag   uint32
	Ready uint8
}

// Poller watches descriptors for readiness.
type Poller interface {
	// Add starts watching fd with the given interest (possibly none).
	Add(fd int, tag uint32, in Interest) error
	// Modify changes fd's interest from old to new. Callers skip the call
	// when old == new, so backends may assume a real change.
	Modify(fd int, tag uint32, old, new Interest) error
	// Remove stops watching fd; call it before closing fd.
	Remove(fd int, cur Interest) error
	// Wait fills events with ready descriptors, blocking at most
	// timeoutMs milliseconds (-1: no limit). A wakeup or an interrupted
	// call returns early, possibly with n == 0.
	Wait(events []Event, timeoutMs int) (n int, err error)
	// Wake makes a current or the next Wait return. Safe from any
	// goroutine; several wakes before a Wait coalesce into one.
	Wake() error
	// Close releases the poller's descriptors.
	Close() error
	// Name is the backend's name as given to New.
	Name() string
}

// Backends lists the backends available on this platform, default first.
func Backends() []string { return backends }

// Default is this platform's preferred backend.
func Default() string { return backends[0] }

// New returns a poller of the named backend.
func New(backend string) (Poller, error) {
	switch backend {
	case "poll":
		return newPoll()
	case "epoll":
		if newEpoll != nil {
			return newEpoll()
		}
	case "kqueue":
		if newKqueue != nil {
			return newKqueue()
		}
	default:
		return nil, fmt.Errorf("unknown backend %q (want one of %v)", backend, backends)
	}
	return nil, fmt.Errorf("backend %q is not available on %s (want one of %v)", backend, runtime.GOOS, backends)
}

// Set by the platform files that provide the backend.
var (
	newEpoll  func() (Poller, error)
	newKqueue func() (Poller, error)
)
