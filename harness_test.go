package frameloop_test

// The shared harness of the behavioural tests: a server matrix (every
// backend × loop count × balance mode), servers that are always shut down
// and awaited, a recording handler, and clients that pipeline, stall or
// keep echoing while a test does harm. The frame format, bounded reads and
// writes, and bounded waits are internal/testkit's, shared with the other
// packages' tests. Nothing here may block without a deadline.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestMain(m *testing.M) {
	// These tests mostly wait: on timeouts, on sockets, on the kernel's
	// backlog. Unless -parallel is given, run more of their parallel
	// subtests at once than GOMAXPROCS would allow, so that the suite's
	// time is not the sum of its timeouts on a two-core machine.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		flag.Set("test.parallel", "16")
	}
	goleak.VerifyTestMain(m)
}

const (
	// ioTimeout bounds any single client read or write that is expected to
	// succeed: generous, because the machine is shared and -race is slow.
	ioTimeout = 10 * time.Second
	// quiet is how long a client waits to conclude that nothing arrives.
	quiet = 300 * time.Millisecond
	// serveWait bounds how long Serve may take to return after Shutdown.
	serveWait = 15 * time.Second
	// pollEvery is how often a wait polls what it waits for.
	pollEvery = 5 * time.Millisecond
	// stallChunk is the largest single write of a client that pipelines
	// without reading: one that does not complete in time is a stall.
	stallChunk = 256 << 10
	// stuckCheck is how long a stalled non-reader's queue must stay
	// unmoved to count as stuck (stallNonReader).
	stuckCheck = 100 * time.Millisecond
)

// serverVariant is one cell of the matrix every behaviour runs over.
type serverVariant struct {
	name    string
	backend string
	loops   int
	balance string
}

func serverVariants() []serverVariant { return loopVariants(1, 2) }

// loopVariants is every backend × each loop count in counts (× balance
// for more than one loop).
func loopVariants(counts ...int) []serverVariant {
	var vs []serverVariant
	for _, b := range poller.Backends() {
		for _, n := range counts {
			if n == 1 {
				vs = append(vs, serverVariant{name: b + "/loops=1", backend: b, loops: 1})
				continue
			}
			for _, bal := range []string{"reuseport", "handoff"} {
				vs = append(vs, serverVariant{name: fmt.Sprintf("%s/loops=%d/%s", b, n, bal), backend: b, loops: n, balance: bal})
			}
		}
	}
	return vs
}

func (v serverVariant) config() frameloop.Config {
	return frameloop.Config{
		Addr:    "127.0.0.1:0",
		Backend: v.backend,
		Loops:   v.loops,
		Balance: v.balance,
	}
}

// forEachServerConfig runs fn once per backend × loops (× balance for two
// loops), as parallel subtests named like "epoll/loops=2/handoff". cfg
// holds the cell's Addr, Backend, Loops and Balance; fn sets the rest.
func forEachServerConfig(t *testing.T, fn func(t *testing.T, cfg frameloop.Config)) {
	t.Helper()
	runVariants(t, true, fn)
}

// forEachServerConfigSerially is forEachServerConfig for the heavy tests
// (many connections or goroutines): one cell at a time.
func forEachServerConfigSerially(t *testing.T, fn func(t *testing.T, cfg frameloop.Config)) {
	t.Helper()
	runVariants(t, false, fn)
}

// forEachLoopCount is forEachServerConfig over the given loop counts.
func forEachLoopCount(t *testing.T, counts []int, fn func(t *testing.T, cfg frameloop.Config)) {
	t.Helper()
	runVariantList(t, loopVariants(counts...), true, fn)
}

func runVariants(t *testing.T, parallel bool, fn func(t *testing.T, cfg frameloop.Config)) {
	t.Helper()
	runVariantList(t, serverVariants(), parallel, fn)
}

func runVariantList(t *testing.T, vs []serverVariant, parallel bool, fn func(t *testing.T, cfg frameloop.Config)) {
	t.Helper()
	if len(vs) == 0 {
		t.Fatal("poller.Backends() lists no backend")
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			fn(t, v.config())
		})
	}
}

// testServer is a running server. It is shut down, and its Serve awaited,
// when the test ends.
type testServer struct {
	srv  *frameloop.Server
	addr string
	done chan struct{}
	err  error // Serve's result; valid once done is closed
}

// startServer starts h (EchoHandler when nil) with cfg and registers its
// shutdown. Clients dialled after this call are closed before the shutdown.
func startServer(t testing.TB, h frameloop.Handler, cfg frameloop.Config) *testServer {
	t.Helper()
	if h == nil {
		h = frameloop.EchoHandler{}
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	srv, err := frameloop.New(h, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen(%s): %v", cfg.Addr, err)
	}
	ts := &testServer{srv: srv, addr: srv.Addr().String(), done: make(chan struct{})}
	go func() {
		ts.err = srv.Serve()
		close(ts.done)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), serveWait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown at cleanup: %v", err)
		}
		if err := ts.wait(serveWait); !errors.Is(err, frameloop.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// wait waits for Serve to return and gives its result.
func (ts *testServer) wait(timeout time.Duration) error {
	select {
	case <-ts.done:
		return ts.err
	case <-time.After(timeout):
		return fmt.Errorf("Serve did not return within %v", timeout)
	}
}

func (ts *testServer) stats() frameloop.Stats { return ts.srv.Stats() }

// waitStats waits until cond holds for the server's Stats (they are
// published once per loop pass) and returns them.
func (ts *testServer) waitStats(t testing.TB, timeout time.Duration, what string, cond func(frameloop.Stats) bool) frameloop.Stats {
	t.Helper()
	var st frameloop.Stats
	testkit.EventuallyNil(t, timeout, pollEvery, func() error {
		if st = ts.stats(); cond(st) {
			return nil
		}
		return fmt.Errorf("stats: %s (last: %s)", what, fmtStats(&st))
	})
	return st
}

func fmtStats(st *frameloop.Stats) string {
	var closed bytes.Buffer
	for _, r := range frameloop.CloseReasons() {
		if n := st.ClosedBy(r); n > 0 {
			fmt.Fprintf(&closed, " %s=%d", r, n)
		}
	}
	return fmt.Sprintf("conns=%d accepted=%d closed{%s } framesIn=%d framesOut=%d bytesIn=%d bytesOut=%d readPauses=%d backpressure=%d acceptPaused=%v",
		st.Connections, st.Accepted, closed.String(), st.FramesIn, st.FramesOut, st.BytesIn, st.BytesOut,
		st.ReadPauses, st.Backpressure, st.AcceptPaused)
}

// waitClosed waits until no connection is open and n closes are counted,
// and returns those Stats. Connections drops as a connection closes; the
// close counts are published with the loop's other figures, at the end of
// its pass (docs/behaviour.md §10), so a test waits for both.
func (ts *testServer) waitClosed(t testing.TB, n uint64) frameloop.Stats {
	t.Helper()
	return ts.waitStats(t, ioTimeout, fmt.Sprintf("no connection open and %d closes counted", n), func(st frameloop.Stats) bool {
		return st.Connections == 0 && totalClosed(st) >= n
	})
}

func totalClosed(st frameloop.Stats) uint64 {
	var n uint64
	for _, r := range frameloop.CloseReasons() {
		n += st.ClosedBy(r)
	}
	return n
}

// ---- recording handler ----

// closeEvent is one OnClose call.
type closeEvent struct {
	conn *frameloop.Conn
	err  error
	at   time.Time
}

// recorder is a Handler that records OnOpen and OnClose and answers frames
// with onFrame (echo when nil). It fails the test if OnClose runs twice for
// one connection.
type recorder struct {
	onFrame func(c *frameloop.Conn, payload []byte)

	mu     sync.Mutex
	opens  []*frameloop.Conn
	closes []closeEvent
	seen   map[*frameloop.Conn]int
	dups   []string
}

func newRecorder(t testing.TB) *recorder {
	r := &recorder{seen: make(map[*frameloop.Conn]int)}
	// Registered before startServer, so this runs after the shutdown.
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, d := range r.dups {
			t.Errorf("%s", d)
		}
		for _, c := range r.opens {
			if r.seen[c] == 0 {
				t.Errorf("connection from %v was opened but OnClose never ran", c.RemoteAddr())
			}
		}
	})
	return r
}

func (r *recorder) OnOpen(c *frameloop.Conn) {
	r.mu.Lock()
	r.opens = append(r.opens, c)
	r.mu.Unlock()
}

func (r *recorder) OnFrame(c *frameloop.Conn, payload []byte) {
	if r.onFrame != nil {
		r.onFrame(c, payload)
		return
	}
	c.WriteRaw(c.Frame().Raw) // the identical bytes, whatever the framing
}

func (r *recorder) OnClose(c *frameloop.Conn, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[c]++
	if r.seen[c] > 1 {
		r.dups = append(r.dups, fmt.Sprintf("OnClose ran %d times for the connection from %v", r.seen[c], c.RemoteAddr()))
	}
	r.closes = append(r.closes, closeEvent{conn: c, err: err, at: time.Now()})
}

func (r *recorder) closeEvents() []closeEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]closeEvent(nil), r.closes...)
}

// openFor waits for the OnOpen of the server side of client.
func (r *recorder) openFor(t testing.TB, client net.Conn, timeout time.Duration) *frameloop.Conn {
	t.Helper()
	want := client.LocalAddr().String()
	var found *frameloop.Conn
	testkit.Eventually(t, timeout, pollEvery, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.opens {
			if c.RemoteAddr().String() == want {
				found = c
				return true
			}
		}
		return false
	}, "OnOpen for the client at %s", want)
	return found
}

// closeFor waits for the OnClose of the server side of client.
func (r *recorder) closeFor(t testing.TB, client net.Conn, timeout time.Duration) closeEvent {
	t.Helper()
	want := client.LocalAddr().String()
	ev, ok := r.waitCloseFor(want, timeout)
	if !ok {
		t.Fatalf("no OnClose within %v for the client at %s", timeout, want)
	}
	return ev
}

func (r *recorder) waitCloseFor(remote string, timeout time.Duration) (closeEvent, bool) {
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		for _, ev := range r.closes {
			if ev.conn.RemoteAddr().String() == remote {
				r.mu.Unlock()
				return ev, true
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			return closeEvent{}, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---- clients ----

// resetClose closes c with SO_LINGER 0, so that the kernel sends a reset.
func resetClose(c *net.TCPConn) error {
	if err := c.SetLinger(0); err != nil {
		return err
	}
	return c.Close()
}

// runGoroutines runs fn(0..n-1) concurrently and returns the first few of
// their errors joined, with a count (nil when all succeed).
func runGoroutines(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := fn(i); err != nil {
				errs[i] = fmt.Errorf("goroutine %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d failed: %w", len(failed), n, errors.Join(failed[:min(len(failed), 5)]...))
}

// within checks that d lies in [lo, hi].
func within(t testing.TB, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s after %v, want between %v and %v", what, d.Round(time.Millisecond), lo, hi)
	}
}

// pipelineEcho writes the frames carrying payloads as one stream, in
// chunks of split(i) bytes (the whole stream when split is nil) with pause
// after each chunk, while reading and checking every echo in order.
func pipelineEcho(c net.Conn, payloads [][]byte, split func(i int) int, pause time.Duration) error {
	var stream []byte
	for _, p := range payloads {
		stream = append(stream, testkit.Frame(p)...)
	}
	werr := make(chan error, 1)
	go func() { werr <- writeChunks(c, stream, split, pause) }()
	var rerr error
	for i, p := range payloads {
		if err := testkit.ExpectFrameErr(c, p, ioTimeout); err != nil {
			rerr = fmt.Errorf("reply %d of %d: %w", i, len(payloads), err)
			c.SetWriteDeadline(time.Now()) // unblock the writer
			break
		}
	}
	if err := <-werr; err != nil && rerr == nil {
		rerr = fmt.Errorf("writing: %w", err)
	}
	return rerr
}

// writeChunks writes stream in chunks of split(i) bytes.
func writeChunks(c net.Conn, stream []byte, split func(i int) int, pause time.Duration) error {
	for i := 0; len(stream) > 0; i++ {
		n := len(stream)
		if split != nil {
			n = min(max(split(i), 1), n)
		}
		if err := testkit.WriteAll(c, stream[:n], ioTimeout); err != nil {
			return err
		}
		stream = stream[n:]
		if pause > 0 && len(stream) > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// stallNonReader pipelines 64 KiB frames on c without ever reading, until
// the writes stall. A stall can also be the machine's slowness: when the
// server side of c is known, the stall counts only once replies wait in
// its queue and stay there, unmoved, for a moment. (A server that was
// merely slow to read has its queue still moving; once it catches up, the
// kernel's buffers — megabytes, with send-buffer autotuning — can take
// every reply, leaving nothing queued for a write timeout to act on.) It
// fails the test if the writes never stall.
func stallNonReader(t testing.TB, c net.Conn, server *frameloop.Conn) int64 {
	t.Helper()
	f := testkit.Frame(testkit.Pattern(64<<10, 7))
	var n int64
	for {
		var stalled bool
		var err error
		n, stalled, err = testkit.WriteUntilStall(c, f, n, 1<<30, true, stallChunk, quiet)
		if err != nil {
			t.Fatalf("pipelining without reading: %v after %d bytes", err, n)
		}
		if !stalled {
			t.Fatalf("the server took %d bytes from a client that reads nothing without stalling", n)
		}
		if server == nil {
			return n
		}
		if q := server.Queued(); q > 0 {
			time.Sleep(stuckCheck)
			if server.Context().Err() != nil || server.Queued() == q {
				return n // stuck, or already closed for it
			}
		}
	}
}

// bystander is a client that keeps echoing, checking every reply, while a
// test does harm elsewhere; stop ends it and returns its round trips and
// its first failure.
type bystander struct {
	c      *net.TCPConn
	cancel context.CancelFunc
	rounds atomic.Int64
	done   chan error
}

func startBystander(t *testing.T, addr string, maxSize int) *bystander {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	b := &bystander{c: testkit.DialTCP(t, addr, ioTimeout), cancel: cancel, done: make(chan error, 1)}
	go func() {
		for i := uint64(0); ctx.Err() == nil; i++ {
			if err := testkit.EchoErr(b.c, testkit.Pattern(int(i%uint64(maxSize)), i), ioTimeout); err != nil {
				b.done <- err
				return
			}
			b.rounds.Add(1)
		}
		b.done <- nil
	}()
	return b
}

// stop ends the round trips; it reports a failure, or no round trip at
// all during the harm (what, for the message), as a test error.
func (b *bystander) stop(t *testing.T, what string) {
	t.Helper()
	b.cancel()
	if err := <-b.done; err != nil {
		t.Errorf("the bystander failed: %v", err)
	}
	if b.rounds.Load() == 0 {
		t.Errorf("the bystander completed no round trip %s", what)
	}
}
