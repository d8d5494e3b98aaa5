package loadgen

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

// testServer is a stand-in for the real server, written with Go's net
// package: goroutine per connection, loopback only, stopped by the test's
// cleanup, which waits for every goroutine it started.
type testServer struct {
	ln    net.Listener
	addr  string
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startServer(t *testing.T, network string, handle func(net.Conn)) *testServer {
	t.Helper()
	var ln net.Listener
	var err error
	s := &testServer{conns: map[net.Conn]struct{}{}}
	switch network {
	case "tcp4":
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
	case "tcp6":
		ln, err = net.Listen("tcp6", "[::1]:0")
	case "unix":
		ln, err = net.Listen("unix", filepath.Join(t.TempDir(), "echo.sock"))
	}
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	if network == "unix" {
		s.addr = "unix:" + s.addr
	}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo copies bytes back: a correct server, whatever the framing.
func echo(c net.Conn) { io.Copy(c, c) }

// frameServer decodes frames and lets reply decide, for the n-th frame of
// the connection (from 1), what to send back: the payload (possibly
// altered), nothing (drop), or to close the connection (ok false).
func frameServer(reply func(n int, payload []byte) (out []byte, send, ok bool)) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReaderSize(c, 64<<10)
		w := bufio.NewWriterSize(c, 64<<10)
		var wire []byte
		for n := 1; ; n++ {
			// No deadline: the server reads until the test's cleanup
			// closes the connection.
			p, err := testkit.ReadFrame(r, 0, maxSize)
			if err != nil {
				return
			}
			out, send, ok := reply(n, p)
			if !ok {
				w.Flush()
				return
			}
			if send {
				wire = testkit.AppendFrame(wire[:0], out)
				w.Write(wire)
			}
			if r.Buffered() == 0 {
				if w.Flush() != nil {
					return
				}
			}
		}
	}
}

// flipEvery10th corrupts one byte of every 10th reply.
var flipEvery10th = frameServer(func(n int, p []byte) ([]byte, bool, bool) {
	if n%10 == 0 && len(p) > 0 {
		p[len(p)/2] ^= 0x40
	}
	return p, true, true
})

// dropEvery10th never answers every 10th frame.
var dropEvery10th = frameServer(func(n int, p []byte) ([]byte, bool, bool) {
	return p, n%10 != 0, true
})

// closeAfter5 answers five frames, then closes the connection.
var closeAfter5 = frameServer(func(n int, p []byte) ([]byte, bool, bool) {
	return p, true, n <= 5
})

// stallingEcho echoes, but holds every reply due in [from, from+d) after
// the first connection until the end of that window: a server pause.
func stallingEcho(from, d time.Duration) func(net.Conn) {
	var once sync.Once
	var t0 time.Time
	return frameServer(func(n int, p []byte) ([]byte, bool, bool) {
		once.Do(func() { t0 = time.Now() })
		if e := time.Since(t0); e >= from && e < from+d {
			time.Sleep(from + d - e)
		}
		return p, true, true
	})
}

// echoOnceThenClose answers one frame, waits d and closes the connection.
func echoOnceThenClose(d time.Duration) func(net.Conn) {
	return func(c net.Conn) {
		p, err := testkit.ReadFrame(c, 0, maxSize)
		if err != nil {
			return
		}
		c.Write(testkit.Frame(p))
		time.Sleep(d)
	}
}
