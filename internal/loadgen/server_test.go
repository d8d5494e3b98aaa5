package loadgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/framing"
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

// mustFormat compiles a --framing spec as the generator does, for bodies
// of up to maxSize bytes.
func mustFormat(t testing.TB, spec string) *framing.Format {
	t.Helper()
	return mustWire(t, spec).f
}

// readFrame reads the next frame in format f from r and returns it whole,
// with its header size.
func readFrame(r *bufio.Reader, f *framing.Format) (frame []byte, h int, err error) {
	// Peek until Next has seen the header, and the frame too if it fits
	// the buffer; need then is the frame's size.
	need := 1
	for need <= r.Size() {
		b, err := r.Peek(need)
		if err != nil {
			return nil, 0, err
		}
		n, _, next, err := f.Next(b)
		if err != nil {
			return nil, 0, err
		}
		if n > 0 {
			break
		}
		need = next
	}
	frame = make([]byte, need)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, 0, err
	}
	n, h, _, err := f.Next(frame)
	if err == nil && n != len(frame) {
		err = fmt.Errorf("framing: a frame of %d bytes read as %d", n, len(frame))
	}
	return frame, h, err
}

// framedEcho decodes frames in format f and sends each back exactly as it
// came, prefix and length field included: a correct server that knows the
// framing, and hangs up on a frame that is not in it.
func framedEcho(f *framing.Format) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReaderSize(c, 64<<10)
		w := bufio.NewWriterSize(c, 64<<10)
		for {
			frame, _, err := readFrame(r, f)
			if err != nil {
				return
			}
			w.Write(frame)
			if r.Buffered() == 0 && w.Flush() != nil {
				return
			}
		}
	}
}

// frameServer decodes frames in format spec and lets reply decide, for the
// n-th frame of the connection (from 1), what to send back: the payload
// (possibly altered) framed with the prefix received, nothing (drop), or
// to close the connection (ok false).
func frameServer(spec string, reply func(n int, payload []byte) (out []byte, send, ok bool)) func(net.Conn) {
	f, err := framing.ParseSpec(spec)
	if err != nil {
		panic(err)
	}
	x, err := newWire(f)
	if err != nil {
		panic(err)
	}
	return func(c net.Conn) {
		r := bufio.NewReaderSize(c, 64<<10)
		w := bufio.NewWriterSize(c, 64<<10)
		for n := 1; ; n++ {
			frame, h, err := readFrame(r, x.f)
			if err != nil {
				return
			}
			out, send, ok := reply(n, frame[h:])
			if !ok {
				w.Flush()
				return
			}
			if send {
				b, err := x.f.Append(nil, frame[:x.off], out)
				if err != nil {
					return
				}
				w.Write(b)
			}
			if r.Buffered() == 0 {
				if w.Flush() != nil {
					return
				}
			}
		}
	}
}

// flipEvery10th corrupts one byte of every 10th reply's payload.
func flipEvery10th(spec string) func(net.Conn) {
	return frameServer(spec, func(n int, p []byte) ([]byte, bool, bool) {
		if n%10 == 0 && len(p) > 0 {
			p[len(p)/2] ^= 0x40
		}
		return p, true, true
	})
}

// dropEvery10th never answers every 10th frame.
var dropEvery10th = frameServer("u32le", func(n int, p []byte) ([]byte, bool, bool) {
	return p, n%10 != 0, true
})

// closeAfter5 answers five frames, then closes the connection.
var closeAfter5 = frameServer("u32le", func(n int, p []byte) ([]byte, bool, bool) {
	return p, true, n <= 5
})

// stallingEcho echoes, but holds every reply due in [from, from+d) after
// the first connection until the end of that window: a server pause.
func stallingEcho(from, d time.Duration) func(net.Conn) {
	var once sync.Once
	var t0 time.Time
	return frameServer("u32le", func(n int, p []byte) ([]byte, bool, bool) {
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
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		p := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, p); err != nil {
			return
		}
		c.Write(append(hdr[:], p...))
		time.Sleep(d)
	}
}
