package frameloop_test

// docs/behaviour.md §5: a client that sends frames and then shuts down its write side
// still receives every reply; the server then closes the connection.

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestHalfCloseStillGetsEveryReply(t *testing.T) {
	tests := []struct {
		name      string
		frames    int
		size      int
		highWater int // 0: the default
		// queuedAtFIN: the client reads nothing until the server has read
		// every frame and the FIN, so that megabytes of replies are still
		// queued when it sees the FIN; it checks that they are.
		queuedAtFIN int
		// readPause is how long the client waits between replies.
		readPause time.Duration
	}{
		{name: "100 × 1 KiB", frames: 100, size: 1 << 10},
		{name: "8 MiB queued when the FIN arrives", frames: 128, size: 64 << 10, highWater: 16 << 20, queuedAtFIN: 1 << 20, readPause: time.Millisecond},
		{name: "8 MiB with reading paused at the FIN", frames: 128, size: 64 << 10, readPause: time.Millisecond},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				cfg := cfg
				cfg.HighWater = tc.highWater
				rec := newRecorder(t)
				ts := startServer(t, rec, cfg)
				c := testkit.DialTCP(t, ts.addr, ioTimeout)
				payloads := make([][]byte, tc.frames)
				var stream []byte
				for i := range payloads {
					payloads[i] = testkit.Pattern(tc.size, uint64(i))
					stream = append(stream, testkit.Frame(payloads[i])...)
				}
				sent := make(chan error, 1)
				go func() {
					err := testkit.WriteAll(c, stream, 3*ioTimeout)
					if err == nil {
						err = c.CloseWrite()
					}
					sent <- err
				}()
				if tc.queuedAtFIN > 0 {
					if err := <-sent; err != nil {
						t.Fatal(err)
					}
					server := rec.openFor(t, c, ioTimeout)
					ts.waitStats(t, ioTimeout, "every frame read", func(st frameloop.Stats) bool {
						return st.FramesIn == uint64(tc.frames)
					})
					if q := server.Queued(); q < tc.queuedAtFIN {
						t.Fatalf("only %d bytes of replies queued at the FIN, want at least %d", q, tc.queuedAtFIN)
					}
				}
				for i, p := range payloads {
					if err := testkit.ExpectFrameErr(c, p, ioTimeout); err != nil {
						t.Fatalf("reply %d of %d: %v", i, tc.frames, err)
					}
					time.Sleep(tc.readPause)
				}
				if tc.queuedAtFIN == 0 {
					if err := <-sent; err != nil {
						t.Fatal(err)
					}
				}
				// Then a clean end of stream: not a reset, nothing more.
				got, err := testkit.ReadUntilClosed(c, ioTimeout)
				if len(got) > 0 || !errors.Is(err, io.EOF) {
					t.Fatalf("after the replies: %d more bytes, %v; want a clean end of stream", len(got), err)
				}
				if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrPeerClosed) {
					t.Errorf("OnClose got %v, want ErrPeerClosed for a peer that closed", ev.err)
				}
				st := ts.waitClosed(t, 1)
				if st.ClosedBy(frameloop.ReasonPeerClosed) != 1 || st.FramesOut != uint64(tc.frames) {
					t.Errorf("want one close by the peer after %d replies: %s", tc.frames, fmtStats(&st))
				}
			})
		}
	})
}
