//go:build unix

package main

// The TLS clients the daemon tests drive: Go's crypto/tls, openssl
// s_client and Python's ssl module, each bounded in time, with the test
// PKI's files (internal/testkit) written into the test's temporary
// directory.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

const (
	// toolWait bounds one run of openssl or Python, start-up included
	// (pyenv's python3 can take seconds to start on a busy machine).
	toolWait = 60 * time.Second
	// alpn is the protocol the tests offer and serve.
	alpn = "x-frameloop"
)

// tlsFiles are the test PKI's certificates and keys as files, for the
// daemon and for the clients that load files.
type tlsFiles struct {
	ca              string // the CA's certificate
	cert, key       string // the server's, for localhost, 127.0.0.1 and ::1
	client, clikey  string // a client certificate the CA signed
	rogue, roguekey string // a self-signed client certificate
}

func writeTLSFiles(t *testing.T) (*testkit.PKI, tlsFiles) {
	t.Helper()
	p := testkit.TestPKI(t)
	var f tlsFiles
	f.ca = p.CAFile(t)
	f.cert, f.key = testkit.WriteFiles(t, p.Server)
	f.client, f.clikey = testkit.WriteFiles(t, p.Client)
	f.rogue, f.roguekey = testkit.WriteFiles(t, p.Rogue)
	return p, f
}

// startTLSDaemon serves TLS with f's server certificate on a loopback
// port, metrics on, and args added.
func startTLSDaemon(t *testing.T, f tlsFiles, args ...string) *daemon {
	t.Helper()
	return startDaemon(t, with([]string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--tls-cert", f.cert, "--tls-key", f.key}, args...)...)
}

// ---------------------------------------------------------------------------
// Go's crypto/tls.

// dialTLSErr connects a crypto/tls client and completes its handshake.
func dialTLSErr(d *daemon, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ioWait)
	defer cancel()
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: ioWait}, Config: cfg}
	c, err := dialer.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// dialTLS is dialTLSErr failing t; the connection is closed when the test
// ends.
func dialTLS(t *testing.T, d *daemon, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := dialTLSErr(d, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", d.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tlsRefusedErr tells how a crypto/tls client learnt that the server
// refused it: at the handshake, or (TLS 1.3, where the client's Finished
// ends its side of the handshake before the server has checked its
// certificate) at its first read. nil means it was served.
func tlsRefusedErr(d *daemon, cfg *tls.Config) error {
	c, err := dialTLSErr(d, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := testkit.WriteFrame(c, []byte("refused?"), ioWait); err != nil {
		return err
	}
	_, err = testkit.ReadFrame(c, ioWait, testkit.MaxFrame)
	return err
}

// ---------------------------------------------------------------------------
// Running a program to its end with stdin held open.

type toolResult struct {
	code    int
	stdout  []byte
	stderr  string
	elapsed time.Duration
}

// runTool runs bin with args, stdin holding the given bytes and kept open
// until the program exits or, if closeAfter > 0, until it has written
// that many bytes to stdout; it waits up to timeout for the exit. stdin
// must fit in a pipe's buffer.
func runTool(t *testing.T, timeout time.Duration, stdin []byte, closeAfter int, bin string, args ...string) toolResult {
	t.Helper()
	if len(stdin) > 60<<10 {
		t.Fatalf("runTool: %d bytes of stdin do not fit a pipe", len(stdin))
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var closeOnce sync.Once
	closeStdin := func() { closeOnce.Do(func() { pw.Close() }) }
	defer closeStdin()
	if _, err := pw.Write(stdin); err != nil {
		pr.Close()
		t.Fatal(err)
	}
	stdout := &watchedBuffer{want: closeAfter, reached: make(chan struct{})}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Start()
	pr.Close()
	if err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var reached <-chan struct{}
	if closeAfter > 0 {
		reached = stdout.reached
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for waiting := true; waiting; {
		select {
		case <-reached:
			closeStdin()
			reached = nil
		case <-done:
			waiting = false
		case <-timer.C:
			cmd.Process.Kill()
			<-done
			t.Fatalf("%s %s did not exit within %v\nstdout: %s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), timeout,
				testkit.Preview(stdout.bytes()), stderr.String())
		}
	}
	return toolResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.bytes(), stderr: stderr.String(), elapsed: time.Since(start)}
}

// watchedBuffer collects a program's output and closes reached once it
// holds want bytes.
type watchedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	want    int
	reached chan struct{}
}

func (w *watchedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.buf.Len()
	w.buf.Write(p)
	if w.want > 0 && before < w.want && w.buf.Len() >= w.want {
		close(w.reached)
	}
	return len(p), nil
}

func (w *watchedBuffer) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// ---------------------------------------------------------------------------
// openssl s_client.

// sClientResult is one s_client run: what it printed, and the handshake
// as its -trace decoded it.
type sClientResult struct {
	toolResult
	trace string
}

// sClient runs `openssl s_client` against d with args added (-tls1_2,
// -alpn, -cert, ...). It sends stdin once connected and, once stdout holds
// closeAfter bytes, ends stdin, on which s_client sends close_notify and
// exits 0 ("DONE"); with closeAfter 0 stdin stays open, and s_client ends
// when the server refuses or closes it. stdout holds only what the server
// sent: -brief prints the connection's summary to stderr ("Protocol
// version: TLSv1.3", "Verification: OK", ...), -nocommands keeps a 'Q' or
// 'R' in binary input from being taken as a command, and -trace writes the
// decoded handshake messages to a file, the only place the negotiated
// ALPN protocol shows with -brief.
func sClient(t *testing.T, d *daemon, f tlsFiles, stdin []byte, closeAfter int, args ...string) sClientResult {
	t.Helper()
	bin := testkit.RequireTool(t, "openssl", "openssl")
	trace := filepath.Join(t.TempDir(), "trace.txt")
	argv := append([]string{"s_client", "-connect", d.addr, "-servername", "localhost", "-CAfile", f.ca,
		"-brief", "-nocommands", "-trace", "-msgfile", trace}, args...)
	r := sClientResult{toolResult: runTool(t, toolWait, stdin, closeAfter, bin, argv...)}
	b, err := os.ReadFile(trace)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	r.trace = string(b)
	return r
}

// summary is a line of -brief's summary, such as "Protocol version".
func (r sClientResult) summary(key string) string {
	for l := range strings.SplitSeq(r.stderr, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// serverALPN is the protocol the server selected, as the trace shows it in
// the server's ServerHello (TLS 1.2) or EncryptedExtensions (TLS 1.3): the
// line after the ALPN extension's, in a record s_client received. "" if
// the server selected none.
func (r sClientResult) serverALPN() string {
	received := false
	lines := strings.Split(r.trace, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "Received Record"):
			received = true
		case strings.HasPrefix(l, "Sent Record"):
			received = false
		case received && strings.Contains(l, "extension_type=application_layer_protocol_negotiation(16)") && i+1 < len(lines):
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}

func (r sClientResult) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout (%d bytes): %s\nstderr:\n%s", r.code, r.elapsed.Round(time.Millisecond),
		len(r.stdout), testkit.Preview(r.stdout), r.stderr)
}

// ---------------------------------------------------------------------------
// Python's ssl module.

// pyClientScript is a TLS client on Python's ssl module. Its one argument
// is a JSON object: host, port, ca, version ("TLSv1_2" or "TLSv1_3", used
// as both minimum and maximum), alpn (a list, optional), cert and key
// (optional), rcvbuf (optional, set before connecting), streams (files
// each sent whole, then read back whole into FILE.echo), and drain
// (optional: a file sent whole; then the client waits for a line on stdin
// — the test has sent SIGTERM — and reads until recv returns b” into
// FILE.echo). suppress_ragged_eofs=False: recv returns b” only for a
// close_notify; a TCP close without one raises SSLEOFError. It prints one
// JSON line per event: open (version, alpn, cipher), echoed, sent, eof,
// or error (type, message, reason), after which it exits 1.
const pyClientScript = `
import json, select, socket, ssl, sys, time

cfg = json.loads(sys.argv[1])

def emit(event, **kw):
    kw["event"] = event
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(min(1 << 16, n - len(buf)))
        if not b:
            raise EOFError("the stream ended after %d of %d bytes" % (len(buf), n))
        buf += b
    return bytes(buf)

try:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cfg["ca"])
    version = getattr(ssl.TLSVersion, cfg["version"])
    ctx.minimum_version = version
    ctx.maximum_version = version
    if cfg.get("alpn"):
        ctx.set_alpn_protocols(cfg["alpn"])
    if cfg.get("cert"):
        ctx.load_cert_chain(cfg["cert"], cfg["key"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(cfg["timeout"])
    if cfg.get("rcvbuf"):
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg["rcvbuf"])
    raw.connect((cfg["host"], cfg["port"]))
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    emit("open", version=s.version(), alpn=s.selected_alpn_protocol(), cipher=s.cipher()[0])
    for i, path in enumerate(cfg.get("streams") or []):
        with open(path, "rb") as f:
            data = f.read()
        s.sendall(data)
        got = recv_exactly(s, len(data))
        with open(path + ".echo", "wb") as f:
            f.write(got)
        emit("echoed", stream=i, bytes=len(got))
    if cfg.get("drain"):
        with open(cfg["drain"], "rb") as f:
            data = f.read()
        # Send without reading, until all is sent or the server stops
        # taking it (its replies back up behind this client's receive
        # buffer, and it stops reading).
        s.setblocking(False)
        off = 0
        while off < len(data):
            try:
                off += s.send(data[off:off + (1 << 16)])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                if not select.select([], [s], [], 0.5)[1]:
                    break
        emit("sent", bytes=off)
        sys.stdin.readline()
        # Read everything, sending the rest as the server takes it, until
        # recv returns b''.
        got = bytearray()
        deadline = time.monotonic() + cfg["timeout"]
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("%d bytes back, %d of %d sent, and no end yet" % (len(got), off, len(data)))
            progress = False
            if off < len(data):
                try:
                    off += s.send(data[off:off + (1 << 16)])
                    progress = True
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
            try:
                b = s.recv(1 << 16)
                if not b:
                    break
                got += b
                progress = True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            if not progress:
                select.select([s], [s] if off < len(data) else [], [], 0.1)
        with open(cfg["drain"] + ".echo", "wb") as f:
            f.write(got)
        emit("eof", bytes=len(got), sent=off)
    s.close()
except (ssl.SSLError, OSError, EOFError, TimeoutError) as e:
    emit("error", type=type(e).__name__, message=str(e), reason=getattr(e, "reason", None))
    sys.exit(1)
`

// pyEvent is one line the Python client printed.
type pyEvent map[string]any

func (e pyEvent) str(k string) string { s, _ := e[k].(string); return s }

// pyClient is a running Python client.
type pyClient struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *logBuffer
	events chan pyEvent
	exited chan struct{}
}

// pyConfig is the client's configuration; host, port, ca and timeout are
// filled in by startPython.
type pyConfig struct {
	Version string   `json:"version"`
	ALPN    []string `json:"alpn,omitempty"`
	Cert    string   `json:"cert,omitempty"`
	Key     string   `json:"key,omitempty"`
	RcvBuf  int      `json:"rcvbuf,omitempty"`
	Streams []string `json:"streams,omitempty"`
	Drain   string   `json:"drain,omitempty"`

	Host    string  `json:"host"`
	Port    int     `json:"port"`
	CA      string  `json:"ca"`
	Timeout float64 `json:"timeout"`
}

// startPython runs the client against d; it is killed and reaped when the
// test ends.
func startPython(t *testing.T, d *daemon, f tlsFiles, cfg pyConfig) *pyClient {
	t.Helper()
	py := testkit.RequireTool(t, "python3", "python3")
	script := filepath.Join(t.TempDir(), "tlsclient.py")
	if err := os.WriteFile(script, []byte(pyClientScript), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.CA, cfg.Timeout = host, f.ca, ioWait.Seconds()
	fmt.Sscan(port, &cfg.Port)
	arg, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &pyClient{t: t, stderr: newLogBuffer(), events: make(chan pyEvent, 16), exited: make(chan struct{})}
	p.cmd = exec.Command(py, script, string(arg))
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting python3: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e pyEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = pyEvent{"event": "garbage", "line": sc.Text()}
			}
			p.events <- e
		}
		close(p.events)
	}()
	reapWhenDone(t, "python", p.cmd, p.exited, p.stderr)
	return p
}

// next returns the client's next event, failing the test if it prints
// none within toolWait.
func (p *pyClient) next() pyEvent {
	p.t.Helper()
	select {
	case e, ok := <-p.events:
		if !ok {
			<-p.exited
			p.t.Fatalf("python exited (%v) without another event; stderr:\n%s", p.cmd.ProcessState, p.stderr.String())
		}
		return e
	case <-time.After(toolWait):
		p.t.Fatalf("no event from python within %v; stderr:\n%s", toolWait, p.stderr.String())
	}
	return nil
}

// expect returns the next event, which must be want.
func (p *pyClient) expect(want string) pyEvent {
	p.t.Helper()
	e := p.next()
	if e.str("event") != want {
		p.t.Fatalf("python: got %v, want a %q event", e, want)
	}
	return e
}

// exit waits for the client to exit and returns its status.
func (p *pyClient) exit() int {
	p.t.Helper()
	for range p.events {
	}
	select {
	case <-p.exited:
	case <-time.After(toolWait):
		p.t.Fatalf("python did not exit within %v", toolWait)
	}
	return p.cmd.ProcessState.ExitCode()
}

// writeStream writes frames of the given payloads into a file of the
// test's temporary directory and returns its path and content.
func writeStream(t *testing.T, name string, payloads ...[]byte) (string, []byte) {
	t.Helper()
	var stream []byte
	for _, p := range payloads {
		stream = testkit.AppendFrame(stream, p)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, stream
}

// requireEcho checks that path.echo, what the client read back, is
// exactly want.
func requireEcho(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path + ".echo")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: read back %d bytes %s, sent %d bytes %s", filepath.Base(path), len(got), testkit.Preview(got), len(want), testkit.Preview(want))
	}
}
