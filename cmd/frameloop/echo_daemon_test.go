//go:build unix

package main

// Echo through the real daemon, from clients in another process and
// language (Python) and from Go: split, coalesced, zero-length and
// maximum-size frames. docs/behaviour.md §1 and §3.3.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

// pythonClient is the README-style client: plain sockets and struct.
// It takes the address (host:port, [v6]:port or unix:/path) and exits 0
// after checking every echo.
const pythonClient = `
import socket, struct, sys, threading

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            sys.exit("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf

def send_frame(s, payload):
    s.sendall(struct.pack("<I", len(payload)) + payload)

def recv_frame(s):
    (n,) = struct.unpack("<I", recv_exact(s, 4))
    return recv_exact(s, n)

target = sys.argv[1]
if target.startswith("unix:"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(target[len("unix:"):])
else:
    host, port = target.rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
s.settimeout(10)

payloads = [b"hello, frameloop", b"", bytes(range(256)) * 4, b"x" * 70000, "héllo wörld".encode()]
for p in payloads:                       # one at a time
    send_frame(s, p)
    got = recv_frame(s)
    if got != p:
        sys.exit("echo of %d bytes differs: got %d bytes" % (len(p), len(got)))
# Pipelined: a thread sends while the main thread reads, since the server
# stops reading from a client whose replies back up (docs/behaviour.md §3.4).
sender = threading.Thread(target=s.sendall, args=(b"".join(struct.pack("<I", len(p)) + p for p in payloads * 20),))
sender.start()
for i, p in enumerate(payloads * 20):
    got = recv_frame(s)
    if got != p:
        sys.exit("pipelined echo %d differs" % i)
sender.join()
s.shutdown(socket.SHUT_WR)               # half-close: the server then closes
if s.recv(1) != b"":
    sys.exit("data after the last echo")
s.close()
print("ok")
`

// runPythonClient runs the Python client against d, if python3 exists.
func runPythonClient(t *testing.T, target string) {
	t.Helper()
	py := testkit.RequireTool(t, "python3", "python3")
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pythonClient), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script, target)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python client against %s: %v\n%s", target, err, out)
	}
}

func TestDaemonEchoPythonClient(t *testing.T) {
	testkit.RequireTool(t, "python3", "python3")
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0")...)
		runPythonClient(t, d.addr)
		d.stop()
	})
}

func TestDaemonEchoGoClients(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0")...)

		t.Run("split", func(t *testing.T) {
			c := d.dial(t)
			// A frame written a byte at a time, then one split at awkward
			// places, then a header split across the end of a write that
			// carries a whole frame before it.
			p := testkit.Pattern(23, 1)
			for _, b := range testkit.Frame(p) {
				if err := testkit.WriteAll(c, []byte{b}, ioWait); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			testkit.ExpectFrame(t, c, p, ioWait)
			q := testkit.Pattern(300, 2)
			wire := testkit.Frame(q)
			for _, cut := range [][2]int{{0, 2}, {2, 4}, {4, 5}, {5, 12}, {12, 112}, {112, len(wire)}} {
				if err := testkit.WriteAll(c, wire[cut[0]:cut[1]], ioWait); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			testkit.ExpectFrame(t, c, q, ioWait)
			r1, r2 := testkit.Pattern(10, 3), testkit.Pattern(100_000, 4) // r2 is larger than the read buffer
			wire = append(testkit.Frame(r1), testkit.Frame(r2)...)
			for _, cut := range [][2]int{{0, 17}, {17, 20_000}, {20_000, 90_000}, {90_000, len(wire)}} {
				if err := testkit.WriteAll(c, wire[cut[0]:cut[1]], ioWait); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			testkit.ExpectFrame(t, c, r1, ioWait)
			testkit.ExpectFrame(t, c, r2, ioWait)
		})

		t.Run("coalesced", func(t *testing.T) {
			c := d.dial(t)
			var wire []byte
			var want [][]byte
			for i := range 500 {
				p := testkit.Pattern(i%200, uint64(i))
				want = append(want, p)
				wire = testkit.AppendFrame(wire, p)
			}
			if err := testkit.WriteAll(c, wire, ioWait); err != nil {
				t.Fatal(err)
			}
			for _, p := range want {
				testkit.ExpectFrame(t, c, p, ioWait)
			}
		})

		t.Run("zero-length", func(t *testing.T) {
			c := d.dial(t)
			testkit.Echo(t, c, nil, ioWait)
			wire := testkit.AppendFrame(testkit.AppendFrame(testkit.Frame(nil), []byte("x")), nil)
			if err := testkit.WriteAll(c, wire, ioWait); err != nil {
				t.Fatal(err)
			}
			// The exact bytes: header 0, header 1 + "x", header 0.
			want := []byte{0, 0, 0, 0, 1, 0, 0, 0, 'x', 0, 0, 0, 0}
			got := make([]byte, len(want))
			c.SetReadDeadline(time.Now().Add(ioWait))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("wire bytes % x, want % x", got, want)
			}
			testkit.ExpectNothing(t, c, 100*time.Millisecond)
		})
		d.stop()
	})
}

func TestDaemonMaxMessage(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--max-message", "1000")...)

		t.Run("max size echoes", func(t *testing.T) {
			c := d.dial(t)
			testkit.Echo(t, c, testkit.Pattern(1000, 5), ioWait)
			testkit.Echo(t, c, testkit.Pattern(999, 6), ioWait)
			testkit.Echo(t, c, testkit.Pattern(1000, 7), ioWait)
		})

		t.Run("oversize closes after earlier replies", func(t *testing.T) {
			bystander := d.dial(t)
			testkit.Echo(t, bystander, []byte("before"), ioWait)
			c := d.dial(t)
			a, b, e := testkit.Pattern(10, 8), testkit.Pattern(1000, 9), []byte(nil)
			wire := testkit.AppendFrame(testkit.AppendFrame(testkit.Frame(a), b), e)
			wire = append(wire, testkit.Header(1001)...)
			wire = append(wire, bytes.Repeat([]byte{0xAA}, 100)...)
			if err := testkit.WriteAll(c, wire, ioWait); err != nil {
				t.Fatal(err)
			}
			testkit.ExpectFrame(t, c, a, ioWait)
			testkit.ExpectFrame(t, c, b, ioWait)
			testkit.ExpectFrame(t, c, e, ioWait)
			c.SetReadDeadline(time.Now().Add(ioWait))
			var one [1]byte
			n, err := c.Read(one[:])
			if n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("after the replies: read %d bytes, err %v; want a clean EOF", n, err)
			}
			testkit.Echo(t, bystander, testkit.Pattern(1000, 10), ioWait) // other connections unaffected
			testkit.Echo(t, d.dial(t), []byte("after"), ioWait)
		})
		d.stop()
	})
}
