//go:build unix

package main

// The harness of the daemon tests: the real binary is built once (go build,
// without -race: the race detector applies to this test process), started
// with arguments, awaited until it logs that it listens, and always stopped
// and reaped. Every wait here is bounded.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestMain(m *testing.M) {
	// With Cleanup, goleak leaves the exit to the cleanup function.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeBinary()
		os.Exit(code)
	}))
}

const (
	// startWait bounds how long the daemon may take to log that it listens.
	startWait = 15 * time.Second
	// exitWait bounds how long a process may take to exit when it should.
	exitWait = 15 * time.Second
	// ioWait bounds a client read or write that is expected to succeed:
	// generous, as the machine is shared and the test process runs -race.
	ioWait = 10 * time.Second
	// quiet is how long a client waits to conclude that nothing arrives.
	quiet = 300 * time.Millisecond
	// pollEvery is how often a wait polls the daemon (its logs, its
	// metrics) or HAProxy.
	pollEvery = 20 * time.Millisecond
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// daemonBinary builds the frameloop command once per test process, on
// first use, so that running a single unrelated test costs no build.
func daemonBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "frameloop-daemon-test-")
		if binErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binPath = filepath.Join(binDir, "frameloop")
		cmd := exec.Command(goTool, "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("building the daemon: %v", binErr)
	}
	return binPath
}

func removeBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// ---------------------------------------------------------------------------
// Running the binary to completion.

type runResult struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// stderrLines is stderr split into its non-empty lines.
func (r runResult) stderrLines() []string { return splitLines(r.stderr) }

// runFrameloop runs the binary with args (subcommand included) and waits
// for it to exit, killing it after timeout.
func runFrameloop(t testing.TB, timeout time.Duration, args ...string) runResult {
	t.Helper()
	bin := daemonBinary(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("frameloop %s did not exit within %v; stderr:\n%s", strings.Join(args, " "), timeout, stderr.String())
	}
	r := runResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("frameloop %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func splitLines(s string) []string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// ---------------------------------------------------------------------------
// A running daemon.

type daemon struct {
	t       testing.TB
	cmd     *exec.Cmd
	logs    *logBuffer // stderr
	stdout  *logBuffer
	exited  chan struct{} // closed once the process is reaped
	waitErr error         // set before exited is closed

	network    string // "tcp" or "unix"
	addr       string // host:port or the socket's path
	metricsURL string // http://host:port/metrics with --metrics-addr
}

// startDaemon runs `frameloop serve args...` and waits until it listens.
// It is stopped (killed if need be) and reaped when the test ends.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, nil, nil, args...)
	d.awaitListening()
	return d
}

// launchDaemon starts the daemon, under wrapper (e.g. prlimit) if given,
// with env added to the environment, without waiting for anything.
func launchDaemon(t testing.TB, wrapper, env []string, args ...string) *daemon {
	t.Helper()
	bin := daemonBinary(t)
	argv := append(append(append([]string{}, wrapper...), bin, "serve"), args...)
	d := &daemon{t: t, logs: newLogBuffer(), stdout: newLogBuffer(), exited: make(chan struct{})}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	if env != nil {
		d.cmd.Env = append(os.Environ(), env...)
	}
	d.cmd.Stderr = d.logs
	d.cmd.Stdout = d.stdout
	d.cmd.WaitDelay = 5 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting the daemon: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
		d.logs.notify()
	}()
	t.Cleanup(d.cleanup)
	return d
}

func (d *daemon) cleanup() {
	if !d.hasExited() {
		d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(exitWait):
			d.t.Errorf("daemon pid %d not reaped %v after SIGKILL", d.cmd.Process.Pid, exitWait)
		}
	}
	if d.t.Failed() {
		d.t.Logf("daemon %v stderr:\n%s", d.cmd.Args[1:], d.logs.String())
		if out := d.stdout.String(); out != "" {
			d.t.Logf("daemon stdout:\n%s", out)
		}
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) hasExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// awaitListening waits for the "listening" line (and the "serving metrics"
// line if --metrics-addr was given) and records the bound addresses.
func (d *daemon) awaitListening() {
	d.t.Helper()
	rec, ok := d.waitLog(startWait, func(r logRecord) bool { return r["msg"] == "listening" })
	if !ok {
		d.t.Fatalf("the daemon did not log msg=listening within %v (exited: %v)", startWait, d.hasExited())
	}
	addr := rec["addr"]
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		d.network, d.addr = "unix", path
	} else {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			d.t.Fatalf("listening line has no usable addr: %q", rec["addr"])
		}
		d.network, d.addr = "tcp", addr
	}
	if !slices.Contains(d.cmd.Args, "--metrics-addr") && !hasPrefixArg(d.cmd.Args, "--metrics-addr=") {
		return
	}
	rec, ok = d.waitLog(startWait, func(r logRecord) bool { return r["msg"] == "serving metrics" })
	if !ok {
		d.t.Fatalf("the daemon did not log msg=\"serving metrics\" within %v", startWait)
	}
	d.metricsURL = rec["addr"]
}

func hasPrefixArg(s []string, p string) bool {
	for _, x := range s {
		if strings.HasPrefix(x, p) {
			return true
		}
	}
	return false
}

// signal sends sig to the daemon.
func (d *daemon) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signalling the daemon: %v", err)
	}
}

// waitExit waits up to timeout for the daemon to exit and returns its exit
// status (-1 if a signal killed it); ok is false if it is still running.
func (d *daemon) waitExit(timeout time.Duration) (code int, ok bool) {
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// stop sends SIGTERM and requires exit status 0 within exitWait.
func (d *daemon) stop() {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	code, ok := d.waitExit(exitWait)
	if !ok {
		d.t.Fatalf("the daemon did not exit within %v of SIGTERM", exitWait)
	}
	if code != 0 {
		d.t.Fatalf("exit status after SIGTERM = %d, want 0", code)
	}
}

// dial connects to the daemon; the connection is closed when the test ends.
func (d *daemon) dial(t testing.TB) net.Conn {
	t.Helper()
	return testkit.Dial(t, d.network, d.addr, ioWait)
}

// waitLog waits for a log record that match accepts, looking at every line
// logged so far and then at new ones. It gives up early once the daemon
// has exited and no line matched.
func (d *daemon) waitLog(timeout time.Duration, match func(logRecord) bool) (logRecord, bool) {
	deadline := time.Now().Add(timeout)
	for {
		ch := d.logs.changed()
		for _, l := range d.logs.lines() {
			if r := parseLogLine(l); match(r) {
				return r, true
			}
		}
		if d.hasExited() {
			// Wait's copy of the output is complete once exited is closed.
			for _, l := range d.logs.lines() {
				if r := parseLogLine(l); match(r) {
					return r, true
				}
			}
			return nil, false
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, false
		}
		select {
		case <-ch:
		case <-time.After(left):
		}
	}
}

// countLogs counts the lines logged so far that match.
func (d *daemon) countLogs(match func(logRecord) bool) int {
	n := 0
	for _, l := range d.logs.lines() {
		if match(parseLogLine(l)) {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------------------
// Log capture and parsing.

// logBuffer collects a process's output and lets waiters know of new lines.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	wake chan struct{}
}

func newLogBuffer() *logBuffer { return &logBuffer{wake: make(chan struct{})} }

// reapWhenDone watches a started child process: exited closes when it
// ends, and when the test ends it is killed and must be reaped within
// exitWait; if the test failed, its output is logged.
func reapWhenDone(t testing.TB, name string, cmd *exec.Cmd, exited chan struct{}, output *logBuffer) {
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(exitWait):
			t.Errorf("%s pid %d not reaped %v after SIGKILL", name, cmd.Process.Pid, exitWait)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, output.String())
		}
	})
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf.Write(p)
	b.mu.Unlock()
	b.notify()
	return len(p), nil
}

func (b *logBuffer) notify() {
	b.mu.Lock()
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// changed returns a channel closed at the next write.
func (b *logBuffer) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wake
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the complete lines written so far.
func (b *logBuffer) lines() []string {
	s := b.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i+1]
	} else {
		s = ""
	}
	return splitLines(s)
}

// logRecord is one log line's attributes, values as strings.
type logRecord map[string]string

// parseLogLine parses a log/slog line in the text (key=value, values
// quoted as Go strings when needed) or JSON format. A line that is neither
// yields the attributes parsed before the problem.
func parseLogLine(line string) logRecord {
	r := logRecord{}
	if strings.HasPrefix(line, "{") {
		var raw map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if dec.Decode(&raw) != nil {
			return r
		}
		for k, v := range raw {
			r[k] = fmt.Sprint(v)
		}
		return r
	}
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return r
		}
		key := s[:eq]
		s = s[eq+1:]
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return r
			}
			r[key], _ = strconv.Unquote(q)
			s = s[len(q):]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		r[key] = s[:end]
		s = s[end:]
	}
}

// msgIs matches records by message.
func msgIs(msg string) func(logRecord) bool {
	return func(r logRecord) bool { return r["msg"] == msg }
}

// ---------------------------------------------------------------------------
// The configuration matrix.

// forEachDaemonConfig runs fn once per backend × {--loops 1, --loops 2}, as
// parallel subtests named like "epoll/loops=2". args holds the cell's
// --backend and --loops flags; fn adds the rest.
func forEachDaemonConfig(t *testing.T, fn func(t *testing.T, args []string)) {
	t.Helper()
	for _, backend := range poller.Backends() {
		for _, loops := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) {
				t.Parallel()
				fn(t, []string{"--backend", backend, "--loops", strconv.Itoa(loops)})
			})
		}
	}
}

// with returns base followed by more, without aliasing base.
func with(base []string, more ...string) []string {
	return append(append([]string{}, base...), more...)
}

// ---------------------------------------------------------------------------
// Clients and the rest. The frame format, reads, writes, waits and
// polling are internal/testkit's, shared with the other packages' tests.

// shortTempDir is a fresh directory with a short path, for Unix sockets
// (sun_path holds about 100 bytes; t.TempDir's names can be longer).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dialSmallReceiveBuffer connects with a 16 KiB receive buffer set before
// the handshake, so that a client that does not read stops the daemon's
// output quickly (loopback autotuning would otherwise take megabytes).
func (d *daemon) dialSmallReceiveBuffer(t testing.TB) net.Conn {
	t.Helper()
	dialer := net.Dialer{Timeout: ioWait, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := dialer.Dial(d.network, d.addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", d.network, d.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// floodUntilBlocked writes frames of payload bytes to c from a goroutine until a write
// makes no progress for 300 ms (the daemon stopped reading and every
// buffer on the way is full), and reports on the returned channel: nil
// once blocked, or the error that ended the writes. It stops writing at
// that point. Bounded by limit.
func floodUntilBlocked(c net.Conn, payload int, limit time.Duration) <-chan error {
	res := make(chan error, 1)
	go func() {
		chunk := make([]byte, 0, 64<<10)
		for len(chunk)+testkit.HeaderSize+payload <= cap(chunk) {
			chunk = testkit.AppendFrame(chunk, testkit.Pattern(payload, 1))
		}
		end := time.Now().Add(limit)
		for time.Now().Before(end) {
			err := testkit.WriteAll(c, chunk, 300*time.Millisecond)
			if testkit.IsTimeout(err) {
				res <- nil
				return
			}
			if err != nil {
				res <- err
				return
			}
		}
		res <- fmt.Errorf("writes still progressing after %v", limit)
	}()
	return res
}

// scrapeMetrics fetches the daemon's /metrics and returns every sample by
// its name and labels as exposed, e.g.
// frameloop_connections_closed_total{reason="oversize"}.
func (d *daemon) scrapeMetrics() (map[string]float64, error) {
	if d.metricsURL == "" {
		return nil, errors.New("the daemon serves no metrics")
	}
	// No keep-alive: no transport goroutine outlives the scrape.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get(d.metricsURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", d.metricsURL, resp.Status)
	}
	samples := map[string]float64{}
	for _, line := range splitLines(string(body)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples, nil
}

// concurrently runs the named checks at the same time and reports each
// one's error; it returns when all have returned.
func concurrently(t testing.TB, checks map[string]func() error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs = map[string]error{}
	)
	for name, check := range checks {
		wg.Go(func() {
			if err := check(); err != nil {
				mu.Lock()
				errs[name] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for name, err := range errs {
		t.Errorf("%s: %v", name, err)
	}
}
