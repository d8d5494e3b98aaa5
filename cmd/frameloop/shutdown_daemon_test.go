//go:build unix

package main

// Graceful shutdown from the outside (docs/behaviour.md §7): replies in flight are
// delivered, new connections are refused, the drain is bounded by
// --shutdown-timeout, idle clients do not hold the exit up, and SIGINT
// works like SIGTERM.

import (
	"bufio"
	"context"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

// A client pipelines 2000 frames of 1 KiB and reads the replies slowly.
// Once every request has been written and acknowledged by the daemon's
// kernel, SIGTERM: the client still gets all 2000 replies, then EOF, and
// the daemon exits 0. Meanwhile new connections are refused or unanswered.
func TestDaemonSIGTERMDeliversRepliesInFlight(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		const frames, size = 2000, 1024
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0")...)
		c := d.dial(t)
		var wire []byte
		for i := range frames {
			wire = testkit.AppendFrame(wire, testkit.Pattern(size, uint64(i)))
		}
		written := make(chan error, 1)
		go func() {
			written <- testkit.WriteAll(c, wire, 30*time.Second)
		}()

		signalledAt := -1
		writeDone := false
		for i := range frames {
			if i%10 == 9 {
				time.Sleep(10 * time.Millisecond)
			}
			if !writeDone {
				select {
				case err := <-written:
					if err != nil {
						t.Fatalf("writing the requests: %v", err)
					}
					writeDone = true
				default:
				}
			}
			if signalledAt < 0 && writeDone && i >= 200 && i < frames-100 {
				if n, ok := unsentBytes(c); !ok || n == 0 {
					d.signal(syscall.SIGTERM)
					signalledAt = i
					if _, ok := d.waitLog(ioWait, msgIs("shutting down")); !ok {
						t.Fatal("no \"shutting down\" line after SIGTERM")
					}
					requireNoNewService(t, d)
				}
			}
			got, err := testkit.ReadFrame(c, ioWait, testkit.MaxFrame)
			if err != nil {
				t.Fatalf("reply %d of %d (SIGTERM sent after reply %d): %v", i, frames, signalledAt, err)
			}
			if string(got) != string(testkit.Pattern(size, uint64(i))) {
				t.Fatalf("reply %d differs", i)
			}
		}
		if signalledAt < 0 {
			t.Fatal("test setup: the requests were not all acknowledged before the last replies")
		}
		c.SetReadDeadline(time.Now().Add(ioWait))
		var b [1]byte
		if n, err := c.Read(b[:]); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("after the last reply: %d bytes, %v; want a clean EOF", n, err)
		}
		code, ok := d.waitExit(exitWait)
		if !ok || code != 0 {
			t.Fatalf("after SIGTERM: exited %v, status %d; want status 0", ok, code)
		}
		t.Logf("SIGTERM sent after reply %d of %d", signalledAt, frames)
	})
}

// The requests that reached the daemon's host before SIGTERM count as
// received (docs/behaviour.md §7: every frame a client finished sending is answered), whether or
// not the daemon had read them from its socket yet: it stops reading from
// a client whose replies back up (§3.4), so at SIGTERM they may wait in its
// socket buffer. Each must still be answered.
//
// The client pipelines 8 MB (more than the daemon's socket send buffer
// holds: 4 MB at most with Linux's default tcp_wmem) through a small
// receive buffer and reads slowly. SIGTERM is sent at a moment when the
// daemon's kernel has acknowledged more requests than the daemon has read
// (SIOCOUTQ on the client, frames_received_total from /metrics); the
// client must then get a reply for every acknowledged request.
func TestDaemonSIGTERMAnswersRequestsReceivedButUnread(t *testing.T) {
	if !canTellUnsent {
		t.Skip("cannot tell here how much the daemon's kernel has acknowledged")
	}
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")...)
		c := d.dialSmallReceiveBuffer(t)
		const frames, size = 2000, 4096
		const frameLen = 4 + size
		var wire []byte
		for i := range frames {
			wire = testkit.AppendFrame(wire, testkit.Pattern(size, uint64(i)))
		}
		var handed atomic.Int64 // bytes the kernel has taken, at least
		go func() {
			const chunk = 64 << 10
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			for off := 0; off < len(wire); off += chunk {
				if _, err := c.Write(wire[off:min(off+chunk, len(wire))]); err != nil {
					return // the daemon closes the connection after SIGTERM
				}
				handed.Store(int64(min(off+chunk, len(wire))))
			}
		}()

		signalledAt, received, daemonRead := -1, 0, 0
		for i := range frames {
			if i%20 == 19 {
				time.Sleep(10 * time.Millisecond)
			}
			if signalledAt < 0 && i >= 200 {
				// handed first, then unsent: the difference is a lower bound
				// of what the daemon's kernel has acknowledged by now.
				h := handed.Load()
				unsent, ok := unsentBytes(c)
				if !ok {
					t.Fatal("SIOCOUTQ failed")
				}
				m, err := d.scrapeMetrics()
				if err != nil {
					t.Fatal(err)
				}
				received = int(h-int64(unsent)) / frameLen
				daemonRead = int(m["frameloop_frames_received_total"])
				if received > daemonRead || i == frames/2 {
					d.signal(syscall.SIGTERM)
					signalledAt = i
				}
			}
			got, err := testkit.ReadFrame(c, ioWait, testkit.MaxFrame)
			if err != nil {
				if signalledAt >= 0 && i >= received {
					break // every acknowledged request was answered
				}
				t.Fatalf("reply %d: %v; SIGTERM was sent after reply %d, when the daemon's kernel had acknowledged %d requests and the daemon had read %d",
					i, err, signalledAt, received, daemonRead)
			}
			if string(got) != string(testkit.Pattern(size, uint64(i))) {
				t.Fatalf("reply %d differs", i)
			}
		}
		if _, err := testkit.WaitClosed(c, ioWait); err != nil {
			t.Fatal(err)
		}
		code, ok := d.waitExit(exitWait)
		if !ok || code != 0 {
			t.Fatalf("after SIGTERM: exited %v, status %d; want status 0", ok, code)
		}
		t.Logf("SIGTERM after reply %d: %d requests acknowledged, %d read by the daemon", signalledAt, received, daemonRead)
	})
}

// requireNoNewService checks that a connection attempted while the daemon
// drains is refused, or at least never answered.
func requireNoNewService(t *testing.T, d *daemon) {
	t.Helper()
	c, err := net.DialTimeout(d.network, d.addr, ioWait)
	if err != nil {
		return // refused: the listener is closed
	}
	defer c.Close()
	if err := testkit.EchoErr(c, []byte("too late"), quiet); err == nil {
		t.Fatal("a connection made after SIGTERM was served")
	}
}

func TestDaemonShutdownTimeoutBoundsTheDrain(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--shutdown-timeout", "1s")...)
		c := d.dialSmallReceiveBuffer(t) // never reads
		select {
		case err := <-floodUntilBlocked(c, 16<<10, 15*time.Second):
			if err != nil {
				t.Fatalf("flooding the non-reading client: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the flood did not end")
		}
		sent := time.Now()
		d.signal(syscall.SIGTERM)
		code, ok := d.waitExit(exitWait)
		took := time.Since(sent)
		if !ok || code != 0 {
			t.Fatalf("after SIGTERM: exited %v, status %d; want status 0", ok, code)
		}
		if took < 900*time.Millisecond || took > 4*time.Second {
			t.Fatalf("exited %v after SIGTERM with a stuck client and --shutdown-timeout 1s; want 1–4 s", took)
		}
		if _, ok := d.waitLog(0, msgIs("shutdown timeout passed; closed the remaining connections")); !ok {
			t.Error("no log line says the shutdown timeout passed")
		}
		if _, err := testkit.WaitClosed(c, ioWait); err != nil {
			t.Fatalf("the stuck client does not see the close: %v", err)
		}
	})
}

func TestDaemonSIGINTStopsGracefully(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0")...)
		c := d.dial(t)
		testkit.Echo(t, c, []byte("before SIGINT"), ioWait)
		d.signal(syscall.SIGINT)
		code, ok := d.waitExit(exitWait)
		if !ok || code != 0 {
			t.Fatalf("after SIGINT: exited %v, status %d; want status 0", ok, code)
		}
		rec, ok := d.waitLog(0, msgIs("signal received, draining"))
		if !ok || rec["signal"] != "interrupt" {
			t.Fatalf("signal line %v, want signal=interrupt", rec)
		}
		if _, ok := d.waitLog(0, msgIs("shutting down")); !ok {
			t.Error("no \"shutting down\" line")
		}
		if _, ok := d.waitLog(0, msgIs("stopped")); !ok {
			t.Error("no \"stopped\" line")
		}
		if _, err := testkit.WaitClosed(c, ioWait); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDaemonIdleClientsDoNotDelayExit(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0")...)
		var idle []net.Conn
		for i := range 10 {
			c := d.dial(t)
			testkit.Echo(t, c, []byte{byte(i)}, ioWait)
			idle = append(idle, c)
		}
		sent := time.Now()
		d.signal(syscall.SIGTERM)
		code, ok := d.waitExit(time.Second)
		if !ok {
			t.Fatalf("still running 1 s after SIGTERM with 10 idle clients")
		}
		if code != 0 {
			t.Fatalf("exit status %d, want 0", code)
		}
		t.Logf("exited %v after SIGTERM", time.Since(sent))
		for i, c := range idle {
			if _, err := testkit.WaitClosed(c, ioWait); err != nil {
				t.Fatalf("idle client %d: %v", i, err)
			}
		}
	})
}

// Once the daemon logs "shutting down", it has stopped accepting: a new
// connection is refused or never answered, even while the loops are busy
// with other clients. The daemon runs with GOMAXPROCS=1 (what Go picks in
// a container limited to one CPU), so that busy loops compete with the
// goroutine that handles the signal.
func TestDaemonRefusesConnectionsOnceShuttingDown(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := launchDaemon(t, nil, []string{"GOMAXPROCS=1"}, with(args, "--addr", "127.0.0.1:0")...)
		d.awaitListening()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 8 {
			c := d.dial(t)
			wg.Go(func() { keepBusy(c, i, stop) })
		}
		defer func() { close(stop); wg.Wait() }()
		time.Sleep(100 * time.Millisecond)

		d.signal(syscall.SIGTERM)
		if _, ok := d.waitLog(ioWait, msgIs("shutting down")); !ok {
			t.Fatal("no \"shutting down\" line after SIGTERM")
		}
		// Connect as fast as possible for 50 ms, then see which get echoes.
		var late []net.Conn
		for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
			c, err := net.DialTimeout(d.network, d.addr, ioWait)
			if err != nil {
				break // refused: the listener is closed
			}
			defer c.Close()
			if err := testkit.WriteFrame(c, []byte("too late"), ioWait); err != nil {
				continue
			}
			late = append(late, c)
		}
		served := 0
		for _, c := range late {
			if got, err := testkit.ReadFrame(c, quiet, testkit.MaxFrame); err == nil && string(got) == "too late" {
				served++
			}
		}
		if served > 0 {
			t.Errorf("%d of %d connections made after the \"shutting down\" line were served", served, len(late))
		}
		close(stop)
		wg.Wait()
		stop = make(chan struct{})
		code, ok := d.waitExit(exitWait)
		if !ok || code != 0 {
			t.Fatalf("after SIGTERM: exited %v, status %d; want status 0", ok, code)
		}
	})
}

// keepBusy pipelines batches of frames on c and reads their echoes until
// stop is closed or the connection ends.
func keepBusy(c net.Conn, seed int, stop <-chan struct{}) {
	defer c.Close()
	var batch []byte
	for i := range 16 {
		batch = testkit.AppendFrame(batch, testkit.Pattern(4000, uint64(seed+i)))
	}
	buf := make([]byte, len(batch))
	for {
		select {
		case <-stop:
			return
		default:
		}
		c.SetDeadline(time.Now().Add(ioWait))
		if _, err := c.Write(batch); err != nil {
			return
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
	}
}

// drainClient is a client nobody here wrote: Python sends 100 frames of
// 48 KiB without reading, says "sent" once sendall has returned, then reads
// until the end of the stream and checks it got every echo, complete.
const drainClient = `
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
payloads = [bytes([i]) * (48 << 10) for i in range(100)]
stream = b"".join(struct.pack("<I", len(p)) + p for p in payloads)
s.sendall(stream)
print("sent", flush=True)
got = bytearray()
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    got += b
if bytes(got) != stream:
    same = next((i for i in range(min(len(got), len(stream))) if got[i] != stream[i]), min(len(got), len(stream)))
    sys.exit("got %d of %d bytes of echoes (%.2f frames), equal for the first %d, then EOF" % (len(got), len(stream), len(got) / (4 + (48 << 10)), same))
print("ok")
`

// The drain answers every frame a client finished sending before SIGTERM
// — those still in the client's send buffer too — completely, then EOF,
// with any number of loops.
func TestDaemonSIGTERMAnswersEverythingSentBeforeIt(t *testing.T) {
	py := testkit.RequireTool(t, "python3", "python3")
	script := filepath.Join(t.TempDir(), "drain.py")
	if err := os.WriteFile(script, []byte(drainClient), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, backend := range poller.Backends() {
		for _, loops := range []int{1, 2, 4} {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) {
				t.Parallel()
				d := startDaemon(t, "--addr", "127.0.0.1:0", "--backend", backend, "--loops", strconv.Itoa(loops), "--shutdown-timeout", "20s")
				host, port, _ := net.SplitHostPort(d.addr)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, py, script, host, port)
				cmd.WaitDelay = 5 * time.Second
				var stderr strings.Builder
				cmd.Stderr = &stderr
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				lines := bufio.NewScanner(out)
				if !lines.Scan() || lines.Text() != "sent" {
					cmd.Wait()
					t.Fatalf("the client did not finish sending: %q %s", lines.Text(), stderr.String())
				}
				d.signal(syscall.SIGTERM)
				lines.Scan()
				last := lines.Text()
				if err := cmd.Wait(); err != nil || last != "ok" {
					t.Fatalf("client: %v %q %s", err, last, stderr.String())
				}
				if code, ok := d.waitExit(exitWait); !ok || code != 0 {
					t.Fatalf("after SIGTERM: exited %v, status %d; want status 0", ok, code)
				}
			})
		}
	}
}
