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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the peer command, so that the
// command's own start-up, "listening" line and signal handling are tested.
func TestMain(m *testing.M) {
	if os.Getenv("PEER_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

var impls = []string{"net", "gnet", "nbio"}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServer runs impl in-process on a free port and returns its address;
// the server is stopped (and checked to stop cleanly) when the test ends.
func startServer(t *testing.T, impl string, maxMessage int) string {
	t.Helper()
	return startServerTLS(t, impl, maxMessage, "", "")
}

// startServerTLS is startServer with TLS when certFile and keyFile are set.
func startServerTLS(t *testing.T, impl string, maxMessage int, certFile, keyFile string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- servers[impl](ctx, config{
			addr:       freeAddr(t),
			loops:      1,
			maxMessage: maxMessage,
			tlsCert:    certFile,
			tlsKey:     keyFile,
			ready:      func(a string) { ready <- a },
		})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("%s: server failed to start: %v", impl, err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("%s: server not ready within 10s", impl)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("%s: server returned %v on stop", impl, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s: server did not stop within 15s", impl)
		}
	})
	return addr
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func frame(payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	copy(b[4:], payload)
	return b
}

// randomPayloads returns n payloads of random sizes, among them empty ones
// and 100 KiB ones, filled with random bytes.
func randomPayloads(rng *rand.Rand, n int) [][]byte {
	ps := make([][]byte, n)
	for i := range ps {
		var size int
		switch {
		case i == 0 || i%97 == 13:
			size = 0
		case i == 1 || i%101 == 7:
			size = 100 << 10
		case i%5 == 0:
			size = rng.IntN(70 << 10)
		default:
			size = rng.IntN(300)
		}
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		ps[i] = p
	}
	return ps
}

// pipelineAndVerify writes every payload as a frame, split across writes of
// random sizes (down to one byte), without waiting for replies, while it
// reads and checks every echo in order.
func pipelineAndVerify(t *testing.T, c net.Conn, rng *rand.Rand, payloads [][]byte) {
	t.Helper()
	var stream []byte
	for _, p := range payloads {
		stream = append(stream, frame(p)...)
	}
	var cuts []int
	for off := 0; off < len(stream); {
		var n int
		switch rng.IntN(4) {
		case 0:
			n = 1 + rng.IntN(3)
		case 1:
			n = 1 + rng.IntN(100)
		default:
			n = 1 + rng.IntN(40<<10)
		}
		off = min(off+n, len(stream))
		cuts = append(cuts, off)
	}

	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		prev := 0
		for i, cut := range cuts {
			if _, err := c.Write(stream[prev:cut]); err != nil {
				werr <- err
				return
			}
			prev = cut
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let some reads see partial frames
			}
		}
		werr <- nil
	}()

	r := bufio.NewReader(c)
	hdr := make([]byte, 4)
	for i, want := range payloads {
		if _, err := io.ReadFull(r, hdr); err != nil {
			t.Fatalf("frame %d: reading header: %v", i, err)
		}
		n := binary.LittleEndian.Uint32(hdr)
		if int(n) != len(want) {
			t.Fatalf("frame %d: echoed length %d, want %d", i, n, len(want))
		}
		got := make([]byte, n)
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatalf("frame %d: reading payload: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: echoed payload differs", i)
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
}

func TestEchoPipelined(t *testing.T) {
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			addr := startServer(t, impl, defaultMaxMessage)
			rng := rand.New(rand.NewPCG(42, uint64(len(impl))))
			payloads := randomPayloads(rng, 1000)
			pipelineAndVerify(t, dial(t, addr), rng, payloads)
		})
	}
}

func TestEchoConcurrentConns(t *testing.T) {
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			addr := startServer(t, impl, defaultMaxMessage)
			var wg sync.WaitGroup
			for k := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(7, uint64(k)))
					pipelineAndVerify(t, dial(t, addr), rng, randomPayloads(rng, 200))
				}()
			}
			wg.Wait()
		})
	}
}

// TestEchoMaxMessage checks that a payload of exactly the cap is echoed.
func TestEchoMaxMessage(t *testing.T) {
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			addr := startServer(t, impl, defaultMaxMessage)
			rng := rand.New(rand.NewPCG(1, 2))
			p := make([]byte, defaultMaxMessage)
			for i := range p {
				p[i] = byte(i * 7)
			}
			pipelineAndVerify(t, dial(t, addr), rng, [][]byte{{1}, p, {}, {2, 3}})
		})
	}
}

// TestOversizeCloses checks that a header announcing more than the cap
// closes the connection, after the replies to the frames before it.
func TestOversizeCloses(t *testing.T) {
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			addr := startServer(t, impl, defaultMaxMessage)
			c := dial(t, addr)
			var msg []byte
			msg = append(msg, frame([]byte("hello"))...)
			msg = append(msg, frame(nil)...)
			msg = binary.LittleEndian.AppendUint32(msg, defaultMaxMessage+1)
			msg = append(msg, "some of the oversized payload"...)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			want := append(frame([]byte("hello")), frame(nil)...)
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("reading replies before the oversized frame: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("replies = %q, want %q", got, want)
			}
			n, err := c.Read(make([]byte, 16))
			if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("after an oversized header: read %d bytes, err %v; want the connection closed", n, err)
			}
		})
	}
}

// TestHalfClose checks that a client that shuts its write side after
// sending still gets every reply, then EOF.
func TestHalfClose(t *testing.T) {
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			addr := startServer(t, impl, defaultMaxMessage)
			c := dial(t, addr)
			var msg []byte
			for i := range 50 {
				msg = append(msg, frame(bytes.Repeat([]byte{byte(i)}, i*10))...)
			}
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("reading: %v", err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("got %d bytes of replies, want %d identical bytes", len(got), len(msg))
			}
		})
	}
}

// TestCommand runs the peer command itself (the test binary re-executed):
// it must log a "listening" line with the address, echo, and exit 0 on
// SIGTERM.
func TestCommand(t *testing.T) {
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			addr := freeAddr(t)
			cmd := exec.Command(os.Args[0], "--impl", impl, "--addr", addr, "--loops", "1")
			cmd.Env = append(os.Environ(), "PEER_TEST_MAIN=1")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill() //nolint:errcheck
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			deadline := time.After(10 * time.Second)
		wait:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatal("peer exited before logging 'listening'")
					}
					if strings.Contains(l, "listening") {
						if !strings.Contains(l, addr) {
							t.Fatalf("listening line %q lacks the address %s", l, addr)
						}
						break wait
					}
				case <-deadline:
					t.Fatal("no 'listening' line within 10s")
				}
			}
			go func() {
				for range lines {
				}
			}()
			c := dial(t, addr)
			rng := rand.New(rand.NewPCG(3, 4))
			pipelineAndVerify(t, c, rng, randomPayloads(rng, 20))
			c.Close()

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("peer exited with %v after SIGTERM, want status 0", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("peer did not exit within 15s of SIGTERM")
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	var buf bytes.Buffer
	if code := run([]string{"--impl", "nope"}, &buf); code != 2 {
		t.Errorf("unknown impl: exit %d, want 2", code)
	}
	if !strings.Contains(buf.String(), "unknown --impl") || strings.Count(strings.TrimSpace(buf.String()), "\n") != 0 {
		t.Errorf("unknown impl: stderr %q, want one line", buf.String())
	}
	buf.Reset()
	if code := run([]string{"--loops", "0"}, &buf); code != 2 {
		t.Errorf("--loops 0: exit %d, want 2", code)
	}
	// An address that cannot be bound: exit 1 with a one-line error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, impl := range impls {
		buf.Reset()
		if code := run([]string{"--impl", impl, "--addr", ln.Addr().String()}, &buf); code != 1 {
			t.Errorf("%s on a busy port: exit %d, want 1 (stderr %q)", impl, code, buf.String())
		}
	}
}
