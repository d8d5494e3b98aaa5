package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The C server (../../cserver/echo.c) is built with the suite's own build
// function and checked for what the benchmark relies on: identical echoes,
// frames split anywhere, pipelining, replies kept when the client does not
// read, the exact cap, oversize and half-close, the listening line and
// SIGTERM.

// cServer is a running C server.
type cServer struct {
	addr string
	cmd  *exec.Cmd
	done chan error
}

// The C server is compiled once per test binary, into cBuildDir, which
// TestMain removes.
var (
	cBuildOnce sync.Once
	cBuildDir  string
	cBuildBin  string
	cBuildErr  error
)

// buildCServer compiles the C server once per test binary.
func buildCServer(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		t.Fatal("no C compiler (cc): the suite's lower bound needs one (.ci/run installs gcc)")
	}
	cBuildOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			cBuildErr = err
			return
		}
		root, err := findModuleRoot(wd, benchModule)
		if err != nil {
			cBuildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "cserver-test-")
		if err != nil {
			cBuildErr = err
			return
		}
		cBuildDir = dir
		cBuildBin = filepath.Join(dir, "cserver")
		cBuildErr = buildC(context.Background(), root, cBuildBin)
	})
	if cBuildErr != nil {
		t.Fatal(cBuildErr)
	}
	return cBuildBin
}

// startCServer runs the C server with args on a free port and waits for
// its listening line, which must name the address.
func startCServer(t *testing.T, args ...string) *cServer {
	t.Helper()
	bin := buildCServer(t)
	var ports portPicker
	addr, err := ports.next()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--addr", addr}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &cServer{addr: addr, cmd: cmd, done: make(chan error, 1)}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("the C server exited before saying it listens")
		}
		if !strings.Contains(l, "listening") || !strings.Contains(l, addr) {
			t.Fatalf("first line %q: want 'listening' and %s", l, addr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no listening line within 10s")
	}
	return s
}

func (s *cServer) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

func frameOf(payload []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// stream is n frames of random payloads (empty ones and ones larger than
// the server's 64 KiB buffer among them), and their bytes back to back.
func stream(rng *rand.Rand, n int) []byte {
	var out []byte
	for i := range n {
		size := rng.IntN(200)
		switch {
		case i%50 == 3:
			size = 0
		case i%97 == 5:
			size = 64<<10 + rng.IntN(100<<10)
		}
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		out = append(out, frameOf(p)...)
	}
	return out
}

func readAll(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %d bytes of echo: %v", n, err)
	}
	return got
}

func TestCServerEcho(t *testing.T) {
	s := startCServer(t)
	c := s.dial(t)
	for _, p := range [][]byte{[]byte("hello"), nil, bytes.Repeat([]byte{0xff}, 1000)} {
		f := frameOf(p)
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, c, len(f)); !bytes.Equal(got, f) {
			t.Fatalf("echo of %d bytes differs", len(p))
		}
	}
}

// Frames split anywhere, headers included: byte by byte, then in random
// pieces, with pauses so that the server's reads see the pieces.
func TestCServerSplitFrames(t *testing.T) {
	s := startCServer(t)
	c := s.dial(t)
	c.SetNoDelay(true)
	rng := rand.New(rand.NewPCG(1, 2))
	want := stream(rng, 30)
	for i := 0; i < len(want); {
		n := 1
		if i > 40 {
			n = 1 + rng.IntN(300)
		}
		n = min(n, len(want)-i)
		if _, err := c.Write(want[i : i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
		if i < 40 || rng.IntN(8) == 0 {
			time.Sleep(200 * time.Microsecond)
		}
	}
	if got := readAll(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatal("echo of split frames differs")
	}
}

// Many pipelined frames written while the echoes are read, over several
// connections at once.
func TestCServerPipelining(t *testing.T) {
	s := startCServer(t)
	errs := make(chan error, 4)
	for k := range 4 {
		c := s.dial(t)
		want := stream(rand.New(rand.NewPCG(3, uint64(k))), 2000)
		go func() {
			_, err := c.Write(want)
			errs <- err
		}()
		if got := readAll(t, c, len(want)); !bytes.Equal(got, want) {
			t.Fatalf("connection %d: pipelined echo differs", k)
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A client that writes far more than the socket buffers hold before it
// reads: the server's writes come up short or fail with EAGAIN, it waits
// for EPOLLOUT, and no byte is lost or reordered.
func TestCServerBackpressure(t *testing.T) {
	s := startCServer(t)
	c := s.dial(t)
	want := stream(rand.New(rand.NewPCG(5, 6)), 6000) // about 7 MB, most in the large frames
	errs := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		errs <- err
	}()
	time.Sleep(300 * time.Millisecond) // let both directions fill up
	if got := readAll(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatal("echo after backpressure differs")
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// A header announcing more than --max-message closes the connection after
// the replies to the frames before it; exactly the cap is echoed.
func TestCServerOversizeCloses(t *testing.T) {
	s := startCServer(t, "--max-message", "1000")
	c := s.dial(t)
	exact := frameOf(bytes.Repeat([]byte{7}, 1000))
	if _, err := c.Write(exact); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, len(exact)); !bytes.Equal(got, exact) {
		t.Fatal("a frame of exactly --max-message was not echoed")
	}
	before := append(frameOf([]byte("hello")), frameOf(nil)...)
	msg := binary.LittleEndian.AppendUint32(bytes.Clone(before), 1001)
	msg = append(msg, "some of the oversized payload"...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, len(before)); !bytes.Equal(got, before) {
		t.Fatalf("replies before the oversized frame: %q, want %q", got, before)
	}
	n, err := c.Read(make([]byte, 16))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after an oversized header: read %d bytes, err %v; want the connection closed", n, err)
	}
}

// A client that shuts its write side gets every reply, then EOF; an
// unfinished frame at the end is dropped.
func TestCServerHalfClose(t *testing.T) {
	s := startCServer(t)
	c := s.dial(t)
	want := stream(rand.New(rand.NewPCG(7, 8)), 300)
	if _, err := c.Write(append(bytes.Clone(want), 9, 0, 0, 0, 'x')); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading to EOF: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes of replies, want %d identical bytes", len(got), len(want))
	}
}

func TestCServerSIGTERM(t *testing.T) {
	s := startCServer(t)
	c := s.dial(t)
	f := frameOf([]byte("bye"))
	if _, err := c.Write(f); err != nil {
		t.Fatal(err)
	}
	readAll(t, c, len(f))
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}

func TestCServerBadFlags(t *testing.T) {
	bin := buildCServer(t)
	for _, args := range [][]string{{"--nope"}, {"--max-message", "x"}, {"--addr", "no-port"}} {
		err := exec.Command(bin, args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2", args, err)
		}
	}
}
