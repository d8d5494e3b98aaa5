//go:build unix

package main

// frameloop bench, the real binary, against stand-in servers written with
// Go's net package: its exit status when the server answers wrongly, and
// when a signal stops it.

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// standIn is a TCP server on loopback that runs handle on each connection
// and counts the bytes it read; it is stopped when the test ends.
type standIn struct {
	addr string
	read atomic.Int64
}

func startStandIn(t *testing.T, handle func(c net.Conn, in io.Reader)) *standIn {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &standIn{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c, io.TeeReader(c, countWriter{&s.read}))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

func echoHandler(c net.Conn, in io.Reader) { io.Copy(c, in) }

// corruptEvery7th echoes u32le frames, flipping a payload byte of every
// 7th reply.
func corruptEvery7th(c net.Conn, in io.Reader) {
	var hdr [4]byte
	for n := 1; ; n++ {
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return
		}
		size := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16 | int(hdr[3])<<24
		frame := make([]byte, 4+size)
		copy(frame, hdr[:])
		if _, err := io.ReadFull(in, frame[4:]); err != nil {
			return
		}
		if n%7 == 0 && size > 0 {
			frame[4+size/2] ^= 0x20
		}
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

// dropEvery7th echoes u32le frames but never answers every 7th.
func dropEvery7th(c net.Conn, in io.Reader) {
	var hdr [4]byte
	for n := 1; ; n++ {
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return
		}
		size := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16 | int(hdr[3])<<24
		frame := make([]byte, 4+size)
		copy(frame, hdr[:])
		if _, err := io.ReadFull(in, frame[4:]); err != nil {
			return
		}
		if n%7 == 0 {
			continue
		}
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

type benchJSON struct {
	Frames      int64   `json:"frames"`
	Mismatches  int64   `json:"mismatches"`
	Lost        int64   `json:"lost"`
	ConnErrors  int64   `json:"conn_errors"`
	DurationS   float64 `json:"duration_s"`
	Interrupted bool    `json:"interrupted"`
}

func parseBenchJSON(t *testing.T, stdout string) benchJSON {
	t.Helper()
	var r benchJSON
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("stdout is not one JSON line: %v: %q", err, stdout)
	}
	return r
}

// A server that corrupts or drops replies makes the run exit 3, with the
// figures on stdout and one line on stderr saying what went wrong.
func TestBenchExitsNonZeroOnWrongReplies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		handle func(net.Conn, io.Reader)
		says   string
	}{
		{"corrupted", corruptEvery7th, "MISMATCHED"},
		{"dropped", dropEvery7th, "LOST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startStandIn(t, tc.handle)
			r := runFrameloop(t, 30*time.Second, "bench", "--addr", s.addr, "--conns", "2", "--pipeline", "4",
				"--duration", "300ms", "--warmup", "0s", "--grace", "300ms", "--json")
			if r.code != 3 {
				t.Fatalf("exit %d, want 3; stderr:\n%s", r.code, r.stderr)
			}
			if lines := r.stderrLines(); len(lines) != 1 || !strings.Contains(lines[0], tc.says) {
				t.Errorf("stderr %q: want one line saying %s", r.stderr, tc.says)
			}
			j := parseBenchJSON(t, r.stdout)
			if j.Mismatches+j.Lost == 0 || j.Interrupted {
				t.Errorf("%+v", j)
			}
		})
	}
	t.Run("correct", func(t *testing.T) {
		t.Parallel()
		s := startStandIn(t, echoHandler)
		r := runFrameloop(t, 30*time.Second, "bench", "--addr", s.addr, "--conns", "2", "--duration", "300ms", "--warmup", "0s", "--json")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
		}
	})
}

// SIGINT or SIGTERM while measuring: the run ends at once, says
// "interrupted", prints the figures so far and exits 130.
func TestBenchInterruptedBySignal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sig  os.Signal
		json bool
	}{
		{"SIGINT/json", syscall.SIGINT, true},
		{"SIGTERM/table", syscall.SIGTERM, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startStandIn(t, echoHandler)
			args := []string{"bench", "--addr", s.addr, "--conns", "4", "--pipeline", "4", "--duration", "60s", "--warmup", "0s"}
			if tc.json {
				args = append(args, "--json")
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(daemonBinary(t), args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.WaitDelay = 5 * time.Second
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-done
			})
			for end := time.Now().Add(startWait); s.read.Load() == 0; {
				if time.Now().After(end) {
					t.Fatalf("the generator sent nothing within %v; stderr: %s", startWait, stderr.String())
				}
				time.Sleep(pollEvery)
			}
			time.Sleep(300 * time.Millisecond)
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
				done <- nil // for the cleanup
			case <-time.After(exitWait):
				t.Fatalf("still running %v after %v; stderr: %s", exitWait, tc.sig, stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 130 {
				t.Fatalf("exit %d, want 130; stderr:\n%s", code, stderr.String())
			}
			if lines := splitLines(stderr.String()); len(lines) != 1 || !strings.Contains(lines[0], "interrupted") {
				t.Errorf("stderr %q: want one line saying interrupted", stderr.String())
			}
			if tc.json {
				j := parseBenchJSON(t, stdout.String())
				if !j.Interrupted || j.Frames == 0 || j.DurationS <= 0 || j.DurationS >= 60 || j.Mismatches+j.Lost+j.ConnErrors != 0 {
					t.Errorf("%+v", j)
				}
			} else if out := stdout.String(); !strings.Contains(out, "interrupted") || !strings.Contains(out, "msgs/s") {
				t.Errorf("the table does not show the partial figures:\n%s", out)
			}
		})
	}
}
