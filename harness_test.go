package frameloop_test

// The shared harness of the behavioural tests: a server matrix (every
// backend × loop count × balance mode), servers that are always shut down
// and awaited, a recording handler, plain net clients that speak the frame
// format, and bounded waits. Nothing here may block without a deadline.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/poller"
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
	// maxTestFrame refuses absurd lengths in readFrame (a desynchronised
	// stream) instead of allocating them.
	maxTestFrame = 64 << 20
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
	eventually(t, timeout, func() bool {
		st = ts.stats()
		return cond(st)
	}, "stats: %s (last: %s)", what, fmtStats(&st))
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

func totalClosed(st frameloop.Stats) uint64 {
	var n uint64
	for _, r := range frameloop.CloseReasons() {
		n += st.ClosedBy(r)
	}
	return n
}

// eventually polls cond until it holds, failing the test after timeout.
// It must run on the test's goroutine.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	c.Write(payload)
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
	eventually(t, timeout, func() bool {
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

// dial connects to addr; the connection is closed when the test ends.
func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := dialErr(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialErr(addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: ioTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// frameOf encodes payload as a frame.
func frameOf(payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(payload)), uint32(len(payload)))
	return append(b, payload...)
}

// header is a bare length prefix.
func header(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }

// writeAll writes b with a deadline.
func writeAll(c net.Conn, b []byte, timeout time.Duration) error {
	if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := c.Write(b)
	return err
}

// writeFrame writes one frame carrying payload.
func writeFrame(c net.Conn, payload []byte) error {
	return writeAll(c, frameOf(payload), ioTimeout)
}

// readFrame reads one frame within timeout.
func readFrame(c net.Conn, timeout time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n > maxTestFrame {
		return nil, fmt.Errorf("reply announces %d bytes: stream out of sync", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c, p); err != nil {
		return nil, fmt.Errorf("reading a %d-byte payload: %w", n, err)
	}
	return p, nil
}

// expectFrame reads one frame and checks it carries want.
func expectFrame(c net.Conn, want []byte, timeout time.Duration) error {
	got, err := readFrame(c, timeout)
	if err != nil {
		return fmt.Errorf("reading the reply to a %d-byte frame: %w", len(want), err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("reply differs: got %d bytes %s, want %d bytes %s", len(got), preview(got), len(want), preview(want))
	}
	return nil
}

// roundTrip sends payload and checks that its echo comes back.
func roundTrip(t testing.TB, c net.Conn, payload []byte) {
	t.Helper()
	if err := roundTripErr(c, payload); err != nil {
		t.Fatal(err)
	}
}

func roundTripErr(c net.Conn, payload []byte) error {
	if err := writeFrame(c, payload); err != nil {
		return fmt.Errorf("writing a %d-byte frame: %w", len(payload), err)
	}
	return expectFrame(c, payload, ioTimeout)
}

func preview(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%x…", b[:16])
	}
	return fmt.Sprintf("%x", b)
}

// isClosedErr says whether err is how a client sees a connection the
// server closed: end of stream, or a reset.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// readUntilClosed reads until the connection ends or timeout passes and
// returns what arrived and the error that ended the reading.
func readUntilClosed(c net.Conn, timeout time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return got.Bytes(), err
		}
	}
}

// expectClosed checks that the server closes c (end of stream or reset)
// within timeout without sending anything more.
func expectClosed(t testing.TB, c net.Conn, timeout time.Duration) {
	t.Helper()
	if err := expectClosedErr(c, timeout); err != nil {
		t.Fatal(err)
	}
}

func expectClosedErr(c net.Conn, timeout time.Duration) error {
	got, err := readUntilClosed(c, timeout)
	if len(got) > 0 {
		return fmt.Errorf("expected the connection to close with nothing more, got %d bytes %s (then %v)", len(got), preview(got), err)
	}
	if !isClosedErr(err) {
		return fmt.Errorf("expected the server to close the connection within %v, got %v", timeout, err)
	}
	return nil
}

// expectNothing checks that nothing arrives on c for d and that it stays
// open.
func expectNothing(t testing.TB, c net.Conn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || !isTimeout(err) {
		t.Fatalf("expected nothing for %v, got %d bytes, err %v", d, n, err)
	}
}

// resetClose closes c with SO_LINGER 0, so that the kernel sends a reset.
func resetClose(c *net.TCPConn) error {
	if err := c.SetLinger(0); err != nil {
		return err
	}
	return c.Close()
}

// pattern returns n pseudo-random bytes, different for each seed: a
// window, starting where seed says, over a fixed random block (copying is
// cheap even under -race; generating tens of MB byte by byte is not).
func pattern(n int, seed uint64) []byte {
	src := patternBlock()
	b := make([]byte, n)
	for i := int((seed * 0x9E3779B97F4A7C15) % uint64(len(src))); n > 0; i = 0 {
		m := copy(b[len(b)-n:], src[i:])
		n -= m
	}
	return b
}

// patternBlock is 1 MiB + 7 bytes, so that windows rarely line up.
var patternBlock = sync.OnceValue(func() []byte {
	b := make([]byte, 1<<20+7)
	rand.NewChaCha8([32]byte{'f', 'r', 'a', 'm', 'e'}).Read(b)
	return b
})

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
		stream = append(stream, frameOf(p)...)
	}
	werr := make(chan error, 1)
	go func() { werr <- writeChunks(c, stream, split, pause) }()
	var rerr error
	for i, p := range payloads {
		if err := expectFrame(c, p, ioTimeout); err != nil {
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
		if err := writeAll(c, stream[:n], ioTimeout); err != nil {
			return err
		}
		stream = stream[n:]
		if pause > 0 && len(stream) > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// writeUntilStall writes stream from offset off (cycling over it when
// cycle is set; stream must then hold whole frames) without reading, until
// limit bytes are written in all or a write of 256 KiB does not complete
// within stall. It returns the bytes written in all and whether the writes
// stalled.
func writeUntilStall(c net.Conn, stream []byte, off, limit int64, cycle bool, stall time.Duration) (int64, bool, error) {
	const chunk = 256 << 10
	for off < limit {
		pos := off
		if cycle {
			pos %= int64(len(stream))
		}
		end := min(pos+chunk, int64(len(stream)), pos+limit-off)
		if err := c.SetWriteDeadline(time.Now().Add(stall)); err != nil {
			return off, false, err
		}
		n, err := c.Write(stream[pos:end])
		off += int64(n)
		if isTimeout(err) {
			return off, true, nil
		}
		if err != nil {
			return off, false, err
		}
	}
	return off, false, nil
}

// stallNonReader pipelines 64 KiB frames on c without ever reading, until
// the writes stall. A stall can also be the machine's slowness: when the
// server side of c is known, the stall counts only once replies wait in
// its queue. It fails the test if the writes never stall.
func stallNonReader(t testing.TB, c net.Conn, server *frameloop.Conn) int64 {
	t.Helper()
	f := frameOf(pattern(64<<10, 7))
	var n int64
	for {
		var stalled bool
		var err error
		n, stalled, err = writeUntilStall(c, f, n, 1<<30, true, quiet)
		if err != nil {
			t.Fatalf("pipelining without reading: %v after %d bytes", err, n)
		}
		if !stalled {
			t.Fatalf("the server took %d bytes from a client that reads nothing without stalling", n)
		}
		if server == nil || server.Queued() > 0 {
			return n
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
	b := &bystander{c: dial(t, addr), cancel: cancel, done: make(chan error, 1)}
	go func() {
		for i := uint64(0); ctx.Err() == nil; i++ {
			if err := roundTripErr(b.c, pattern(int(i%uint64(maxSize)), i)); err != nil {
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
