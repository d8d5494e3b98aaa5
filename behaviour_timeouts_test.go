package frameloop_test

// docs/behaviour.md §3.2: a connection's deadline is set when it is accepted and pushed
// forward only by complete frames; past it the connection is closed.

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// Times are measured from just before the client acts (dials, or sends
// the frame that pushes the deadline), so the server's clock cannot start
// earlier: a deadline counts from when the loop sets it, not from when its
// pass began, so no close may come early.
const (
	idleTimeout = 400 * time.Millisecond
	early       = 0
	// late is how far past its deadline a close may come on a loaded
	// machine; the spec's 100 ms is not a test's to enforce.
	late = time.Second
)

func TestIdleTimeoutClosesASilentConnection(t *testing.T) {
	tests := []struct {
		name string
		// prelude is sent after connecting; the idle period starts after it
		// when resets is set, else at the connection.
		prelude []byte
		resets  bool
	}{
		{name: "silent from the start"},
		{name: "silent after one frame", prelude: testkit.Frame([]byte("one")), resets: true},
		{name: "silent after an empty frame", prelude: testkit.Frame(nil), resets: true},
		{name: "silent after part of a header", prelude: testkit.Header(3)[:3]},
		{name: "silent after part of a payload", prelude: testkit.Frame([]byte("abcdef"))[:7]},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.IdleTimeout = idleTimeout
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				c := testkit.DialTCP(t, ts.addr, ioTimeout)
				if tc.prelude != nil {
					if tc.resets {
						start = time.Now()
					}
					if err := testkit.WriteAll(c, tc.prelude, ioTimeout); err != nil {
						t.Fatal(err)
					}
					if tc.resets {
						if err := testkit.ExpectFrameErr(c, tc.prelude[4:], ioTimeout); err != nil {
							t.Fatal(err)
						}
					}
				}
				testkit.ExpectClosed(t, c, idleTimeout+late+ioTimeout)
				within(t, "closed", time.Since(start), idleTimeout-early, idleTimeout+late)
				if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrIdleTimeout) {
					t.Errorf("OnClose got %v, want ErrIdleTimeout", ev.err)
				}
			})
		}
		t.Cleanup(func() {
			if st := ts.stats(); st.ClosedBy(frameloop.ReasonIdleTimeout) != uint64(len(tests)) {
				t.Errorf("want %d idle timeouts: %s", len(tests), fmtStats(&st))
			}
		})
	})
}

func TestIdleTimeoutPushedByCompleteFrames(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.IdleTimeout = idleTimeout
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		// A complete frame every 100 ms keeps it open for four timeouts.
		start := time.Now()
		var last time.Time
		for i := 0; time.Since(start) < 4*idleTimeout; i++ {
			last = time.Now()
			testkit.Echo(t, c, testkit.Pattern(i%50, uint64(i)), ioTimeout)
			time.Sleep(100 * time.Millisecond)
		}
		if st := ts.stats(); totalClosed(st) != 0 {
			t.Fatalf("a connection closed while frames kept arriving: %s", fmtStats(&st))
		}
		// Then silence: closed one timeout after the last frame.
		testkit.ExpectClosed(t, c, idleTimeout+late+ioTimeout)
		within(t, "closed after the last frame", time.Since(last), idleTimeout-early, idleTimeout+late)
		if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrIdleTimeout) {
			t.Errorf("OnClose got %v, want ErrIdleTimeout", ev.err)
		}
	})
}

// Slowloris: bytes that never complete a frame do not keep a connection.
func TestIdleTimeoutNotPushedByTrickledBytes(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		chunk int
		every time.Duration
	}{
		{name: "one byte every 50ms", frame: testkit.Frame(testkit.Pattern(100, 1)), chunk: 1, every: 50 * time.Millisecond},
		{name: "a large frame in 4 KiB pieces", frame: testkit.Frame(testkit.Pattern(512<<10, 2)), chunk: 4 << 10, every: 25 * time.Millisecond},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.IdleTimeout = idleTimeout
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				if d := time.Duration(len(tc.frame)/tc.chunk) * tc.every; d < 3*idleTimeout {
					t.Fatalf("the frame would be complete after %v: too soon to tell", d)
				}
				start := time.Now()
				c := testkit.DialTCP(t, ts.addr, ioTimeout)
				trickled := make(chan error, 1)
				go func() {
					// Ends with an error once the server has closed.
					trickled <- writeChunks(c, tc.frame, func(int) int { return tc.chunk }, tc.every)
				}()
				got, err := testkit.ReadUntilClosed(c, idleTimeout+late+ioTimeout)
				elapsed := time.Since(start)
				c.SetWriteDeadline(time.Now())
				if werr := <-trickled; werr == nil {
					t.Error("the whole frame was trickled in without the connection closing")
				}
				if len(got) > 0 || !testkit.IsClosed(err) {
					t.Fatalf("want the server to close the connection, got %d bytes, %v", len(got), err)
				}
				within(t, "closed", elapsed, idleTimeout-early, idleTimeout+late)
				if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrIdleTimeout) {
					t.Errorf("OnClose got %v, want ErrIdleTimeout", ev.err)
				}
			})
		}
	})
}

// Idle connections cost nothing while nothing is due, and each still
// closes on its own deadline: many, accepted at different times.
func TestIdleTimeoutManyConnectionsStaggered(t *testing.T) {
	const conns = 30
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.IdleTimeout = idleTimeout
		ts := startServer(t, nil, cfg)
		err := runGoroutines(conns, func(i int) error {
			time.Sleep(time.Duration(i) * 10 * time.Millisecond)
			start := time.Now()
			c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := testkit.ExpectClosedErr(c, idleTimeout+late+ioTimeout); err != nil {
				return err
			}
			if d := time.Since(start); d < idleTimeout-early || d > idleTimeout+late {
				return errors.New("closed after " + d.String())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ts.waitStats(t, ioTimeout, "all timed out", func(st frameloop.Stats) bool {
			return st.Connections == 0 && st.ClosedBy(frameloop.ReasonIdleTimeout) == conns
		})
	})
}
