package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTB records a failure instead of failing the test, so that the
// helpers' failures can be tested. Fatal ends the calling goroutine, as
// testing's does: run the helper with try.
type fakeTB struct {
	testing.TB // the real test, for what is not overridden
	mu         sync.Mutex
	msg        string
	cleanups   []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatal(args ...any) { f.fail(fmt.Sprint(args...)) }

func (f *fakeTB) Fatalf(format string, args ...any) { f.fail(fmt.Sprintf(format, args...)) }

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func (f *fakeTB) fail(msg string) {
	f.mu.Lock()
	f.msg = msg
	f.mu.Unlock()
	runtime.Goexit()
}

// try runs fn with a fakeTB on a goroutine of its own and returns the
// failure message ("" if it did not fail), after running its cleanups.
func try(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the helper did not return within 10 s")
	}
	for _, c := range f.cleanups {
		c()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}

func TestFrameEncoding(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want []byte
	}{
		{"Header", Header(1001), []byte{0xE9, 0x03, 0, 0}},
		{"Header max", Header(0xFFFFFFFF), []byte{0xff, 0xff, 0xff, 0xff}},
		{"Frame", Frame([]byte("abc")), []byte{3, 0, 0, 0, 'a', 'b', 'c'}},
		{"empty Frame", Frame(nil), []byte{0, 0, 0, 0}},
		{"AppendFrame", AppendFrame([]byte{9}, []byte("x")), []byte{9, 1, 0, 0, 0, 'x'}},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}

func TestReadFrameReadsWhatFrameWrote(t *testing.T) {
	sizes := []int{0, 1, 5, 4, 70000, 0}
	var stream []byte
	for i, n := range sizes {
		stream = AppendFrame(stream, Pattern(n, uint64(i)))
	}
	r := bytes.NewReader(stream)
	for i, n := range sizes {
		got, err := ReadFrame(r, 0, MaxFrame)
		if err != nil || !bytes.Equal(got, Pattern(n, uint64(i))) {
			t.Fatalf("frame %d: %d bytes, %v; want the %d written", i, len(got), err, n)
		}
	}
	// The end of the stream between frames is io.EOF itself.
	if _, err := ReadFrame(r, 0, MaxFrame); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	// In the middle of one, an unexpected EOF, wrapped.
	_, err := ReadFrame(bytes.NewReader(Frame([]byte("cut short"))[:8]), 0, MaxFrame)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated payload: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestReadFrameRefusesAbsurdLengths(t *testing.T) {
	// Nothing follows the headers: a reader that allocated the announced
	// size would then block or fail on the payload instead.
	for _, n := range []uint32{MaxFrame + 1, 1 << 31, 0xFFFFFFFF} {
		_, err := ReadFrame(bytes.NewReader(Header(n)), 0, MaxFrame)
		if err == nil || !strings.Contains(err.Error(), "out of step") {
			t.Errorf("header announcing %d: %v, want a refusal", n, err)
		}
	}
	// Refusing costs nothing like the announced size.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		ReadFrame(bytes.NewReader(Header(0xFFFFFFFF)), 0, MaxFrame)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing ten 4 GiB headers allocated %d bytes", grew)
	}
	// The bound is inclusive.
	if p, err := ReadFrame(bytes.NewReader(Frame(make([]byte, 10))), 0, 10); err != nil || len(p) != 10 {
		t.Errorf("a frame of exactly max: %d bytes, %v", len(p), err)
	}
	if _, err := ReadFrame(bytes.NewReader(Frame(make([]byte, 11))), 0, 10); err == nil {
		t.Error("a frame of max+1 was accepted")
	}
}

func TestReadFrameIntoReusesBuffer(t *testing.T) {
	buf := make([]byte, 100)
	p, err := ReadFrameInto(bytes.NewReader(Frame([]byte("small"))), buf, 0, MaxFrame)
	if err != nil || string(p) != "small" || &p[0] != &buf[0] {
		t.Fatalf("a frame that fits: %q, %v, in buf: %v", p, err, err == nil && &p[0] == &buf[0])
	}
	p, err = ReadFrameInto(bytes.NewReader(Frame(Pattern(200, 1))), buf, 0, MaxFrame)
	if err != nil || !bytes.Equal(p, Pattern(200, 1)) {
		t.Fatalf("a frame larger than buf: %d bytes, %v", len(p), err)
	}
}

// A timeout needs a deadline to set: asking for one on a reader or writer
// without deadlines is an error, not an unbounded read.
func TestTimeoutWithoutDeadlineIsAnError(t *testing.T) {
	if _, err := ReadFrame(bytes.NewReader(Frame(nil)), time.Second, MaxFrame); err == nil {
		t.Error("ReadFrame with a timeout on a bytes.Reader did not fail")
	}
	var w bytes.Buffer
	if err := WriteFrame(&w, []byte("x"), time.Second); err == nil || w.Len() != 0 {
		t.Errorf("WriteFrame with a timeout on a bytes.Buffer: %v, wrote %d bytes", err, w.Len())
	}
	if err := WriteFrame(&w, []byte("x"), 0); err != nil || !bytes.Equal(w.Bytes(), Frame([]byte("x"))) {
		t.Errorf("WriteFrame without a timeout: %v, wrote % x", err, w.Bytes())
	}
}

func TestErrorKinds(t *testing.T) {
	deadline := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	pipe := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
	eof := fmt.Errorf("reading: %w", io.EOF)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		err                    error
		timeout, reset, closed bool
	}{
		{deadline, true, false, false},
		{fmt.Errorf("wrapped: %w", deadline), true, false, false},
		{reset, false, true, true},
		{pipe, false, true, true},
		{eof, false, false, true},
		{refused, false, false, false},
		{nil, false, false, false},
	} {
		if IsTimeout(tc.err) != tc.timeout || IsReset(tc.err) != tc.reset || IsClosed(tc.err) != tc.closed {
			t.Errorf("%v: IsTimeout %v IsReset %v IsClosed %v; want %v %v %v", tc.err,
				IsTimeout(tc.err), IsReset(tc.err), IsClosed(tc.err), tc.timeout, tc.reset, tc.closed)
		}
	}
}

func TestPatternIsDeterministic(t *testing.T) {
	a, b := Pattern(1000, 7), Pattern(1000, 7)
	if !bytes.Equal(a, b) {
		t.Fatal("two patterns of the same seed differ")
	}
	if len(Pattern(0, 3)) != 0 || len(a) != 1000 {
		t.Fatal("wrong length")
	}
	// A pattern is a prefix of a longer one of the same seed.
	if !bytes.HasPrefix(Pattern(5000, 7), a) {
		t.Fatal("Pattern(1000, 7) is not a prefix of Pattern(5000, 7)")
	}
	// Different seeds give different bytes.
	seen := map[string]uint64{}
	for seed := range uint64(2000) {
		k := string(Pattern(16, seed))
		if prev, ok := seen[k]; ok {
			t.Fatalf("seeds %d and %d give the same 16 bytes", prev, seed)
		}
		seen[k] = seed
	}
	// Longer than the block: it wraps around, byte for byte.
	block := PatternBlock()
	long := Pattern(2*len(block)+3, 0)
	if !bytes.Equal(long[:len(block)], block) || !bytes.Equal(long[len(block):2*len(block)], block) || !bytes.Equal(long[2*len(block):], block[:3]) {
		t.Fatal("a pattern longer than the block does not repeat it")
	}
	// The block itself is fixed: the same bytes in every run and version
	// (a golden value, so that a change to the generator is noticed).
	if got := Preview(block); got != goldenBlockStart {
		t.Fatalf("the pattern block starts %s, want %s", got, goldenBlockStart)
	}
}

const goldenBlockStart = "a77f8bab3e9c2dffde1e906473c647a7…"

func TestPreview(t *testing.T) {
	if got := Preview([]byte{1, 2, 0xab}); got != "0102ab" {
		t.Errorf("Preview of 3 bytes = %q", got)
	}
	if got := Preview(bytes.Repeat([]byte{0xff}, 17)); got != strings.Repeat("ff", 16)+"…" {
		t.Errorf("Preview of 17 bytes = %q", got)
	}
}

// loopback returns both ends of a TCP connection over loopback, closed
// when the test ends.
func loopback(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client = DialTCP(t, ln.Addr().String(), 5*time.Second)
	select {
	case c := <-accepted:
		if c == nil {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { c.Close() })
		return client, c.(*net.TCPConn)
	case <-time.After(5 * time.Second):
		t.Fatal("accept did not return")
	}
	return nil, nil
}

func TestEchoExpectAndClose(t *testing.T) {
	c, s := loopback(t)
	// An echo server for two frames.
	done := make(chan error, 1)
	go func() {
		for range 2 {
			p, err := ReadFrame(s, 5*time.Second, MaxFrame)
			if err == nil {
				err = WriteFrame(s, p, 5*time.Second)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	Echo(t, c, []byte("hello"), 5*time.Second)
	if err := EchoErr(c, Pattern(100<<10, 3), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ExpectNothing(t, c, 20*time.Millisecond)

	// A reply that differs, and one that does not come.
	if err := WriteFrame(s, []byte("other"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ExpectFrameErr(c, []byte("hello"), 5*time.Second); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("a different reply: %v", err)
	}
	if err := ExpectFrameErr(c, []byte("hello"), 20*time.Millisecond); !IsTimeout(err) {
		t.Errorf("no reply: %v, want a timeout", err)
	}
	if msg := try(t, func(tb testing.TB) { ExpectFrame(tb, c, nil, 20*time.Millisecond) }); msg == "" {
		t.Error("ExpectFrame did not fail without a reply")
	}
	if msg := try(t, func(tb testing.TB) { ExpectNothing(tb, c, time.Second) }); msg != "" {
		t.Errorf("ExpectNothing on a silent connection: %s", msg)
	}

	// Still open: the close is not there yet.
	if err := ExpectClosedErr(c, 20*time.Millisecond); err == nil {
		t.Error("ExpectClosedErr on an open connection succeeded")
	}
	// Bytes and then the end: WaitClosed takes them, ExpectClosed does not.
	c2, s2 := loopback(t)
	WriteAll(s2, []byte("late"), time.Second)
	s2.Close()
	if err := ExpectClosedErr(c2, 5*time.Second); err == nil || !strings.Contains(err.Error(), "nothing more") {
		t.Errorf("ExpectClosedErr with bytes before the end: %v", err)
	}
	c3, s3 := loopback(t)
	WriteAll(s3, []byte("late"), time.Second)
	s3.Close()
	start := time.Now()
	if at, err := WaitClosed(c3, 5*time.Second); err != nil || at.Before(start) {
		t.Errorf("WaitClosed with bytes before the end: %v, %v", at, err)
	}
	// A clean end, and a reset.
	s.Close()
	ExpectClosed(t, c, 5*time.Second)
	c4, s4 := loopback(t)
	s4.SetLinger(0)
	s4.Close()
	if err := ExpectClosedErr(c4, 5*time.Second); err != nil {
		t.Errorf("after a reset: %v", err)
	}
}

func TestWriteUntilStall(t *testing.T) {
	c, s := loopback(t) // s never reads
	_ = s
	f := Frame(Pattern(64<<10, 1))
	n, stalled, err := WriteUntilStall(c, f, 0, 1<<30, true, 256<<10, 200*time.Millisecond)
	if err != nil || !stalled || n == 0 {
		t.Fatalf("to a peer that does not read: %d bytes, stalled %v, %v", n, stalled, err)
	}
	// Up to the limit, from where it was.
	c2, _ := loopback(t)
	n, stalled, err = WriteUntilStall(c2, f, 10, 100, false, 7, time.Second)
	if err != nil || stalled || n != 100 {
		t.Fatalf("with a limit of 100 from 10: %d bytes, stalled %v, %v", n, stalled, err)
	}
}

func TestDialFailsTheTest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if msg := try(t, func(tb testing.TB) { Dial(tb, "tcp", addr, time.Second) }); !strings.Contains(msg, addr) {
		t.Errorf("dialing a closed port: %q, want a failure naming %s", msg, addr)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	if msg := try(t, func(tb testing.TB) {
		Eventually(tb, 5*time.Second, time.Millisecond, func() bool { n++; return n == 3 }, "three calls")
	}); msg != "" || n != 3 {
		t.Errorf("a condition true at the third call: %q after %d calls", msg, n)
	}
	msg := try(t, func(tb testing.TB) {
		Eventually(tb, 30*time.Millisecond, time.Millisecond, func() bool { return false }, "the %s", "answer")
	})
	if !strings.Contains(msg, "30ms") || !strings.Contains(msg, "the answer") {
		t.Errorf("a condition never true: %q", msg)
	}
	calls := 0
	msg = try(t, func(tb testing.TB) {
		EventuallyNil(tb, 30*time.Millisecond, time.Millisecond, func() error { calls++; return errors.New("not yet " + strconv.Itoa(calls)) })
	})
	if !strings.Contains(msg, "not yet "+strconv.Itoa(calls)) {
		t.Errorf("EventuallyNil failed with %q, want the last error (call %d)", msg, calls)
	}
	if msg := try(t, func(tb testing.TB) { EventuallyNil(tb, time.Second, time.Millisecond, func() error { return nil }) }); msg != "" {
		t.Errorf("a nil condition: %q", msg)
	}
}

func TestRequireTool(t *testing.T) {
	var path string
	if msg := try(t, func(tb testing.TB) { path = RequireTool(tb, "sh", "dash") }); msg != "" || path == "" {
		t.Errorf("sh: %q, path %q", msg, path)
	}
	msg := try(t, func(tb testing.TB) { RequireTool(tb, "frameloop-no-such-tool", "some-package") })
	if !strings.Contains(msg, "frameloop-no-such-tool") || !strings.Contains(msg, "install the some-package package") {
		t.Errorf("a missing tool: %q, want a failure naming the tool and its package", msg)
	}
}

// testkit is for tests: no file of the module but a _test.go one may
// import it.
func TestImportedOnlyFromTests(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root is not at %s: %v", root, err)
	}
	const self = `"github.com/frameloop/frameloop/internal/testkit"`
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if imp.Path.Value == self {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s imports internal/testkit; only _test.go files may", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("only %d files checked under %s", checked, root)
	}
}
