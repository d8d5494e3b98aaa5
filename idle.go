package frameloop

import (
	"math"
	"math/bits"
	"time"

	"github.com/frameloop/frameloop/internal/deadline"
)

// Per-connection idle timeouts (Conn.SetIdleTimeout), for protocols whose
// clients announce their own, such as MQTT's keep-alive. They stay in the
// loop's O(1) deadline lists: one list per distinct duration, since all
// entries of a list share it and appending keeps it sorted. So that a
// client cannot make the loop keep one list per duration it can name,
// durations are rounded down to eight steps per doubling (at most 12.5 %
// shorter, never longer than asked): a few dozen lists cover every
// duration from milliseconds to days.

// noIdle is the idle-list index of a connection whose idle timeout is off.
const noIdle = math.MaxUint16

// SetIdleTimeout sets this connection's idle timeout, replacing
// Config.IdleTimeout for it; 0 turns it off. The timeout counts from the
// last complete frame, now included. d is rounded down by at most 12.5 %
// (to one of eight steps per doubling). Call it from a callback (OnOpen,
// OnFrame), on the loop's goroutine.
func (c *Conn) SetIdleTimeout(d time.Duration) {
	st := c.st
	l := st.l
	if st.gen != c.gen || l.cur != c {
		return
	}
	switch {
	case d <= 0:
		st.idleIdx = noIdle
	default:
		st.idleIdx = l.idleListFor(min(d, maxTimeout))
	}
	if st.timerList == timerIdle || (st.timerList == timerNone && st.phase == phaseOpen && !st.waitWrite) {
		l.setIdle(st)
	}
}

// quantize rounds d down to eight steps per doubling.
func quantize(d time.Duration) time.Duration {
	if d < 8 {
		return d
	}
	k := bits.Len64(uint64(d)) - 1 // 2^k <= d < 2^(k+1)
	step := time.Duration(1) << (k - 3)
	return d / step * step
}

// idleListFor returns the index of the idle list for d, creating it.
func (l *loop) idleListFor(d time.Duration) uint16 {
	d = quantize(d)
	for i, list := range l.idleLists {
		if list.Duration() == d {
			return uint16(i)
		}
	}
	if len(l.idleLists) >= noIdle {
		return 0 // cannot happen with quantized durations
	}
	list := new(deadline.List)
	list.Init(d)
	l.idleLists = append(l.idleLists, list)
	return uint16(len(l.idleLists) - 1)
}

// idleList is the list of st's idle timeout, nil when it has none.
func (l *loop) idleList(st *connState) *deadline.List {
	if st.idleIdx == noIdle {
		return nil
	}
	list := l.idleLists[st.idleIdx]
	if st.idleIdx == 0 && l.cfg.IdleTimeout == 0 {
		return nil // the server's default, off
	}
	return list
}
