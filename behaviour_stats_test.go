package frameloop_test

// Server.Stats after known traffic: exact where the traffic is exact.

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestStatsCountKnownTraffic(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = 1000
		// Long enough not to close the busy connections on a slow machine.
		cfg.IdleTimeout = 2 * idleTimeout
		ts := startServer(t, nil, cfg)
		var bytesIn, bytesOut uint64

		// Ten 100-byte frames, echoed; then the peer closes.
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		for i := range 10 {
			testkit.Echo(t, c, testkit.Pattern(100, uint64(i)), ioTimeout)
		}
		c.Close()
		bytesIn += 10 * 104
		bytesOut += 10 * 104

		// One empty frame; then the peer closes.
		c = testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, c, nil, ioTimeout)
		c.Close()
		bytesIn += 4
		bytesOut += 4

		// An oversized header.
		c = testkit.DialTCP(t, ts.addr, ioTimeout)
		if err := testkit.WriteAll(c, testkit.Header(1001), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectClosed(t, c, ioTimeout)
		c.Close()
		bytesIn += 4

		// Part of a frame, read by the server; then a reset.
		c = testkit.DialTCP(t, ts.addr, ioTimeout)
		if err := testkit.WriteAll(c, testkit.Frame(testkit.Pattern(10, 1))[:6], ioTimeout); err != nil {
			t.Fatal(err)
		}
		bytesIn += 6
		ts.waitStats(t, ioTimeout, "the partial frame read", func(st frameloop.Stats) bool { return st.BytesIn == bytesIn })
		if err := resetClose(c); err != nil {
			t.Fatal(err)
		}

		// A silent connection, closed by the idle timeout.
		c = testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.ExpectClosed(t, c, 2*idleTimeout+late+ioTimeout)

		st := ts.waitStats(t, ioTimeout, "all five closed", func(st frameloop.Stats) bool {
			return st.Connections == 0 && totalClosed(st) == 5
		})
		want := frameloop.Stats{
			Accepted:  5,
			FramesIn:  11,
			FramesOut: 11,
			BytesIn:   bytesIn,
			BytesOut:  bytesOut,
			Closed: map[frameloop.CloseReason]uint64{
				frameloop.ReasonPeerClosed:  2,
				frameloop.ReasonOversize:    1,
				frameloop.ReasonReset:       1,
				frameloop.ReasonIdleTimeout: 1,
			},
		}
		if !reflect.DeepEqual(st, want) {
			t.Errorf("Stats:\n got %s\nwant %s", fmtStats(&st), fmtStats(&want))
		}
	})
}

// The counters are complete once Serve has returned: the connections
// closed by the shutdown are counted as closed, none as open.
func TestStatsCompleteAfterShutdown(t *testing.T) {
	const conns = 5
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		for range conns {
			testkit.Echo(t, testkit.DialTCP(t, ts.addr, ioTimeout), []byte("hello"), ioTimeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := ts.wait(serveWait); !errors.Is(err, frameloop.ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
		st := ts.stats()
		if st.Connections != 0 || st.ClosedBy(frameloop.ReasonShutdown) != conns || st.Accepted != conns || st.FramesIn != conns {
			t.Errorf("after Serve returned: %s; want 0 open, %d accepted, %d closed by the shutdown, %d frames in",
				fmtStats(&st), conns, conns, conns)
		}
	})
}
