package frameloop_test

// docs/behaviour.md §3.4: a client that sends faster than it reads is paused, not
// disconnected, and gets every reply; one whose replies make no progress
// for WriteTimeout is closed; neither affects anyone else.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestPipeliningWithoutReadingThenReadingEverything(t *testing.T) {
	total := 32 << 20
	if testing.Short() {
		total = 16 << 20
	}
	const frameSize = 64 << 10
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		// A realistic write timeout: the pause while the client does not
		// read must not trip it.
		cfg.WriteTimeout = 5 * time.Second
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)

		data := testkit.Pattern(total, 1)
		var stream []byte
		for off := 0; off < total; off += frameSize {
			stream = append(stream, testkit.Frame(data[off:off+frameSize])...)
		}
		frames := total / frameSize

		// Pipeline without reading until the writes stall and the server
		// has paused reading this connection.
		var off int64
		for {
			var stalled bool
			var err error
			off, stalled, err = testkit.WriteUntilStall(c, stream, off, int64(len(stream)), false, stallChunk, quiet)
			if err != nil {
				t.Fatalf("pipelining: %v after %d bytes", err, off)
			}
			if !stalled {
				t.Fatalf("all %d bytes were taken from a client that did not read", off)
			}
			if ts.stats().ReadPauses > 0 {
				break
			}
		}
		t.Logf("writes stalled after %d MiB", off>>20)

		// Now read everything while writing the rest.
		werr := make(chan error, 1)
		go func() {
			_, _, err := testkit.WriteUntilStall(c, stream, off, int64(len(stream)), false, stallChunk, ioTimeout)
			werr <- err
		}()
		if err := c.SetReadDeadline(time.Now().Add(6 * ioTimeout)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 1<<20)
		for pos := 0; pos < len(stream); {
			n, err := c.Read(got[:min(len(got), len(stream)-pos)])
			if !bytes.Equal(got[:n], stream[pos:pos+n]) {
				t.Fatalf("replies differ from the frames sent, within bytes %d to %d", pos, pos+n)
			}
			pos += n
			if err != nil {
				t.Fatalf("after %d of %d bytes of replies: %v", pos, len(stream), err)
			}
		}
		if err := <-werr; err != nil {
			t.Fatalf("writing the rest: %v", err)
		}
		testkit.Echo(t, c, []byte("still connected"), ioTimeout)
		st := ts.waitStats(t, ioTimeout, "every frame counted", func(st frameloop.Stats) bool {
			return st.FramesIn == uint64(frames+1)
		})
		if st.ReadPauses == 0 || totalClosed(st) != 0 {
			t.Errorf("want read pauses and no close: %s", fmtStats(&st))
		}
	})
}

func TestWriteTimeoutClosesANonReader(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.WriteTimeout = writeTimeout
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		bystander := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, bystander, []byte("before"), ioTimeout)

		nonReader := testkit.DialTCP(t, ts.addr, ioTimeout)
		start := time.Now()
		stallNonReader(t, nonReader, rec.openFor(t, nonReader, ioTimeout))
		stalled := time.Now()
		// Others are served while the non-reader's replies are stuck.
		for i := 0; time.Since(stalled) < writeTimeout/2; i++ {
			testkit.Echo(t, bystander, testkit.Pattern(i*100, uint64(i)), ioTimeout)
		}
		ev := rec.closeFor(t, nonReader, writeTimeout+late+ioTimeout)
		if !errors.Is(ev.err, frameloop.ErrWriteTimeout) {
			t.Errorf("OnClose got %v, want ErrWriteTimeout", ev.err)
		}
		// No earlier than a write timeout after its first reply could be
		// stuck; no later than a write timeout after the stall was seen.
		if d := ev.at.Sub(start); d < writeTimeout {
			t.Errorf("the non-reader closed %v after it began sending, before any write timeout", d)
		}
		if d := ev.at.Sub(stalled); d > writeTimeout+late {
			t.Errorf("the non-reader closed %v after its writes stalled, want at most %v", d, writeTimeout+late)
		}
		testkit.Echo(t, bystander, []byte("after"), ioTimeout)
		st := ts.stats()
		if st.ClosedBy(frameloop.ReasonWriteTimeout) != 1 || totalClosed(st) != 1 {
			t.Errorf("want exactly one close, for the write timeout: %s", fmtStats(&st))
		}
	})
}

// A slow reader makes progress, however slowly: the write timeout counts
// time without progress, not time to drain. The client reads 8 KiB every
// 20 ms (400 KB/s) for a few write timeouts, then the rest at full speed.
// The server sees that progress in steps: the reader's kernel reopens its
// window only once a segment's worth is free, 64 KiB on loopback, so eight
// reads or more. Under -race on a loaded two-CPU machine the server once
// saw no progress for 500 ms while this client kept reading (it had read
// 188 KB in 1.05 s); the write timeout here leaves room for such a gap.
func TestWriteTimeoutSparesASlowReader(t *testing.T) {
	const (
		writeTimeout = time.Second
		slowFor      = 4 * writeTimeout
		frames       = 128
		frameSize    = 64 << 10
	)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.WriteTimeout = writeTimeout
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		server := rec.openFor(t, c, ioTimeout)
		var stream []byte
		for i := range frames {
			stream = append(stream, testkit.Frame(testkit.Pattern(frameSize, uint64(i)))...)
		}
		werr := make(chan error, 1)
		go func() {
			_, _, err := testkit.WriteUntilStall(c, stream, 0, int64(len(stream)), false, stallChunk, 3*ioTimeout)
			werr <- err
		}()
		if err := c.SetReadDeadline(time.Now().Add(3 * ioTimeout)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var waited time.Duration // time with replies queued in the server
		buf := make([]byte, 64<<10)
		for pos := 0; pos < len(stream); {
			slow := time.Since(start) < slowFor
			chunk := len(buf)
			if slow {
				chunk = 8 << 10
			}
			n, err := io.ReadFull(c, buf[:min(chunk, len(stream)-pos)])
			if err != nil {
				ev, _ := rec.waitCloseFor(c.LocalAddr().String(), time.Second)
				t.Fatalf("after %d of %d bytes, %v: %v (OnClose: %v)", pos, len(stream), time.Since(start), err, ev.err)
			}
			if !bytes.Equal(buf[:n], stream[pos:pos+n]) {
				t.Fatalf("replies differ from the frames sent at byte %d", pos)
			}
			pos += n
			if slow {
				time.Sleep(20 * time.Millisecond)
				if server.Queued() > 0 {
					waited += 20 * time.Millisecond
				}
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if waited < 2*writeTimeout {
			t.Fatalf("replies were queued in the server for only about %v: too little to test the write timeout", waited)
		}
		if st := ts.stats(); totalClosed(st) != 0 {
			t.Errorf("the slow reader was closed: %s", fmtStats(&st))
		}
		testkit.Echo(t, c, []byte("still here"), ioTimeout)
	})
}

func TestSlowConsumerDoesNotDelayOthers(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		// Several non-readers, on every loop with luck.
		for range 4 {
			stallNonReader(t, testkit.DialTCP(t, ts.addr, ioTimeout), nil)
		}
		for i := range 4 {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			for j := range 20 {
				testkit.Echo(t, c, fmt.Appendf(nil, "%d/%d", i, j), ioTimeout)
			}
		}
	})
}
