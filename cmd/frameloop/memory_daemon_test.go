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

// pushUntilStalled writes stream to c until a write makes no progress for
// quiet, and returns how many bytes the server side took.
func pushUntilStalled(t *testing.T, c net.Conn, stream []byte, quiet time.Duration) int {
	t.Helper()
	off := 0
	for off < len(stream) {
		c.SetWriteDeadline(time.Now().Add(quiet))
		n, err := c.Write(stream[off:min(off+64<<10, len(stream))])
		off += n
		if err != nil {
			if isTimeout(err) {
				return off
			}
			t.Fatalf("pushing: %v after %d bytes", err, off)
		}
	}
	t.Fatalf("all %d bytes were taken from a client that does not read", off)
	return off
}

// SPEC §3.4: memory per connection stays bounded whatever a client sends.
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
	echo(t, warm, []byte("warm up"))
	before := rss(t, d.pid())

	var frame []byte
	frame = appendFrame(frame, pattern(frameSize, 7))
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
