package frameloop_test

// Conn.Write and Conn.Close from any goroutine: order per writer, ErrClosed
// after the close, handles that never outlive their connection, the
// MaxQueued cap.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestWritesFromManyGoroutinesKeepEachWritersOrder(t *testing.T) {
	writers, perWriter := 8, 400
	if testing.Short() {
		perWriter = 100
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		server := rec.openFor(t, c, ioTimeout)

		written := make(chan error, 1)
		go func() {
			written <- runGoroutines(writers, func(w int) error {
				for seq := range perWriter {
					// writer id, sequence number, then some padding
					p := make([]byte, 8+(w*31+seq*17)%300)
					binary.LittleEndian.PutUint32(p, uint32(w))
					binary.LittleEndian.PutUint32(p[4:], uint32(seq))
					for {
						err := server.Write(p)
						if err == nil {
							break
						}
						if !errors.Is(err, frameloop.ErrBackpressure) {
							return fmt.Errorf("Write: %v", err)
						}
						time.Sleep(time.Millisecond)
					}
				}
				return nil
			})
		}()
		next := make([]int, writers)
		for range writers * perWriter {
			p, err := testkit.ReadFrame(c, ioTimeout, testkit.MaxFrame)
			if err != nil {
				t.Fatalf("after %v frames: %v", next, err)
			}
			w, seq := int(binary.LittleEndian.Uint32(p)), int(binary.LittleEndian.Uint32(p[4:]))
			if w >= writers || seq != next[w] {
				t.Fatalf("writer %d's frame %d arrived when %d was due", w, seq, next[w])
			}
			if want := 8 + (w*31+seq*17)%300; len(p) != want {
				t.Fatalf("writer %d's frame %d has %d bytes, want %d", w, seq, len(p), want)
			}
			next[w]++
		}
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		testkit.ExpectNothing(t, c, 50*time.Millisecond)
	})
}

func TestWriteAfterCloseReturnsErrClosed(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		server := rec.openFor(t, c, ioTimeout)
		if err := server.Write([]byte("first")); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := server.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Closing: no more writes, no second close.
		if err := server.Write([]byte("too late")); !errors.Is(err, frameloop.ErrClosed) {
			t.Errorf("Write after Close returned %v, want ErrClosed", err)
		}
		if err := server.Close(); !errors.Is(err, frameloop.ErrClosed) {
			t.Errorf("a second Close returned %v, want ErrClosed", err)
		}
		// What was written before the close arrives; then the end.
		if err := testkit.ExpectFrameErr(c, []byte("first"), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectClosed(t, c, ioTimeout)
		c.Close()
		if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrLocalClose) {
			t.Errorf("OnClose got %v, want ErrLocalClose after Close", ev.err)
		}
		// Closed: still ErrClosed, nothing queued.
		if err := server.Write([]byte("later")); !errors.Is(err, frameloop.ErrClosed) {
			t.Errorf("Write after the connection closed returned %v, want ErrClosed", err)
		}
		if q := server.Queued(); q != 0 {
			t.Errorf("Queued() = %d on a closed connection", q)
		}
	})
}

// A handle kept from a closed connection never reaches the connection that
// reuses its slot and descriptor.
func TestStaleHandleNeverReachesANewConnection(t *testing.T) {
	const rounds = 20
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		prev := testkit.DialTCP(t, ts.addr, ioTimeout)
		stale := rec.openFor(t, prev, ioTimeout)
		for i := range rounds {
			prev.Close()
			rec.closeFor(t, prev, ioTimeout)
			next := testkit.DialTCP(t, ts.addr, ioTimeout)
			fresh := rec.openFor(t, next, ioTimeout)
			if err := stale.Write([]byte("stale")); !errors.Is(err, frameloop.ErrClosed) {
				t.Fatalf("round %d: Write through a stale handle returned %v, want ErrClosed", i, err)
			}
			if err := stale.Close(); !errors.Is(err, frameloop.ErrClosed) {
				t.Fatalf("round %d: Close through a stale handle returned %v, want ErrClosed", i, err)
			}
			if q := stale.Queued(); q != 0 {
				t.Fatalf("round %d: Queued through a stale handle = %d", i, q)
			}
			// The new connection gets only what is written to it.
			if err := fresh.Write([]byte("fresh")); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if err := testkit.ExpectFrameErr(next, []byte("fresh"), ioTimeout); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			testkit.ExpectNothing(t, next, 20*time.Millisecond)
			testkit.Echo(t, next, []byte("echo"), ioTimeout)
			prev, stale = next, fresh
		}
	})
}

func TestErrBackpressurePastMaxQueued(t *testing.T) {
	const (
		maxQueued = 256 << 10
		size      = 16 << 10
	)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = 64 << 10
		cfg.LowWater, cfg.HighWater, cfg.MaxQueued = 32<<10, 64<<10, maxQueued
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout) // never reads until the end
		server := rec.openFor(t, c, ioTimeout)

		if err := server.Write(make([]byte, maxQueued)); !errors.Is(err, frameloop.ErrTooLarge) {
			t.Errorf("a frame larger than MaxQueued: Write returned %v, want ErrTooLarge", err)
		}
		// The kernel's buffers take their share first; then the queue
		// fills, and the first write that would pass the cap is refused.
		var accepted int
		deadline := time.Now().Add(ioTimeout)
		for {
			p := testkit.Pattern(size, uint64(accepted))
			// Only this goroutine writes, and the loop only drains: the
			// queue holds at most this much when Write looks at it.
			before := server.Queued()
			err := server.Write(p)
			if q := server.Queued(); q > maxQueued {
				t.Fatalf("Queued() = %d, past MaxQueued %d", q, maxQueued)
			}
			if errors.Is(err, frameloop.ErrBackpressure) {
				if before+4+size <= maxQueued {
					t.Errorf("ErrBackpressure with at most %d bytes queued: a %d-byte frame fits under %d", before, 4+size, maxQueued)
				}
				break
			}
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			accepted++
			if time.Now().After(deadline) {
				t.Fatalf("no ErrBackpressure after %d frames to a client that does not read", accepted)
			}
		}
		if st := ts.stats(); st.Backpressure == 0 {
			t.Errorf("Stats().Backpressure is 0 after an ErrBackpressure: %s", fmtStats(&st))
		}
		// Every accepted frame arrives, and nothing else; then writes work
		// again.
		for i := range accepted {
			if err := testkit.ExpectFrameErr(c, testkit.Pattern(size, uint64(i)), ioTimeout); err != nil {
				t.Fatalf("frame %d of %d: %v", i, accepted, err)
			}
		}
		testkit.ExpectNothing(t, c, 50*time.Millisecond)
		if err := server.Write([]byte("again")); err != nil {
			t.Fatalf("Write after the queue drained: %v", err)
		}
		if err := testkit.ExpectFrameErr(c, []byte("again"), ioTimeout); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCloseFromAnotherGoroutineSendsQueuedFramesFirst(t *testing.T) {
	const frames, size = 256, 32 << 10 // 8 MiB: more than the kernel's buffers hold
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxQueued = 2 * frames * (4 + size)
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		// No reading until the close: frames are still in the server's
		// queue when Close comes.
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		server := rec.openFor(t, c, ioTimeout)
		done := make(chan error, 1)
		go func() {
			for i := range frames {
				if err := server.Write(testkit.Pattern(size, uint64(i))); err != nil {
					done <- fmt.Errorf("Write %d: %w", i, err)
					return
				}
			}
			done <- server.Close()
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if q := server.Queued(); q == 0 {
			t.Fatal("everything was sent before Close: nothing to test")
		}
		for i := range frames {
			if err := testkit.ExpectFrameErr(c, testkit.Pattern(size, uint64(i)), ioTimeout); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
		}
		testkit.ExpectClosed(t, c, ioTimeout)
		c.Close()
		if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrLocalClose) {
			t.Errorf("OnClose got %v, want ErrLocalClose after Close", ev.err)
		}
		st := ts.waitClosed(t, 1)
		if st.ClosedBy(frameloop.ReasonLocal) != 1 {
			t.Errorf("want the close counted as local: %s", fmtStats(&st))
		}
	})
}
