package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const ioTimeout = 10 * time.Second

// startKV runs the server in the test's process; it is shut down when the
// test ends.
func startKV(t *testing.T, backend string, loops, perConn int, slow time.Duration) (*server, string) {
	t.Helper()
	s := newServer(4, 64, perConn, slow)
	cfg := frameloop.DefaultConfig()
	cfg.Addr, cfg.Backend, cfg.Loops, cfg.MaxConns = "127.0.0.1:0", backend, loops, 64
	srv, err := frameloop.New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, testkit.Serve(t, srv, frameloop.ErrServerClosed, ioTimeout, s.stop)
}

// forEachVariant runs fn over every backend, with one and two loops.
func forEachVariant(t *testing.T, fn func(t *testing.T, backend string, loops int)) {
	for _, b := range poller.Backends() {
		for _, loops := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/loops=%d", b, loops), func(t *testing.T) {
				t.Parallel()
				fn(t, b, loops)
			})
		}
	}
}

// exchange pipelines the commands, then checks the replies, in order.
func exchange(c net.Conn, pairs [][2]string) error {
	var stream []byte
	for _, p := range pairs {
		stream = testkit.AppendFrame(stream, []byte(p[0]))
	}
	if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
		return err
	}
	for i, p := range pairs {
		if err := testkit.ExpectFrameErr(c, []byte(p[1]), ioTimeout); err != nil {
			return fmt.Errorf("reply %d (to %q): %w", i, p[0], err)
		}
	}
	return nil
}

// A GET pipelined after a SLOWGET is answered after it, and every slow
// answer is the value as of its request, however the workers finish.
func TestRepliesInRequestOrder(t *testing.T) {
	forEachVariant(t, func(t *testing.T, backend string, loops int) {
		_, addr := startKV(t, backend, loops, 4, 20*time.Millisecond)
		c := testkit.DialTCP(t, addr, ioTimeout)
		pairs := [][2]string{
			{"SET a 1", "OK"}, {"SLOWGET a", "VALUE 1"}, {"GET a", "VALUE 1"},
			{"SET a 2", "OK"}, {"SLOWGET a", "VALUE 2"}, {"DEL a", "OK"},
			{"SLOWGET a", "NIL"}, {"GET a", "NIL"}, {"BOGUS", "ERR unknown command"},
		}
		for range 20 {
			if err := exchange(c, pairs); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// Many slow requests pipelined on several connections: every reply in
// order, and never more than --per-conn in flight for one connection.
func TestFlowControlBoundsTheWorkInFlight(t *testing.T) {
	const conns, requests, perConn = 4, 300, 3
	forEachVariant(t, func(t *testing.T, backend string, loops int) {
		s, addr := startKV(t, backend, loops, perConn, time.Millisecond)
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i := range conns {
			wg.Go(func() {
				c := testkit.DialTCP(t, addr, ioTimeout)
				key := fmt.Sprintf("k%d", i)
				pairs := [][2]string{{"SET " + key + " v", "OK"}}
				for range requests {
					pairs = append(pairs, [2]string{"SLOWGET " + key, "VALUE v"})
				}
				errs <- exchange(c, pairs)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if m := s.most.Load(); m > perConn {
			t.Errorf("a connection had %d slow requests in flight; its reading pauses at %d", m, perConn)
		}
	})
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// kvBinary builds the example once.
func kvBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "kvstore-test"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "kvstore")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// process is the example running as a program.
type process struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed once the process is reaped
	err    error         // its exit, once exited is closed
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(kvBinary(t), append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if _, rest, ok := strings.Cut(lines.Text(), "msg=listening addr="); ok {
			p.addr, _, _ = strings.Cut(rest, " ")
			break
		}
	}
	go func() {
		for lines.Scan() {
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	if p.addr == "" {
		t.Fatal("the kvstore did not say where it listens")
	}
	return p
}

// SIGTERM with 100 slow requests in flight on 20 connections: every reply
// arrives, then the end of the stream, and the process exits 0 within its
// shutdown timeout.
func TestSIGTERMWaitsForTheSlowRequests(t *testing.T) {
	const conns, perConn = 20, 5
	p := startProcess(t, "--slow", "300ms", "--workers", "100", "--per-conn", "8", "--shutdown-timeout", "10s")
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = testkit.Dial(t, "tcp", p.addr, ioTimeout)
		var stream []byte
		for range perConn {
			stream = testkit.AppendFrame(stream, []byte("SLOWGET missing"))
		}
		if err := testkit.WriteAll(cs[i], stream, ioTimeout); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond) // the work is under way
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	for i, c := range cs {
		for j := range perConn {
			if err := testkit.ExpectFrameErr(c, []byte("NIL"), ioTimeout); err != nil {
				t.Fatalf("connection %d, reply %d: %v", i, j, err)
			}
		}
		if got, err := testkit.ReadUntilClosed(c, ioTimeout); len(got) > 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d after its replies: %d bytes, %v; want EOF", i, len(got), err)
		}
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("the process exited with %v, want status 0", p.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not exit within its shutdown timeout")
	}
	t.Logf("every reply, then EOF; exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// rss reads a process's resident set size.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// A client that pipelines slow requests without end, never reading: the
// worker pool pauses its reading, TCP holds it back, and the server's
// memory stays flat.
func TestPipeliningWithoutEndKeepsMemoryFlat(t *testing.T) {
	p := startProcess(t, "--slow", "2ms", "--workers", "2", "--per-conn", "4")
	warm := testkit.Dial(t, "tcp", p.addr, ioTimeout)
	if err := exchange(warm, [][2]string{{"SET k v", "OK"}, {"SLOWGET k", "VALUE v"}}); err != nil {
		t.Fatal(err)
	}
	before := rss(t, p.cmd.Process.Pid)
	c := testkit.Dial(t, "tcp", p.addr, ioTimeout)
	request := testkit.Frame([]byte("SLOWGET k"))
	stream := bytes.Repeat(request, 64<<10/len(request))
	var sent int64
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Write(stream)
		sent += int64(n)
		if err != nil && !testkit.IsTimeout(err) {
			t.Fatal(err)
		}
	}
	after := rss(t, p.cmd.Process.Pid)
	t.Logf("sent %d KiB of requests without reading; RSS %d -> %d KiB", sent>>10, before>>10, after>>10)
	if sent < 1<<20 {
		t.Logf("(the kernel's buffers took the rest)")
	}
	if growth := after - before; growth > 8<<20 {
		t.Errorf("RSS grew by %d KiB while a client pipelined without reading", growth>>10)
	}
}
