package frameloop_test

// docs/behaviour.md §1: however frames are cut into reads, and however many share one,
// every frame is answered with its payload, byte-exact and in order.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestFramingEveryByteInItsOwnWrite(t *testing.T) {
	tests := []struct {
		name     string
		payloads [][]byte
	}{
		{name: "empty frame", payloads: [][]byte{{}}},
		{name: "one frame", payloads: [][]byte{testkit.Pattern(13, 1)}},
		{name: "three frames", payloads: [][]byte{testkit.Pattern(5, 2), {}, testkit.Pattern(9, 3)}},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		for _, tc := range tests {
			// Each byte is its own write (the client sets TCP_NODELAY), with
			// a pause so that the server reads it on its own.
			split := func(int) int { return 1 }
			if err := pipelineEcho(c, tc.payloads, split, time.Millisecond); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		// Still in step after all that.
		testkit.Echo(t, c, []byte("after"), ioTimeout)
	})
}

func TestFramingSplitAtEveryOffset(t *testing.T) {
	tests := []struct {
		name     string
		payloads [][]byte
	}{
		{name: "one frame", payloads: [][]byte{testkit.Pattern(9, 1)}},
		{name: "empty frame between two", payloads: [][]byte{testkit.Pattern(6, 2), {}, testkit.Pattern(5, 3)}},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		for _, tc := range tests {
			var size int
			for _, p := range tc.payloads {
				size += 4 + len(p)
			}
			// Two writes, the first ending at every offset of the stream:
			// inside each header, at each header's end, inside each payload.
			for off := 1; off < size; off++ {
				split := func(i int) int {
					if i == 0 {
						return off
					}
					return size
				}
				if err := pipelineEcho(c, tc.payloads, split, 3*time.Millisecond); err != nil {
					t.Fatalf("%s, split at byte %d: %v", tc.name, off, err)
				}
			}
		}
	})
}

func TestFramingManyFramesInOneWrite(t *testing.T) {
	tests := []struct {
		name   string
		frames int
		size   func(i int) int
	}{
		{name: "1000 tiny frames", frames: 1000, size: func(i int) int { return i % 8 }},
		{name: "500 empty frames", frames: 500, size: func(int) int { return 0 }},
		{name: "mixed sizes crossing the read buffer", frames: 300, size: func(i int) int { return (i * 7919) % 9000 }},
		{name: "frames straddling 64 KiB reads", frames: 20, size: func(i int) int { return 60<<10 + i }},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		for ti, tc := range tests {
			payloads := make([][]byte, tc.frames)
			for i := range payloads {
				payloads[i] = testkit.Pattern(tc.size(i), uint64(ti*100000+i))
			}
			before := ts.stats().FramesIn
			if err := pipelineEcho(c, payloads, nil, 0); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			ts.waitStats(t, ioTimeout, "frames counted", func(st frameloop.Stats) bool {
				return st.FramesIn-before == uint64(tc.frames)
			})
		}
	})
}

func TestFramingMaxMessage(t *testing.T) {
	tests := []struct {
		name       string
		maxMessage int // 0: the default, 1 MiB
		size       int
		wantEcho   bool
	}{
		{name: "exactly MaxMessage", maxMessage: 1000, size: 1000, wantEcho: true},
		{name: "MaxMessage+1", maxMessage: 1000, size: 1001, wantEcho: false},
		{name: "empty with MaxMessage 1", maxMessage: 1, size: 0, wantEcho: true},
		{name: "one byte with MaxMessage 1", maxMessage: 1, size: 1, wantEcho: true},
		{name: "two bytes with MaxMessage 1", maxMessage: 1, size: 2, wantEcho: false},
		{name: "exactly the default 1 MiB", maxMessage: 0, size: 1 << 20, wantEcho: true},
		{name: "the default 1 MiB + 1", maxMessage: 0, size: 1<<20 + 1, wantEcho: false},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				cfg := cfg
				cfg.MaxMessage = tc.maxMessage
				rec := newRecorder(t)
				ts := startServer(t, rec, cfg)
				c := testkit.DialTCP(t, ts.addr, ioTimeout)
				payload := testkit.Pattern(tc.size, uint64(tc.size))
				if tc.wantEcho {
					testkit.Echo(t, c, payload, ioTimeout)
					testkit.Echo(t, c, payload, ioTimeout) // and again: still served
					return
				}
				// The header alone must close the connection: the server
				// need not see the payload.
				if err := testkit.WriteAll(c, testkit.Frame(payload)[:4+min(tc.size, 100)], ioTimeout); err != nil {
					t.Fatal(err)
				}
				testkit.ExpectClosed(t, c, ioTimeout)
				c.Close()
				if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrFrameTooLarge) {
					t.Errorf("OnClose got %v, want ErrFrameTooLarge", ev.err)
				}
			})
		}
	})
}

func TestFramingLargeFrameAtOddBoundaries(t *testing.T) {
	const big = 1 << 20 // the default MaxMessage
	payloads := [][]byte{
		testkit.Pattern(7, 1),
		testkit.Pattern(big, 2),
		{},
		testkit.Pattern(big-1, 3),
		testkit.Pattern(65537, 4),
		testkit.Pattern(3, 5),
	}
	odd := []int{1, 3, 5, 4093, 65537, 7, 131071, 2, 65535, 99991, 4, 300007}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		split := func(i int) int { return odd[i%len(odd)] }
		if err := pipelineEcho(c, payloads, split, 200*time.Microsecond); err != nil {
			t.Fatal(err)
		}
		testkit.Echo(t, c, []byte("after"), ioTimeout)
	})
}

func TestFramingRandomSizesOnManyConnections(t *testing.T) {
	conns := 500
	if testing.Short() {
		conns = 100
	}
	forEachServerConfigSerially(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		counts := make([]int, conns)
		err := runGoroutines(conns, func(i int) error {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			payloads := make([][]byte, 1+rng.IntN(12))
			for j := range payloads {
				var n int
				switch r := rng.IntN(100); {
				case r < 90:
					n = rng.IntN(1024)
				case r < 99:
					n = rng.IntN(16 << 10)
				default:
					n = rng.IntN(128 << 10)
				}
				payloads[j] = testkit.Pattern(n, rng.Uint64())
			}
			counts[i] = len(payloads)
			c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			// Random cuts: some writes split frames, some carry several.
			split := func(int) int { return 1 + rng.IntN(16<<10) }
			if err := pipelineEcho(c, payloads, split, 0); err != nil {
				return fmt.Errorf("connection %s: %w", c.LocalAddr(), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var frames uint64
		for _, n := range counts {
			frames += uint64(n)
		}
		st := ts.waitStats(t, ioTimeout, "every connection closed", func(st frameloop.Stats) bool {
			return st.Connections == 0 && st.Accepted == uint64(conns)
		})
		if st.FramesIn != frames || st.FramesOut != frames {
			t.Errorf("FramesIn %d, FramesOut %d, want %d each", st.FramesIn, st.FramesOut, frames)
		}
	})
}

func TestFramingZeroLengthFramesInterleaved(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, c, nil, ioTimeout)
		testkit.Echo(t, c, []byte{0}, ioTimeout)
		testkit.Echo(t, c, nil, ioTimeout)
		// A zero-length frame's reply is exactly four zero bytes.
		if err := testkit.WriteFrame(c, nil, ioTimeout); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte{0, 0, 0, 0}) {
			t.Fatalf("reply to an empty frame is %x, want 00000000", got)
		}
		testkit.ExpectNothing(t, c, 50*time.Millisecond)
	})
}
