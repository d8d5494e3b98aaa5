package frameloop_test

// docs/behaviour.md §6.2: reply slots keep replies in request order when
// workers answer out of order; a slot filled after its connection closed
// returns ErrClosed and leaks nothing; pausing reading holds a client back
// until the workers catch up; a connection's context ends with it; a
// shutdown waits for the work in flight.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// slowWorkers answers every frame from a goroutine after a random delay
// of up to maxDelay, through a reply slot, so that the answers are ready
// out of order. inFlight counts the requests being worked on.
type slowWorkers struct {
	*recorder
	maxDelay time.Duration
	inFlight atomic.Int64
	most     atomic.Int64
	reserve  atomic.Int64 // Reserve errors
}

func newSlowWorkers(t *testing.T, maxDelay time.Duration) *slowWorkers {
	w := &slowWorkers{recorder: newRecorder(t), maxDelay: maxDelay}
	w.recorder.onFrame = w.onFrame
	return w
}

func (w *slowWorkers) onFrame(c *frameloop.Conn, payload []byte) {
	r, err := c.Reserve()
	if err != nil {
		w.reserve.Add(1)
		return
	}
	p := bytes.Clone(payload)
	n := w.inFlight.Add(1)
	for m := w.most.Load(); n > m && !w.most.CompareAndSwap(m, n); m = w.most.Load() {
	}
	go func() {
		defer w.inFlight.Add(-1)
		time.Sleep(rand.N(w.maxDelay + 1))
		r.Write(p)
	}()
}

// request is the payload of request i: its number, then some bytes.
func request(i int) []byte {
	p := binary.LittleEndian.AppendUint64(nil, uint64(i))
	return append(p, testkit.Pattern(i%50, uint64(i))...)
}

func TestReplySlotsKeepRequestOrder(t *testing.T) {
	const conns, requests = 4, 10000
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		w := newSlowWorkers(t, 2*time.Millisecond)
		ts := startServer(t, w, cfg)
		err := runGoroutines(conns, func(int) error {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			var stream []byte
			for i := range requests {
				stream = testkit.AppendFrame(stream, request(i))
			}
			go testkit.WriteAll(c, stream, 6*ioTimeout)
			for i := range requests {
				if err := testkit.ExpectFrameErr(c, request(i), 6*ioTimeout); err != nil {
					return fmt.Errorf("reply %d: %w", i, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := w.reserve.Load(); n != 0 {
			t.Errorf("Reserve failed %d times", n)
		}
		// Unfilled slots count against the output: reading paused on its
		// own long before 10,000 requests were in flight.
		if most := w.most.Load(); most > conns*200 {
			t.Errorf("%d requests in flight at once: reading did not pause for the slots", most)
		}
		t.Logf("at most %d requests in flight", w.most.Load())
	})
}

// holder reserves a slot for every frame and keeps the Replies for the
// test to fill.
type holder struct {
	*recorder
	mu      sync.Mutex
	replies []frameloop.Reply
	ctxs    []context.Context
}

func newHolder(t *testing.T) *holder {
	h := &holder{recorder: newRecorder(t)}
	h.recorder.onFrame = func(c *frameloop.Conn, payload []byte) {
		r, err := c.Reserve()
		if err != nil {
			panic(err)
		}
		h.mu.Lock()
		h.replies = append(h.replies, r)
		h.ctxs = append(h.ctxs, c.Context())
		h.mu.Unlock()
		c.Write([]byte("after the slot"))
	}
	return h
}

func (h *holder) waitReplies(t *testing.T, n int) []frameloop.Reply {
	t.Helper()
	var rs []frameloop.Reply
	testkit.Eventually(t, ioTimeout, pollEvery, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		rs = append([]frameloop.Reply(nil), h.replies...)
		return len(rs) >= n
	}, "%d reply slots reserved", n)
	return rs
}

func TestReplySlotBlocksWhatFollowsUntilFilled(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		h := newHolder(t)
		ts := startServer(t, h, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.WriteFrame(c, []byte("slow"), ioTimeout)
		r := h.waitReplies(t, 1)[0]
		testkit.ExpectNothing(t, c, quiet) // "after the slot" waits for it
		if err := r.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectFrame(t, c, []byte("answer"), ioTimeout)
		testkit.ExpectFrame(t, c, []byte("after the slot"), ioTimeout)
		if err := r.Write([]byte("again")); !errors.Is(err, frameloop.ErrReplyUsed) {
			t.Errorf("a second fill returned %v, want ErrReplyUsed", err)
		}
		if err := (frameloop.Reply{}).Write(nil); !errors.Is(err, frameloop.ErrReplyUsed) {
			t.Errorf("the zero Reply returned %v, want ErrReplyUsed", err)
		}
		// Cancel sends nothing in the slot's place and lets what follows go.
		testkit.WriteFrame(c, []byte("nothing to say"), ioTimeout)
		if err := h.waitReplies(t, 2)[1].Cancel(); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectFrame(t, c, []byte("after the slot"), ioTimeout)
	})
}

// A slot filled after its connection closed returns ErrClosed; the
// connection's context was cancelled; nothing is left behind (goleak and
// the harness check goroutines, the stats the connection count).
func TestReplySlotFilledAfterCloseReturnsErrClosed(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		h := newHolder(t)
		ts := startServer(t, h, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.WriteFrame(c, []byte("slow"), ioTimeout)
		testkit.WriteFrame(c, []byte("slower"), ioTimeout)
		rs := h.waitReplies(t, 2)
		// A reset: the client is gone. (A client that only shuts its
		// write side down still gets its replies; see below.)
		if err := resetClose(c); err != nil {
			t.Fatal(err)
		}
		if ev := h.closeFor(t, c, ioTimeout); frameloop.ReasonOf(ev.err) != frameloop.ReasonReset {
			t.Errorf("OnClose got %v, want a reset", ev.err)
		}
		for i, r := range rs {
			if err := r.Write([]byte("too late")); !errors.Is(err, frameloop.ErrClosed) {
				t.Errorf("slot %d filled after the close: %v, want ErrClosed", i, err)
			}
		}
		h.mu.Lock()
		ctx := h.ctxs[0]
		h.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(ioTimeout):
			t.Error("the connection's context was not cancelled when it closed")
		}
		ts.waitStats(t, ioTimeout, "no connection left", func(st frameloop.Stats) bool { return st.Connections == 0 })
	})
}

// Close with a slot unfilled sends what was written, waits for the slot,
// and only then closes; Reserve after Close is refused.
func TestCloseWaitsForReplySlots(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		h := newHolder(t)
		ts := startServer(t, h, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.WriteFrame(c, []byte("slow"), ioTimeout)
		r := h.waitReplies(t, 1)[0]
		sc := h.openFor(t, c, ioTimeout)
		sc.Close()
		if _, err := sc.Reserve(); !errors.Is(err, frameloop.ErrClosed) {
			t.Errorf("Reserve after Close returned %v, want ErrClosed", err)
		}
		testkit.ExpectNothing(t, c, quiet)
		r.Write([]byte("answer"))
		testkit.ExpectFrame(t, c, []byte("answer"), ioTimeout)
		testkit.ExpectFrame(t, c, []byte("after the slot"), ioTimeout)
		testkit.ExpectClosed(t, c, ioTimeout)
	})
}

// Unfilled slots count against the output cap: Reserve fails with
// ErrBackpressure at MaxQueued.
func TestReserveRefusedAtTheOutputCap(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxQueued = 4 << 20
		var got atomic.Value
		rec := newRecorder(t)
		var replies []frameloop.Reply
		rec.onFrame = func(c *frameloop.Conn, _ []byte) {
			for {
				r, err := c.Reserve()
				if err != nil {
					got.Store(err)
					for _, r := range replies {
						r.Cancel()
					}
					c.Write([]byte("done"))
					return
				}
				replies = append(replies, r)
			}
		}
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, c, []byte("done"), ioTimeout)
		if err, _ := got.Load().(error); !errors.Is(err, frameloop.ErrBackpressure) {
			t.Errorf("Reserve at the cap returned %v, want ErrBackpressure", err)
		}
		if n := len(replies); n < (4<<20)/512-200 || n > (4<<20)/512 {
			t.Errorf("%d slots reserved before the cap, want about %d (512 bytes each)", n, (4<<20)/512)
		}
	})
}

// PauseReading holds a client back until ResumeReading, from another
// goroutine: a worker pool of two, one request each, never has more than
// two requests in flight per connection, however many the client
// pipelines; and every reply comes, in order.
func TestPauseReadingHoldsTheClientBack(t *testing.T) {
	const requests = 2000
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		// The pool's count and the pause change together, under mu: a
		// worker's late resume must not undo a newer pause.
		var mu sync.Mutex
		var inFlight, most int
		paused := false
		rec := newRecorder(t)
		rec.onFrame = func(c *frameloop.Conn, payload []byte) {
			r, err := c.Reserve()
			if err != nil {
				t.Errorf("Reserve: %v", err)
				return
			}
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			if inFlight >= 2 && !paused {
				paused = true
				c.PauseReading() // the pool is busy: no more from this client
			}
			mu.Unlock()
			p := bytes.Clone(payload)
			go func() {
				time.Sleep(100 * time.Microsecond)
				r.Write(p)
				mu.Lock()
				inFlight--
				if paused {
					paused = false
					c.ResumeReading()
				}
				mu.Unlock()
			}()
		}
		ts := startServer(t, rec, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		var stream []byte
		for i := range requests {
			stream = testkit.AppendFrame(stream, request(i))
		}
		go testkit.WriteAll(c, stream, 6*ioTimeout)
		for i := range requests {
			if err := testkit.ExpectFrameErr(c, request(i), 6*ioTimeout); err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if most > 2 {
			t.Errorf("%d requests in flight at once with reading paused at 2", most)
		}
	})
}

// A shutdown waits for the work in flight: 100 slow requests on 20
// connections, the shutdown asked for while they run; every reply
// arrives, then the end of the stream, and Shutdown returns nil.
func TestShutdownWaitsForWorkInFlight(t *testing.T) {
	const conns, perConn = 20, 5
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		// An idle timeout, as in production: the drain must not leave a
		// connection in the idle list while it waits for work.
		cfg.IdleTimeout = time.Minute
		w := newSlowWorkers(t, 300*time.Millisecond)
		ts := startServer(t, w, cfg)
		cs := make([]net.Conn, conns)
		for i := range cs {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			cs[i] = c
			var stream []byte
			for j := range perConn {
				stream = testkit.AppendFrame(stream, request(i*perConn+j))
			}
			testkit.WriteAll(c, stream, ioTimeout)
		}
		testkit.Eventually(t, ioTimeout, pollEvery, func() bool { return w.inFlight.Load() > 0 }, "work in flight")
		done := shutdownAsync(ts, 3*ioTimeout)
		err := runGoroutines(conns, func(i int) error {
			c := cs[i]
			for j := range perConn {
				if err := testkit.ExpectFrameErr(c, request(i*perConn+j), ioTimeout); err != nil {
					return fmt.Errorf("connection %d, reply %d: %w", i, j, err)
				}
			}
			if got, err := testkit.ReadUntilClosed(c, ioTimeout); len(got) > 0 || !errors.Is(err, io.EOF) {
				return fmt.Errorf("connection %d: after the replies, %d bytes and %v, want EOF", i, len(got), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := awaitShutdown(t, done, 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v, want nil", r.err)
		}
	})
}

// A client that shuts down its write side with replies in the works gets
// them, then the end of the stream.
func TestReplySlotsAnsweredAfterHalfClose(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		h := newHolder(t)
		ts := startServer(t, h, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.WriteFrame(c, []byte("slow"), ioTimeout)
		r := h.waitReplies(t, 1)[0]
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectNothing(t, c, quiet)
		if err := r.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectFrame(t, c, []byte("answer"), ioTimeout)
		testkit.ExpectFrame(t, c, []byte("after the slot"), ioTimeout)
		testkit.ExpectClosed(t, c, ioTimeout)
		if ev := h.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrPeerClosed) {
			t.Errorf("OnClose got %v, want ErrPeerClosed", ev.err)
		}
	})
}
