package frameloop

import "time"

// warnEvery is how often one kind of warning may be logged per loop:
// a flood of bad clients must not become a flood of log lines.
const warnEvery = 10 * time.Second

// rateLimit lets one log line through per period and counts the rest.
type rateLimit struct {
	every      time.Duration
	next       int64
	suppressed int
}

func (r *rateLimit) allow(now int64) bool {
	if now < r.next {
		r.suppressed++
		return false
	}
	r.next = now + int64(r.every)
	return true
}

func (r *rateLimit) takeSuppressed() int {
	n := r.suppressed
	r.suppressed = 0
	return n
}
