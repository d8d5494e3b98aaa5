package frameloop_test

// docs/behaviour.md §3.2: Conn.SetIdleTimeout replaces the server's idle
// timeout for one connection (MQTT's keep-alive): shorter, longer, or
// off; rounded down by at most 12.5 %, never later.

import (
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestSetIdleTimeoutPerConnection(t *testing.T) {
	const serverIdle = 2 * time.Second
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.IdleTimeout = serverIdle
		rec := newRecorder(t)
		rec.onFrame = func(c *frameloop.Conn, p []byte) {
			if d, err := time.ParseDuration(string(p)); err == nil {
				c.SetIdleTimeout(d)
			}
			c.WriteRaw(c.Frame().Raw)
		}
		ts := startServer(t, rec, cfg)

		short := testkit.DialTCP(t, ts.addr, ioTimeout)
		off := testkit.DialTCP(t, ts.addr, ioTimeout)
		start := time.Now()
		testkit.Echo(t, short, []byte("400ms"), ioTimeout)
		testkit.Echo(t, off, []byte("0s"), ioTimeout)

		// The short one closes between 350 ms (400 ms rounded down by at
		// most an eighth) and 400 ms plus the usual lateness.
		testkit.ExpectClosed(t, short, ioTimeout)
		within(t, "the 400 ms connection closed", time.Since(start), 350*time.Millisecond, 400*time.Millisecond+late)
		if ev := rec.closeFor(t, short, ioTimeout); frameloop.ReasonOf(ev.err) != frameloop.ReasonIdleTimeout {
			t.Errorf("OnClose got %v, want an idle timeout", ev.err)
		}
		// The one with its timeout off outlives the server's.
		testkit.ExpectNothing(t, off, serverIdle+500*time.Millisecond)
		testkit.Echo(t, off, []byte("still here"), ioTimeout)
	})
}
