package tlslayer

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

// needTool returns the path of a client program the test runs; a missing
// one fails the test (CI installs it), never skips it.
func needTool(tb testing.TB, name string) string {
	tb.Helper()
	return testkit.RequireTool(tb, name, name)
}

// A line with a tab, UTF-8 and bytes openssl must not touch.
const extLine = "frameloop ⇄ external client\t0123456789 ~!@#$%^&*()_+\n"

// openssl s_client -quiet (which implies -ign_eof): it sends the line,
// prints what comes back, and exits when the server closes with
// close_notify after echoing the line.
func TestOpenSSLClient(t *testing.T) {
	openssl := needTool(t, "openssl")
	p := getPKI(t)
	ca := p.CAFile(t)
	for _, v := range []struct{ flag, name string }{{"-tls1_2", "TLSv1.2"}, {"-tls1_3", "TLSv1.3"}} {
		t.Run(v.name, func(t *testing.T) {
			ts := startLoopServer(t, p.ServerConfig(false), Options{}, len(extLine))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", ts.addr(), v.flag,
				"-quiet", "-CAfile", ca, "-verify_return_error", "-verify_hostname", "localhost",
				"-servername", "localhost", "-alpn", "x-frameloop")
			cmd.Stdin = strings.NewReader(extLine)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if stdout.String() != extLine {
				t.Fatalf("openssl printed %q, want %q (exit %v, stderr %s)", stdout.String(), extLine, err, stderr.String())
			}
			r := ts.result(t)
			if r.err != nil || r.echoed != len(extLine) {
				t.Fatalf("server: %v, echoed %d", r.err, r.echoed)
			}
			if r.state.Version != map[string]uint16{"TLSv1.2": tls.VersionTLS12, "TLSv1.3": tls.VersionTLS13}[v.name] ||
				r.state.NegotiatedProtocol != "x-frameloop" {
				t.Fatalf("server state: version %x alpn %q", r.state.Version, r.state.NegotiatedProtocol)
			}
		})
	}
}

// procOut collects a process's output and lets the test wait for text.
type procOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *procOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *procOut) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *procOut) waitFor(tb testing.TB, what string) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(o.String(), what) {
		if time.Now().After(deadline) {
			tb.Fatalf("no %q in %q", what, o.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// interactiveSClient starts s_client in its interactive mode, where a
// line "K" asks for a TLS 1.3 key update and "R" for a TLS 1.2
// renegotiation, and waits for the handshake.
func interactiveSClient(t *testing.T, addr, ca, version string) (*exec.Cmd, io.WriteCloser, *procOut, *procOut) {
	t.Helper()
	openssl := needTool(t, "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, version,
		"-CAfile", ca, "-verify_return_error", "-servername", "localhost")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := &procOut{}, &procOut{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	stdout.waitFor(t, "Verify return code: 0 (ok)")
	return cmd, stdin, stdout, stderr
}

// TLS 1.3 KeyUpdate with update_requested: crypto/tls answers with a
// KeyUpdate of its own, written during Decrypt (the only server write
// after the handshake that the loop did not ask for), and switches keys;
// the echo that follows is encrypted under the new key.
func TestOpenSSLKeyUpdate(t *testing.T) {
	p := getPKI(t)
	ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
	cmd, stdin, stdout, stderr := interactiveSClient(t, ts.addr(), p.CAFile(t), "-tls1_3")
	io.WriteString(stdin, "K\n")
	stderr.waitFor(t, "KEYUPDATE")
	io.WriteString(stdin, "after the key update\n")
	stdout.waitFor(t, "after the key update\n")
	stdin.Close() // s_client sends close_notify and exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("s_client: %v (%s)", err, stderr.String())
	}
	r := ts.result(t)
	wantReason(t, r.err, ReasonEOF)
	if r.postHSBytes == 0 {
		t.Fatal("the server wrote no KeyUpdate")
	}
	t.Logf("server: %v; %d bytes written by Decrypt (the KeyUpdate record)", r.err, r.postHSBytes)
}

// TLS 1.2 renegotiation started by the client: crypto/tls refuses it with
// an unexpected_message alert.
func TestOpenSSLRenegotiationRefused(t *testing.T) {
	p := getPKI(t)
	ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
	cmd, stdin, _, stderr := interactiveSClient(t, ts.addr(), p.CAFile(t), "-tls1_2")
	io.WriteString(stdin, "R\n")
	stderr.waitFor(t, "RENEGOTIATING")
	cmd.Wait()
	if !strings.Contains(stderr.String(), "alert unexpected message") {
		t.Fatalf("s_client stderr: %s", stderr.String())
	}
	r := ts.result(t)
	wantReason(t, r.err, ReasonBadRecord)
	if !strings.Contains(r.err.Error(), "renegotiation refused") {
		t.Fatalf("server: %v", r.err)
	}
	t.Logf("server: %v", r.err)
}

// Python's ssl module: verifies the server, sends a line and 100 KB of
// binary data, reads the echo, then unwrap(): close_notify both ways.
const pyClient = `
import socket, ssl, sys
host, port, ca, ver = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[ver]
ctx.minimum_version = v
ctx.maximum_version = v
ctx.set_alpn_protocols(["x-frameloop"])
data = sys.stdin.buffer.read()
with socket.create_connection((host, port), timeout=20) as raw:
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    sys.stderr.write("%s %s\n" % (s.version(), s.selected_alpn_protocol()))
    s.unwrap()
sys.stdout.buffer.write(bytes(got))
`

func TestPythonClient(t *testing.T) {
	python := needTool(t, "python3")
	p := getPKI(t)
	ca := p.CAFile(t)
	blob := make([]byte, 100_000)
	rand.NewChaCha8([32]byte{9}).Read(blob)
	input := append([]byte(extLine), blob...)
	for _, v := range []struct{ arg, name string }{{"1.2", "TLSv1.2"}, {"1.3", "TLSv1.3"}} {
		t.Run(v.name, func(t *testing.T) {
			ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
			host, port, _ := strings.Cut(ts.addr(), ":")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, "-c", pyClient, host, port, ca, v.arg)
			cmd.Stdin = bytes.NewReader(input)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("python: %v\n%s", err, stderr.String())
			}
			if !bytes.Equal(stdout.Bytes(), input) {
				t.Fatalf("python got %d bytes back, want %d byte-exact", stdout.Len(), len(input))
			}
			if got := strings.TrimSpace(stderr.String()); got != v.name+" x-frameloop" {
				t.Fatalf("python reports %q", got)
			}
			r := ts.result(t)
			wantReason(t, r.err, ReasonEOF)
			if !strings.Contains(r.err.Error(), "peer sent close_notify") || r.echoed != len(input) {
				t.Fatalf("server: %v, echoed %d", r.err, r.echoed)
			}
		})
	}
}
