package loadgen

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// timerfdPending reports how long until the timer fires; 0 when disarmed.
func timerfdPending(t *testing.T, tm *timer) time.Duration {
	t.Helper()
	var cur unix.ItimerSpec
	if err := unix.TimerfdGettime(tm.fd, &cur); err != nil {
		t.Fatal(err)
	}
	return time.Duration(cur.Value.Nano())
}

// The timer is moved only when it must fire earlier, or is not pending:
// moving it costs a reprogramming, waking early only a pass.
func TestTimerKeepsAnEarlierDeadline(t *testing.T) {
	tm, err := newTimer()
	if err != nil {
		t.Fatal(err)
	}
	defer tm.close()
	n := now()
	if err := tm.set(n+int64(time.Second), n); err != nil {
		t.Fatal(err)
	}
	if err := tm.set(n+int64(2*time.Second), n); err != nil {
		t.Fatal(err)
	}
	if d := timerfdPending(t, tm); d <= 0 || d > time.Second {
		t.Errorf("later deadline moved the timer: fires in %s, want at most 1s", d)
	}
	if err := tm.set(0, n); err != nil {
		t.Fatal(err)
	}
	if d := timerfdPending(t, tm); d <= 0 {
		t.Error("disarming dropped a pending deadline")
	}
	if err := tm.set(n+int64(100*time.Millisecond), n); err != nil {
		t.Fatal(err)
	}
	if d := timerfdPending(t, tm); d > 100*time.Millisecond {
		t.Errorf("an earlier deadline did not move the timer: fires in %s", d)
	}

	// Once it has fired, fired clears the expiry (the descriptor is no
	// longer readable) and the next deadline arms it again.
	n = now()
	if err := tm.set(n+int64(time.Millisecond), n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	tm.fired()
	var b [8]byte
	if _, err := unix.Read(tm.fd, b[:]); err != unix.EAGAIN {
		t.Errorf("after fired, reading the timerfd: %v, want EAGAIN", err)
	}
	n = now()
	if err := tm.set(n+int64(time.Second), n); err != nil {
		t.Fatal(err)
	}
	if d := timerfdPending(t, tm); d <= 0 {
		t.Error("not re-armed after firing")
	}
}
