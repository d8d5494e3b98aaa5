package frameloop_test

// docs/behaviour.md §3.3: a header announcing more than MaxMessage closes the
// connection at once, without buffering the announced size, after the
// replies to the frames before it.

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestOversizeRepliesFirstThenClose(t *testing.T) {
	const maxMessage = 1000
	before := [][]byte{testkit.Pattern(10, 1), {}, testkit.Pattern(maxMessage, 2)}
	var prefix []byte
	for _, p := range before {
		prefix = append(prefix, testkit.Frame(p)...)
	}
	tests := []struct {
		name   string
		writes [][]byte // written one at a time, with a pause between
		more   [][]byte // replies expected after those to the frames before
	}{
		{name: "in the same write", writes: [][]byte{append(bytes.Clone(prefix), testkit.Header(maxMessage+1)...)}},
		{name: "in a later write", writes: [][]byte{prefix, testkit.Header(maxMessage + 1)}},
		{name: "header split across writes", writes: [][]byte{append(bytes.Clone(prefix), testkit.Header(maxMessage + 1)[:2]...), testkit.Header(maxMessage + 1)[2:]}},
		{name: "announcing 0xFFFFFFFF", writes: [][]byte{prefix, testkit.Header(0xFFFFFFFF)}},
		{name: "announcing 0x80000000", writes: [][]byte{prefix, testkit.Header(0x80000000)}},
		{name: "followed by its payload", writes: [][]byte{prefix, append(testkit.Header(maxMessage+1), testkit.Pattern(maxMessage+1, 3)...)}},
		{
			name:   "after a frame split in its header",
			writes: [][]byte{append(bytes.Clone(prefix), testkit.Header(5)[:3]...), append(testkit.Header(5)[3:], "12345"...), testkit.Header(maxMessage + 1)},
			more:   [][]byte{[]byte("12345")},
		},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = maxMessage
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				rec := newRecorder(t)
				ts := startServer(t, rec, cfg)
				c := testkit.DialTCP(t, ts.addr, ioTimeout)
				for i, w := range tc.writes {
					if i > 0 {
						time.Sleep(20 * time.Millisecond)
					}
					if err := testkit.WriteAll(c, w, ioTimeout); err != nil {
						t.Fatalf("write %d: %v", i, err)
					}
				}
				for i, p := range append(append([][]byte(nil), before...), tc.more...) {
					if err := testkit.ExpectFrameErr(c, p, ioTimeout); err != nil {
						t.Fatalf("reply %d: %v", i, err)
					}
				}
				testkit.ExpectClosed(t, c, ioTimeout)
				c.Close()
				if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrFrameTooLarge) {
					t.Errorf("OnClose got %v, want ErrFrameTooLarge", ev.err)
				}
				st := ts.waitClosed(t, 1)
				if st.ClosedBy(frameloop.ReasonOversize) != 1 || totalClosed(st) != 1 {
					t.Errorf("want one close, for oversize: %s", fmtStats(&st))
				}
				// The server survives and serves others.
				testkit.Echo(t, testkit.DialTCP(t, ts.addr, ioTimeout), []byte("next"), ioTimeout)
			})
		}
	})
}

// The reason a connection closes is the server's: a peer that resets
// while the server is closing it for an oversized frame does not turn the
// close into a reset.
func TestOversizeCloseReasonSurvivesPeerReset(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = 1000
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		if err := testkit.WriteAll(c, append(testkit.Frame([]byte("a")), testkit.Header(1001)...), ioTimeout); err != nil {
			t.Fatal(err)
		}
		if err := testkit.ExpectFrameErr(c, []byte("a"), ioTimeout); err != nil {
			t.Fatal(err)
		}
		// The server has finished with the connection: end of stream.
		testkit.ExpectClosed(t, c, ioTimeout)
		if err := resetClose(c); err != nil {
			t.Fatal(err)
		}
		ev := rec.closeFor(t, c, ioTimeout)
		if !errors.Is(ev.err, frameloop.ErrFrameTooLarge) {
			t.Errorf("OnClose got %v, want ErrFrameTooLarge", ev.err)
		}
		st := ts.waitClosed(t, 1)
		if st.ClosedBy(frameloop.ReasonOversize) != 1 {
			t.Errorf("want the close counted as oversize: %s", fmtStats(&st))
		}
	})
}

// Announcing a size, legal or not, costs the server nothing until the
// bytes arrive: memory does not grow by the announced size.
func TestOversizeAnnouncedSizeIsNotBuffered(t *testing.T) {
	const maxMessage = 1 << 30 // the largest Config allows
	tests := []struct {
		name       string
		announce   uint32
		send       int // payload bytes sent after the header
		wantClosed bool
	}{
		{name: "1 GiB announced, 256 KiB sent", announce: maxMessage, send: 256 << 10, wantClosed: false},
		{name: "1 GiB - 1 announced, 1 byte sent", announce: maxMessage - 1, send: 1, wantClosed: false},
		{name: "1 GiB + 1 announced", announce: maxMessage + 1, send: 1000, wantClosed: true},
		{name: "0xFFFFFFFF announced", announce: 0xFFFFFFFF, send: 1000, wantClosed: true},
	}
	forEachServerConfigSerially(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = maxMessage
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		bystander := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, bystander, []byte("before"), ioTimeout)

		runtime.GC()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		base := ts.stats().BytesIn
		var sent uint64
		for _, tc := range tests {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			msg := append(testkit.Header(tc.announce), testkit.Pattern(tc.send, 1)...)
			if err := testkit.WriteAll(c, msg, ioTimeout); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			sent += uint64(len(msg))
			if tc.wantClosed {
				testkit.ExpectClosed(t, c, ioTimeout)
				c.Close()
				if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrFrameTooLarge) {
					t.Errorf("%s: OnClose got %v, want ErrFrameTooLarge", tc.name, ev.err)
				}
			} else {
				testkit.ExpectNothing(t, c, 50*time.Millisecond)
			}
		}
		// Everything sent has been read by the server (the closed ones may
		// have been read only in part before the close).
		ts.waitStats(t, ioTimeout, "input read", func(st frameloop.Stats) bool {
			return st.BytesIn-base >= (256<<10)+4+5
		})
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 256<<20 {
			t.Errorf("the process allocated %d MiB while %d bytes were sent: announced sizes were buffered", grew>>20, sent)
		}
		testkit.Echo(t, bystander, []byte("after"), ioTimeout)
		st := ts.stats()
		if st.ClosedBy(frameloop.ReasonOversize) != 2 {
			t.Errorf("want two oversize closes: %s", fmtStats(&st))
		}
	})
}
