package frameloop_test

// docs/behaviour.md §6: EchoHandler's replies count as written by the
// loop's goroutine — in order with the handler's own Writes around them,
// counted, still sent after a panic — although, while nothing is queued,
// they are written straight from the loop's read buffer (echo.go). These
// tests pipeline many frames in one write, so that one read holds many
// echoes and the direct path, its fall-backs and its partial writes all
// run.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// mixedEcho answers a frame "cmd:" + kind + ... by its kind: 'w' gets
// "W" and the frame's body written, 's' no reply, 'p' is echoed and then
// panics; any other frame (kind 'e', a bystander's) is echoed.
type mixedEcho struct{ frameloop.EchoHandler }

func (mixedEcho) OnFrame(c *frameloop.Conn, p []byte) {
	kind := byte('e')
	if len(p) > 4 && string(p[:4]) == "cmd:" {
		kind = p[4]
	}
	switch kind {
	case 'w':
		c.Write(append([]byte("W"), p...))
	case 's':
	case 'p':
		frameloop.EchoHandler{}.OnFrame(c, p)
		panic("after an echo")
	default:
		frameloop.EchoHandler{}.OnFrame(c, p)
	}
}

// mixedBody is a frame's body for mixedEcho.
func mixedBody(kind byte, i, size int) []byte {
	body := fmt.Appendf(nil, "cmd:%c%d:", kind, i)
	return append(body, testkit.Pattern(size, uint64(i))...)
}

// mixedStream makes n frames cycling through the kinds of mixedEcho but
// 'p', of assorted sizes, and the replies expected, in order.
func mixedStream(n int) (stream []byte, replies [][]byte) {
	kinds := "eeweseewwsee"
	for i := range n {
		k := kinds[i%len(kinds)]
		body := mixedBody(k, i, i*37%700)
		stream = testkit.AppendFrame(stream, body)
		switch k {
		case 'e':
			replies = append(replies, body)
		case 'w':
			replies = append(replies, append([]byte("W"), body...))
		}
	}
	return stream, replies
}

func TestEchoInOrderWithTheHandlersWrites(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, mixedEcho{}, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		stream, replies := mixedStream(3000)
		werr := make(chan error, 1)
		go func() { werr <- testkit.WriteAll(c, stream, ioTimeout) }()
		for i, want := range replies {
			got, err := testkit.ReadFrame(c, ioTimeout, 1<<20)
			if err != nil {
				t.Fatalf("reply %d of %d: %v", i, len(replies), err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("reply %d is %s, want %s", i, testkit.Preview(got), testkit.Preview(want))
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		testkit.ExpectNothing(t, c, 50*time.Millisecond)
		ts.waitStats(t, ioTimeout, "every reply counted", func(st frameloop.Stats) bool {
			return st.FramesOut == uint64(len(replies)) && st.FramesIn == 3000
		})
	})
}

// A client that does not read makes the kernel take only part of the
// echoes a read produced: the rest is queued, ahead of what comes after,
// and every byte arrives in order. The client writes in bursts of whole
// frames, 32 KiB each, so that every read of the server ends at a frame's
// end and its echoes go the direct way, up to the one the full socket
// takes only in part.
func TestEchoToASlowReaderKeepsEveryByte(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		const burst, frames = 32 << 10, 16
		var stream []byte
		for i := 0; len(stream) < 10<<20; i++ {
			stream = testkit.AppendFrame(stream, testkit.Pattern(burst/frames-4, uint64(i)))
		}
		var sent atomic.Int64
		werr := make(chan error, 1)
		go func() {
			for off := 0; off < len(stream); off += burst {
				if err := testkit.WriteAll(c, stream[off:off+burst], ioTimeout); err != nil {
					werr <- err
					return
				}
				sent.Store(int64(off + burst))
				time.Sleep(100 * time.Microsecond)
			}
			werr <- nil
		}()
		// Nothing read until more was sent than the server's socket can
		// hold unacknowledged (4 MiB here at most, net.ipv4.tcp_wmem), or
		// until the writer stalls.
		for deadline := time.Now().Add(ioTimeout / 2); sent.Load() < 6<<20 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		got := make([]byte, len(stream))
		if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the %d echoed bytes: %v", len(stream), err)
		}
		if i := firstDifference(got, stream); i >= 0 {
			t.Fatalf("echoed stream differs at byte %d of %d", i, len(stream))
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	})
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// The frames echoed before a panic, in the same read, are sent before the
// close, intact, while the next reads of other connections reuse the
// loop's read buffer.
func TestEchoBeforeAPanicIsSent(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.Logger = slog.New(slog.DiscardHandler)
		ts := startServer(t, mixedEcho{}, cfg)
		by := startBystander(t, ts.addr, 4096)
		for round := range 20 {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			var stream []byte
			var want [][]byte
			for i, k := range []byte("eeeep") {
				body := mixedBody(k, round*10+i, 100+i*50)
				stream = testkit.AppendFrame(stream, body)
				want = append(want, body)
			}
			stream = testkit.AppendFrame(stream, []byte("never answered"))
			if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				if err := testkit.ExpectFrameErr(c, w, ioTimeout); err != nil {
					t.Fatalf("round %d, reply %d: %v", round, i, err)
				}
			}
			testkit.ExpectClosed(t, c, ioTimeout)
		}
		ts.waitStats(t, ioTimeout, "20 panics", func(st frameloop.Stats) bool {
			return st.Panics == 20 && st.ClosedBy(frameloop.ReasonPanic) == 20
		})
		by.stop(t, "while handlers panicked")
	})
}

// Echoes and frames another goroutine writes to the same connection
// interleave, each in its own order, none lost.
func TestEchoAndAnotherGoroutinesWritesEachKeepTheirOrder(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		const n = 2000
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		h := &backgroundWriter{n: n, wg: &wg}
		ts := startServer(t, h, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		var stream []byte
		for i := range n {
			stream = testkit.AppendFrame(stream, fmt.Appendf(nil, "e%d", i))
		}
		werr := make(chan error, 1)
		go func() {
			// In bursts, so that reads hold several frames while the other
			// goroutine writes.
			for off := 0; off < len(stream); off += 4096 {
				if err := testkit.WriteAll(c, stream[off:min(off+4096, len(stream))], ioTimeout); err != nil {
					werr <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
			werr <- nil
		}()
		next := map[byte]int{}
		for i := range 2 * n {
			got, err := testkit.ReadFrame(c, ioTimeout, 1<<10)
			if err != nil {
				t.Fatalf("frame %d of %d: %v (next expected: %v)", i, 2*n, err, next)
			}
			if want := fmt.Sprintf("%c%d", got[0], next[got[0]]); string(got) != want {
				t.Fatalf("frame %d is %q, want %q", i, got, want)
			}
			next[got[0]]++
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	})
}

// backgroundWriter echoes, and writes "b0", "b1"... from a goroutine of
// its own as soon as a connection opens.
type backgroundWriter struct {
	frameloop.EchoHandler
	n  int
	wg *sync.WaitGroup
}

func (h *backgroundWriter) OnOpen(c *frameloop.Conn) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for i := 0; i < h.n; {
			switch err := c.Write(fmt.Appendf(nil, "b%d", i)); {
			case err == nil:
				i++
			case errors.Is(err, frameloop.ErrBackpressure):
				time.Sleep(time.Millisecond)
			default:
				return
			}
		}
	}()
}
