//go:build unix && !linux

package loadgen

import "errors"

// timer is Linux's timerfd; elsewhere the worker falls back on the
// poller's millisecond timeout.
type timer struct{ fd int }

func newTimer() (*timer, error) { return nil, errors.New("no timerfd") }

func (t *timer) set(deadline, now int64) error { return nil }
func (t *timer) fired()                        {}
func (t *timer) close()                        {}
