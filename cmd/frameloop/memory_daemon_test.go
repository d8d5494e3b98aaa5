package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

// rss reads a process's resident set size from /proc.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// pushUntilStalled writes stream to c, 64 KiB at a time, until a write
// makes no progress for quiet, and returns how many bytes the server side
// took.
func pushUntilStalled(t *testing.T, c net.Conn, stream []byte, quiet time.Duration) int {
	t.Helper()
	n, stalled, err := testkit.WriteUntilStall(c, stream, 0, int64(len(stream)), false, 64<<10, quiet)
	if err != nil {
		t.Fatalf("pushing: %v after %d bytes", err, n)
	}
	if !stalled {
		t.Fatalf("all %d bytes were taken from a client that does not read", n)
	}
	return int(n)
}

// docs/behaviour.md §3.4: memory per connection stays bounded whatever a client sends.
// Clients pipeline 64 MiB each without reading; the daemon's RSS must not
// follow. What it may hold per connection is about one read (64 KiB), one
// frame and its queued replies (the high-water mark, 64 KiB, plus one
// frame): well under 1 MiB. The kernel's socket buffers are not in RSS.
func TestDaemonMemoryStaysBoundedWhileClientsPipelineWithoutReading(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads RSS from /proc")
	}
	const (
		clients   = 4
		perClient = 64 << 20
		frameSize = 32 << 10
		// Generous: a few MiB of runtime and pool slack over the
		// per-connection bound, against 256 MiB pushed.
		maxGrowth = 16 << 20
	)
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--loops", "2", "--write-timeout", "0", "--idle-timeout", "0")
	warm := d.dial(t)
	testkit.Echo(t, warm, []byte("warm up"), ioWait)
	before := rss(t, d.pid())

	var frame []byte
	frame = testkit.AppendFrame(frame, testkit.Pattern(frameSize, 7))
	stream := bytes.Repeat(frame, perClient/len(frame))
	conns := make([]net.Conn, clients)
	pushed := 0
	for i := range conns {
		conns[i] = d.dial(t)
		pushed += pushUntilStalled(t, conns[i], stream, 500*time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let the loops settle
	after := rss(t, d.pid())
	t.Logf("pushed %d MiB over %d stalled clients; daemon RSS %d -> %d MiB", pushed>>20, clients, before>>20, after>>20)
	if growth := after - before; growth > maxGrowth {
		t.Fatalf("daemon RSS grew by %d MiB while %d MiB were pushed at it; want under %d MiB", growth>>20, pushed>>20, maxGrowth>>20)
	}

	// Paused, not disconnected: each client still gets its replies.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(ioWait))
		got := make([]byte, len(frame))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, frame) {
			t.Fatalf("client %d: first reply after the stall: %v", i, err)
		}
	}
}

// The attack --max-input-memory exists for: 64 clients each send all but
// the last byte of a 1 MiB frame, wait, then send the last byte. Without a
// bound the daemon would hold 64 unfinished frames (its RSS grew by 73 MiB
// here); with 8 MiB it holds what fits, leaves the rest unread in the
// kernel, and its RSS grows by a small multiple of the budget at most (the
// Go heap may reach twice its live size, and pools keep buffers a while).
// Every echo arrives intact.
func TestDaemonInputMemoryBudgetHoldsAgainstUnfinishedFrames(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads RSS from /proc")
	}
	const (
		clients   = 64
		size      = 1 << 20
		budget    = 8 << 20
		maxGrowth = 4 * budget
	)
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--loops", "2", "--max-input-memory", "8MiB",
		"--idle-timeout", "0", "--write-timeout", "0", "--metrics-addr", "127.0.0.1:0")
	warm := d.dial(t)
	testkit.Echo(t, warm, []byte("warm up"), ioWait)
	before := rss(t, d.pid())

	goOn := make(chan struct{})
	errs := make(chan error, clients)
	for i := range clients {
		c := d.dial(t)
		frame := testkit.Frame(testkit.Pattern(size, uint64(i)))
		go func() {
			if err := testkit.WriteAll(c, frame[:len(frame)-1], 60*time.Second); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			<-goOn
			if _, err := c.Write(frame[len(frame)-1:]); err != nil {
				errs <- fmt.Errorf("client %d: last byte: %w", i, err)
				return
			}
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			got := make([]byte, len(frame))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- fmt.Errorf("client %d: reading the echo: %w", i, err)
				return
			}
			if !bytes.Equal(got, frame) {
				errs <- fmt.Errorf("client %d: the echo differs", i)
				return
			}
			errs <- nil
		}()
	}
	// Wait until the daemon has paused every connection it cannot buffer:
	// seven frames fit 8 MiB (each is charged 1.125 MiB, its size class).
	testkit.EventuallyNil(t, 3*ioWait, pollEvery, func() error {
		m, err := d.scrapeMetrics()
		if err != nil {
			return err
		}
		if p := m["frameloop_input_memory_paused_total"]; p < clients-7 {
			return fmt.Errorf("%v connections paused for memory, want %d", p, clients-7)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // the loops settle
	held := rss(t, d.pid())
	m, _ := d.scrapeMetrics()
	close(goOn)
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	after := rss(t, d.pid())
	t.Logf("RSS %d MiB before, %d MiB with %d unfinished 1 MiB frames (input memory charged: %.1f MiB), %d MiB after every echo",
		before>>20, held>>20, clients, m["frameloop_input_memory_bytes"]/(1<<20), after>>20)
	for what, v := range map[string]int64{"while the frames were unfinished": held, "after every echo": after} {
		if growth := v - before; growth > maxGrowth {
			t.Errorf("RSS grew by %d MiB %s; the budget is %d MiB, the bound %d MiB", growth>>20, what, budget>>20, maxGrowth>>20)
		}
	}
}
