package frameloop_test

// docs/behaviour.md §7: Shutdown stops accepting, finishes the frames already
// received, delivers their replies, closes each connection once it has
// nothing left to send; after its context ends it closes the rest.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// shutdownAsync starts ts's Shutdown with a context of the given timeout
// and returns where its result and duration arrive.
func shutdownAsync(ts *testServer, timeout time.Duration) <-chan shutdownResult {
	done := make(chan shutdownResult, 1)
	go func() {
		start := time.Now() // before the context's clock starts
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := ts.srv.Shutdown(ctx)
		done <- shutdownResult{err: err, took: time.Since(start)}
	}()
	return done
}

type shutdownResult struct {
	err  error
	took time.Duration
}

func awaitShutdown(t *testing.T, done <-chan shutdownResult, within time.Duration) shutdownResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(within):
		t.Fatalf("Shutdown did not return within %v", within)
	}
	return shutdownResult{}
}

func TestShutdownDeliversQueuedReplies(t *testing.T) {
	const frames, size = 192, 64 << 10
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		// A high-water mark above what is sent: the server reads every frame
		// and holds the replies the client has not read yet.
		cfg.HighWater = 16 << 20
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		var stream []byte
		for i := range frames {
			stream = append(stream, testkit.Frame(testkit.Pattern(size, uint64(i)))...)
		}
		if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
			t.Fatal(err)
		}
		ts.waitStats(t, ioTimeout, "every frame read", func(st frameloop.Stats) bool {
			return st.FramesIn == frames
		})
		if q := rec.openFor(t, c, ioTimeout).Queued(); q < 1<<20 {
			t.Fatalf("only %d bytes of replies queued before the shutdown: too few to test", q)
		}

		done := shutdownAsync(ts, 3*ioTimeout)
		// Read slowly: the shutdown waits for the client.
		got, err := readSlowly(c, len(stream), 64<<10, time.Millisecond)
		if !bytes.Equal(got, stream) {
			t.Fatalf("got %d bytes of replies (%v), want the %d sent, byte for byte", len(got), err, len(stream))
		}
		testkit.ExpectClosed(t, c, ioTimeout)
		c.Close()
		r := awaitShutdown(t, done, 3*ioTimeout)
		if r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
		if err := ts.wait(serveWait); !errors.Is(err, frameloop.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrServerClosed) {
			t.Errorf("OnClose got %v, want ErrServerClosed", ev.err)
		}
	})
}

// With the default watermarks and a client still sending, the shutdown
// cuts the stream somewhere; every frame the server took in is answered
// before the end of stream.
func TestShutdownAnswersEveryFrameItRead(t *testing.T) {
	const frames, size = 128, 64 << 10
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		var delivered atomic.Uint64
		rec.onFrame = func(c *frameloop.Conn, payload []byte) {
			delivered.Add(1)
			c.Write(payload)
		}
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		var stream []byte
		for i := range frames {
			stream = append(stream, testkit.Frame(testkit.Pattern(size, uint64(i)))...)
		}
		sent := make(chan error, 1)
		go func() { sent <- testkit.WriteAll(c, stream, ioTimeout) }()
		// Shut down once a quarter of the replies is in.
		got, err := readSlowly(c, len(stream)/4, 64<<10, 0)
		if err != nil {
			t.Fatal(err)
		}
		done := shutdownAsync(ts, 3*ioTimeout)
		rest, err := testkit.ReadUntilClosed(c, 3*ioTimeout)
		if !testkit.IsClosed(err) {
			t.Fatalf("after %d bytes of replies: %v, want the end of stream", len(got)+len(rest), err)
		}
		got = append(got, rest...)
		c.Close()
		<-sent // ends with an error or not, depending on where the cut fell
		if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
		if !bytes.Equal(got, stream[:len(got)]) {
			t.Fatalf("the %d bytes of replies differ from the frames sent", len(got))
		}
		if n := delivered.Load(); uint64(len(got)) != n*(4+size) {
			t.Errorf("the handler got %d frames; the client got %d bytes of replies (%.2f frames) before the end (%v)",
				n, len(got), float64(len(got))/(4+size), err)
		}
	})
}

func TestShutdownTimesOutOnANonReader(t *testing.T) {
	const timeout = 300 * time.Millisecond
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		stallNonReader(t, c, rec.openFor(t, c, ioTimeout))
		r := awaitShutdown(t, shutdownAsync(ts, timeout), timeout+ioTimeout)
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("Shutdown returned %v, want context.DeadlineExceeded", r.err)
		}
		within(t, "Shutdown returned", r.took, timeout, timeout+late)
		if err := ts.wait(late); !errors.Is(err, frameloop.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if ev := rec.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrServerClosed) {
			t.Errorf("OnClose got %v, want ErrServerClosed", ev.err)
		}
	})
}

func TestShutdownServesNoNewConnection(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		// A non-reader keeps the shutdown going.
		holder := testkit.DialTCP(t, ts.addr, ioTimeout)
		stallNonReader(t, holder, rec.openFor(t, holder, ioTimeout))
		done := shutdownAsync(ts, 3*ioTimeout)
		time.Sleep(200 * time.Millisecond)
		select {
		case r := <-done:
			t.Fatalf("Shutdown returned %v with a connection still draining", r.err)
		default:
		}
		// A connection attempted now is refused, or gets no service.
		expectNoService(t, ts.addr)

		holder.Close()
		if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
		// And after it.
		expectNoService(t, ts.addr)
	})
}

// expectNoService checks that a connection to addr is refused, or closed
// without an answer to its frame.
func expectNoService(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return // refused
	}
	defer c.Close()
	if err := testkit.WriteFrame(c, []byte("hello?"), ioTimeout); err != nil {
		return // reset already
	}
	if err := testkit.ExpectClosedErr(c, 2*time.Second); err != nil {
		t.Errorf("a connection made after Shutdown began: %v", err)
	}
}

func TestShutdownNotHeldUpByIdleConnections(t *testing.T) {
	const idle = 50
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		var conns []net.Conn
		for range idle {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			testkit.Echo(t, c, []byte("served"), ioTimeout)
			conns = append(conns, c)
		}
		r := awaitShutdown(t, shutdownAsync(ts, 3*ioTimeout), 3*ioTimeout)
		if r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
		if r.took > late {
			t.Errorf("Shutdown took %v with only idle connections", r.took)
		}
		for _, c := range conns {
			testkit.ExpectClosed(t, c, ioTimeout)
		}
		if n := len(rec.closeEvents()); n != idle {
			t.Errorf("%d OnClose calls, want %d", n, idle)
		}
		for _, ev := range rec.closeEvents() {
			if !errors.Is(ev.err, frameloop.ErrServerClosed) {
				t.Errorf("OnClose got %v, want ErrServerClosed", ev.err)
				break
			}
		}
	})
}

// readSlowly reads n bytes in reads of at most chunk bytes, pausing after
// each.
func readSlowly(c net.Conn, n, chunk int, pause time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(3 * ioTimeout)); err != nil {
		return nil, err
	}
	got := make([]byte, 0, n)
	buf := make([]byte, chunk)
	for len(got) < n {
		m, err := c.Read(buf[:min(chunk, n-len(got))])
		got = append(got, buf[:m]...)
		if err != nil {
			if err == io.EOF && len(got) == n {
				break
			}
			return got, err
		}
		time.Sleep(pause)
	}
	return got, nil
}

// A connection whose input is still arriving when the shutdown comes is
// closed gracefully: the replies the server has already handed to the
// kernel are not destroyed by a reset. The handler holds the loop for a
// moment (a test device, not a pattern) so that input piles up unread.
func TestShutdownDoesNotResetAConnectionWithUnreadInput(t *testing.T) {
	const size = 64 << 10
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		blocked, release := make(chan struct{}), make(chan struct{})
		var delivered atomic.Uint64
		rec := newRecorder(t)
		rec.onFrame = func(c *frameloop.Conn, payload []byte) {
			if string(payload) == "block" {
				close(blocked)
				select {
				case <-release:
				case <-time.After(ioTimeout):
				}
				return
			}
			// A short acknowledgement: the replies always fit in the
			// kernel's buffers, so nothing stays queued in the server.
			delivered.Add(1)
			c.Write(payload[:8])
		}
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		if err := testkit.WriteFrame(c, []byte("block"), ioTimeout); err != nil {
			t.Fatal(err)
		}
		select {
		case <-blocked:
		case <-time.After(ioTimeout):
			t.Fatal("the handler never saw the blocking frame")
		}
		// Megabytes of frames arrive while the loop is held.
		var stream []byte
		for i := range 64 {
			p := testkit.Pattern(size, uint64(i))
			binary.LittleEndian.PutUint64(p, uint64(i))
			stream = append(stream, testkit.Frame(p)...)
		}
		sent := make(chan error, 1)
		go func() { sent <- testkit.WriteAll(c, stream, ioTimeout) }()
		time.Sleep(100 * time.Millisecond)
		done := shutdownAsync(ts, 3*ioTimeout)
		time.Sleep(50 * time.Millisecond) // the request is posted
		close(release)

		// Every frame the handler saw is acknowledged, in order, and then
		// the stream ends cleanly.
		var acks uint64
		var err error
		for {
			var p []byte
			if p, err = testkit.ReadFrame(c, ioTimeout, testkit.MaxFrame); err != nil {
				break
			}
			if len(p) != 8 || binary.LittleEndian.Uint64(p) != acks {
				t.Fatalf("acknowledgement %d is %x", acks, p)
			}
			acks++
		}
		c.Close()
		<-sent
		if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
		if n := delivered.Load(); acks != n || !errors.Is(err, io.EOF) {
			t.Errorf("the handler got %d frames; the client read %d acknowledgements, then %v (want all, then EOF)", n, acks, err)
		}
	})
}

// A shutdown that finds a connection with its replies handed to the
// kernel but not yet read by the client, and nothing else to do, must
// still deliver them if the client sends more in the meantime: closing the
// socket outright would answer the client's next bytes with a reset, and
// the reset destroys the replies still in flight.
func TestShutdownKeepsRepliesInFlightWhenThePeerSendsMore(t *testing.T) {
	const size = 64 << 10
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		server := rec.openFor(t, c, ioTimeout)
		// Warm up: replies read as fast as they come, so that the kernel
		// grows the server's send buffer.
		var warm [][]byte
		for i := range 64 {
			warm = append(warm, testkit.Pattern(size, uint64(i)))
		}
		if err := pipelineEcho(c, warm, nil, 0); err != nil {
			t.Fatal(err)
		}
		// Then frames whose replies the client leaves unread: the server
		// answers them all and hands the replies to the kernel.
		var stream []byte
		for i := range 16 {
			stream = append(stream, testkit.Frame(testkit.Pattern(size, uint64(100+i)))...)
		}
		if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
			t.Fatal(err)
		}
		ts.waitStats(t, ioTimeout, "every frame answered", func(st frameloop.Stats) bool {
			return st.FramesOut == 64+16
		})
		testkit.Eventually(t, ioTimeout, pollEvery, func() bool { return server.Queued() == 0 }, "replies handed to the kernel")

		done := shutdownAsync(ts, 3*ioTimeout)
		time.Sleep(100 * time.Millisecond) // the loops act on the request
		// The client, not knowing, sends one more frame (the write may fail
		// if the server has already reset the connection).
		_ = testkit.WriteFrame(c, []byte("one more"), ioTimeout)
		time.Sleep(50 * time.Millisecond)

		// The last frame came after the shutdown began: it is answered if
		// it arrived while the connection was still draining, and not if
		// the connection had gone quiet and was closing already.
		got, err := testkit.ReadUntilClosed(c, ioTimeout)
		withLast := append(bytes.Clone(stream), testkit.Frame([]byte("one more"))...)
		if !bytes.Equal(got, stream) && !bytes.Equal(got, withLast) {
			n := min(len(got), len(stream))
			t.Fatalf("got %d bytes of replies (the first %d equal to the frames sent: %v); want the %d sent, perhaps with the last frame's reply",
				len(got), n, bytes.Equal(got[:n], stream[:n]), len(stream))
		}
		if !errors.Is(err, io.EOF) {
			t.Errorf("after the replies: %v, want EOF", err)
		}
		c.Close()
		if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
	})
}

// Every frame a client finished sending before the shutdown is answered,
// completely, and then the stream ends — including the frames that were
// still in the client's own send buffer, held back by the server's
// receive window, when the shutdown began (docs/behaviour.md §7).
func TestShutdownAnswersEveryFrameSentBeforeIt(t *testing.T) {
	const frames, size = 100, 48 << 10
	forEachLoopCount(t, []int{1, 2, 4}, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		ts.waitStats(t, ioTimeout, "the connection accepted", func(st frameloop.Stats) bool { return st.Accepted == 1 })
		var stream []byte
		for i := range frames {
			stream = append(stream, testkit.Frame(testkit.Pattern(size, uint64(i)))...)
		}
		// Without reading: the server pauses at its high-water mark and
		// the rest waits in the kernels' buffers.
		if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
			t.Fatalf("sending %d bytes without reading: %v", len(stream), err)
		}
		done := shutdownAsync(ts, 3*ioTimeout)
		got, err := testkit.ReadUntilClosed(c, 3*ioTimeout)
		if !bytes.Equal(got, stream) {
			same := 0
			for same < min(len(got), len(stream)) && got[same] == stream[same] {
				same++
			}
			t.Fatalf("got %d bytes of replies (%.2f frames), equal to the frames sent for the first %d; want all %d bytes, then EOF (%v)",
				len(got), float64(len(got))/(4+size), same, len(stream), err)
		}
		if !errors.Is(err, io.EOF) {
			t.Errorf("after every reply: %v, want EOF", err)
		}
		if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
	})
}

// A second Shutdown waits for the drain like the first, instead of
// returning at once while connections are still being served.
func TestShutdownCalledTwiceWaitsForTheDrain(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.HighWater = 16 << 20 // every reply queued at once
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		const frames = 192
		var stream []byte
		for i := range frames {
			stream = append(stream, testkit.Frame(testkit.Pattern(64<<10, uint64(i)))...)
		}
		if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
			t.Fatal(err)
		}
		ts.waitStats(t, ioTimeout, "every frame read", func(st frameloop.Stats) bool { return st.FramesIn == frames })
		if q := rec.openFor(t, c, ioTimeout).Queued(); q < 1<<20 {
			t.Fatalf("only %d bytes of replies queued before the shutdown: too few to test", q)
		}

		first := shutdownAsync(ts, 3*ioTimeout)
		time.Sleep(20 * time.Millisecond)
		second := shutdownAsync(ts, 3*ioTimeout)
		select {
		case r := <-second:
			t.Fatalf("the second Shutdown returned %v after %v, while replies were still queued", r.err, r.took)
		case <-time.After(200 * time.Millisecond):
		}
		got, err := testkit.ReadUntilClosed(c, 3*ioTimeout)
		if !bytes.Equal(got, stream) || !errors.Is(err, io.EOF) {
			t.Fatalf("got %d of %d bytes of replies, then %v", len(got), len(stream), err)
		}
		for i, done := range []<-chan shutdownResult{first, second} {
			if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
				t.Errorf("Shutdown %d returned %v, want nil", i+1, r.err)
			}
			select {
			case <-ts.done:
			default:
				t.Errorf("Shutdown %d returned before Serve did", i+1)
			}
		}
	})
}

// Shutdowns in the middle of a connection churn leak nothing: every
// accepted connection is closed and reported, the connection count is back
// to zero when Serve returns, and no descriptor stays open. With handoff,
// a loop that has drained must not be handed a connection nobody adopts.
// Not parallel: it counts the process's descriptors.
func TestShutdownUnderConnectChurnLeaksNothing(t *testing.T) {
	const cycles = 40
	before := openDescriptors(t)
	for _, v := range loopVariants(2, 4) {
		if v.balance != "handoff" {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			for cycle := range cycles {
				churnThenShutdown(t, v.config(), cycle)
				if t.Failed() {
					return
				}
			}
		})
	}
	testkit.Eventually(t, ioTimeout, pollEvery, func() bool { return openDescriptors(t) <= before },
		"descriptors back to the %d open before the shutdowns (now %d)", before, openDescriptors(t))
}

func churnThenShutdown(t *testing.T, cfg frameloop.Config, cycle int) {
	rec := newQuietRecorder()
	srv, err := frameloop.New(rec, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()

	stop := make(chan struct{})
	var clients sync.WaitGroup
	for range 8 {
		clients.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, ioTimeout)
				if err != nil {
					continue // refused: the listener is closed
				}
				testkit.WriteFrame(c, []byte("churn"), ioTimeout)
				c.Close()
			}
		})
	}
	time.Sleep(time.Duration(5+cycle%10) * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), serveWait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("cycle %d: Shutdown returned %v", cycle, err)
	}
	close(stop)
	clients.Wait()
	select {
	case <-served:
	case <-time.After(serveWait):
		t.Fatalf("cycle %d: Serve did not return", cycle)
	}
	st := srv.Stats()
	if st.Connections != 0 {
		t.Errorf("cycle %d: Stats.Connections = %d after Serve returned, want 0 (%s)", cycle, st.Connections, fmtStats(&st))
	}
	if opened, closed := rec.counts(); opened != closed || uint64(opened) != st.Accepted {
		t.Errorf("cycle %d: %d connections accepted, %d opened, %d closed", cycle, st.Accepted, opened, closed)
	}
}

// quietRecorder counts OnOpen and OnClose, and echoes.
type quietRecorder struct {
	frameloop.EchoHandler
	opened, closed atomic.Int64
}

func newQuietRecorder() *quietRecorder { return &quietRecorder{} }

func (r *quietRecorder) OnOpen(*frameloop.Conn)         { r.opened.Add(1) }
func (r *quietRecorder) OnClose(*frameloop.Conn, error) { r.closed.Add(1) }
func (r *quietRecorder) counts() (int64, int64)         { return r.opened.Load(), r.closed.Load() }

// openDescriptors counts the process's open descriptors.
func openDescriptors(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(ents)
}
