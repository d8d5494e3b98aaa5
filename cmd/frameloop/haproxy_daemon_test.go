//go:build unix

package main

// End to end behind a real HAProxy, running the shipped deploy/haproxy.cfg
// itself: the file takes its host-specific values from FRAMELOOP_*
// environment variables with defaults, and the test sets only those
// (addresses, stats socket, log target, check timing). Two daemons with
// --proxy-protocol serve behind it: clients echo through HAProxy, both
// daemons get clients, each sees the client's own address, the health
// check (PROXY v2 LOCAL + a ping frame) passes, and after SIGTERM one
// daemon drains and exits 0, is marked DOWN, and the other serves every
// new client.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

const (
	hapConfig = "../../deploy/haproxy.cfg"
	// hapClientIP is the address clients dial from, so that a daemon's log
	// tells them from HAProxy's own connections (health checks), which
	// come from 127.0.0.1.
	hapClientIP = "127.0.0.2"
	// hapReady bounds HAProxy's start and each wait for a server state.
	hapReady = 15 * time.Second
)

// haproxyBinary finds haproxy. Without it the test is skipped, except in
// CI, which installs it (.ci/run): there a missing haproxy is a failure.
func haproxyBinary(t *testing.T) string {
	t.Helper()
	return testkit.RequireTool(t, "haproxy", "haproxy")
}

// hapEnvVar matches the variables deploy/haproxy.cfg takes: "${NAME-default}".
var hapEnvVar = regexp.MustCompile(`\$\{(FRAMELOOP_[A-Z0-9_]+)-`)

// haproxy is a running `haproxy -db`, killed and reaped when the test ends.
type haproxy struct {
	cmd      *exec.Cmd
	logs     *logBuffer
	exited   chan struct{}
	frontend string // host:port clients connect to
	stats    string // the stats socket's path
}

// startHAProxy runs the config with env (FRAMELOOP_* variables; the
// frontend's address and the stats socket are chosen here) and waits until
// its stats socket answers. The frontend's port is found by binding :0 and
// closing; if HAProxy then cannot bind it (taken in between), it retries.
func startHAProxy(t *testing.T, bin, cfg string, env map[string]string) *haproxy {
	t.Helper()
	dir := shortTempDir(t)
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		frontend := ln.Addr().String()
		ln.Close()
		h := &haproxy{logs: newLogBuffer(), exited: make(chan struct{}), frontend: frontend,
			stats: filepath.Join(dir, fmt.Sprintf("hap%d.sock", attempt))}
		vars := map[string]string{"FRAMELOOP_FRONTEND": frontend, "FRAMELOOP_STATS_SOCKET": h.stats}
		for k, v := range env {
			vars[k] = v
		}
		h.cmd = exec.Command(bin, "-f", cfg, "-db")
		h.cmd.Env = hapEnviron(vars)
		h.cmd.Stdout, h.cmd.Stderr = h.logs, h.logs
		h.cmd.WaitDelay = 5 * time.Second
		if err := h.cmd.Start(); err != nil {
			t.Fatalf("starting haproxy: %v", err)
		}
		reapWhenDone(t, "haproxy", h.cmd, h.exited, h.logs)
		deadline := time.Now().Add(hapReady)
		for {
			if _, err := h.showStat(); err == nil {
				return h
			}
			select {
			case <-h.exited:
			case <-time.After(20 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				t.Fatalf("haproxy's stats socket did not answer within %v", hapReady)
			}
			break
		}
		out := h.logs.String()
		if attempt < 5 && strings.Contains(out, "cannot bind") {
			t.Logf("haproxy could not bind %s (attempt %d), retrying on another port", frontend, attempt)
			continue
		}
		t.Fatalf("haproxy exited at start (%v):\n%s", h.cmd.ProcessState, out)
	}
}

// hapEnviron is this process's environment without any FRAMELOOP_*
// variable, plus vars.
func hapEnviron(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRAMELOOP_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// showStat asks the stats socket for "show stat" and returns one map per
// line, keyed by the CSV header's field names (pxname, svname, status,
// check_status, ...).
func (h *haproxy) showStat() ([]map[string]string, error) {
	c, err := net.DialTimeout("unix", h.stats, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	out, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	lines := splitLines(string(out))
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("unexpected show stat output %q", out)
	}
	names := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	var rows []map[string]string
	for _, l := range lines[1:] {
		row := map[string]string{}
		for i, v := range strings.Split(l, ",") {
			if i < len(names) {
				row[names[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// serverStates is each server of backend "frameloop": status and the last
// check's status, e.g. "UP L7OK", "DOWN L4CON".
func (h *haproxy) serverStates() (map[string]string, error) {
	rows, err := h.showStat()
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	for _, r := range rows {
		if r["pxname"] == "frameloop" && r["svname"] != "FRONTEND" && r["svname"] != "BACKEND" {
			states[r["svname"]] = r["status"] + " " + r["check_status"]
		}
	}
	return states, nil
}

// waitServers waits until every server named in want is in that state; a
// want of "UP" requires a passed check ("UP L7OK"), "DOWN" any failed one.
func (h *haproxy) waitServers(t *testing.T, want map[string]string) {
	t.Helper()
	testkit.EventuallyNil(t, hapReady, pollEvery, func() error {
		got, err := h.serverStates()
		if err != nil {
			return err
		}
		for name, w := range want {
			state := got[name]
			switch w {
			case "UP":
				if state != "UP L7OK" {
					return fmt.Errorf("server %s is %q, want UP after a passed check (all: %v)", name, state, got)
				}
			default:
				if !strings.HasPrefix(state, w+" ") {
					return fmt.Errorf("server %s is %q, want %s (all: %v)", name, state, w, got)
				}
			}
		}
		return nil
	})
}

// hapDial connects to the frontend from hapClientIP, with a small receive
// buffer (set before the handshake) when rcvbuf > 0.
func hapDial(t *testing.T, h *haproxy, rcvbuf int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: ioWait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(hapClientIP)}}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("tcp", h.frontend)
	if err != nil {
		if errors.Is(err, syscall.EADDRNOTAVAIL) && runtime.GOOS != "linux" {
			t.Skipf("cannot dial from %s here (%v): only Linux routes all of 127/8 to loopback", hapClientIP, err)
		}
		t.Fatalf("dial %s from %s: %v", h.frontend, hapClientIP, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// hapPipeline writes all payloads as frames in one stream (from a
// goroutine, so that large ones cannot deadlock) while reading and
// checking each echo in order.
func hapPipeline(c net.Conn, payloads [][]byte) error {
	var stream []byte
	for _, p := range payloads {
		stream = testkit.AppendFrame(stream, p)
	}
	werr := make(chan error, 1)
	go func() { werr <- testkit.WriteAll(c, stream, ioWait) }()
	var rerr error
	// One deadline for all the replies: ExpectFrameErr's timeout of 0
	// keeps it.
	c.SetReadDeadline(time.Now().Add(ioWait))
	for i, p := range payloads {
		if err := testkit.ExpectFrameErr(c, p, 0); err != nil {
			rerr = fmt.Errorf("reply %d of %d: %w", i+1, len(payloads), err)
			c.SetWriteDeadline(time.Now())
			break
		}
	}
	if err := <-werr; err != nil && rerr == nil {
		rerr = fmt.Errorf("writing: %w", err)
	}
	return rerr
}

func hapPayloads(seed int) [][]byte {
	return [][]byte{[]byte("via haproxy " + strconv.Itoa(seed)), {}, testkit.Pattern(1000, uint64(seed)), testkit.Pattern(100<<10, uint64(seed+1)), []byte("end")}
}

// openedFrom counts d's "connection opened" lines whose remote is addr.
func openedFrom(d *daemon, addr string) int {
	return d.countLogs(func(r logRecord) bool { return r["msg"] == "connection opened" && r["remote"] == addr })
}

func metric(t *testing.T, d *daemon, name string) float64 {
	t.Helper()
	m, err := d.scrapeMetrics()
	if err != nil {
		t.Fatalf("scraping %s: %v", d.metricsURL, err)
	}
	v, ok := m[name]
	if !ok {
		t.Fatalf("no %s in the metrics", name)
	}
	return v
}

// hapTimeouts reads the "timeout NAME DURATION" lines of the config.
func hapTimeouts(t *testing.T, cfg string) map[string]time.Duration {
	t.Helper()
	out := map[string]time.Duration{}
	for _, l := range strings.Split(cfg, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "timeout" {
			d, err := time.ParseDuration(f[2])
			if err != nil {
				t.Fatalf("config line %q: %v", l, err)
			}
			out[f[1]] = d
		}
	}
	return out
}

func TestHAProxyEndToEnd(t *testing.T) {
	t.Parallel()
	hapEndToEnd(t, hapRecipe{config: hapConfig})
}

// hapRecipe is what differs between the shipped HAProxy files that
// hapEndToEnd runs: the file, the daemons' flags and the file's variables
// beyond those every recipe has, the variables `haproxy -c` needs to
// check the file with its own defaults, and what more to check on each
// daemon once the first clients are served.
type hapRecipe struct {
	config      string
	daemonArgs  []string
	env         map[string]string
	checkEnv    map[string]string
	checkDaemon func(t *testing.T, name string, d *daemon)
}

// hapEndToEnd runs r's file against two daemons: both UP after a passed
// check, clients served round robin with their own address, one daemon
// drained by SIGTERM (a 32 MiB reply delivered whole), marked DOWN, and
// every later client served by the other.
func hapEndToEnd(t *testing.T, r hapRecipe) {
	hapConfig := r.config
	bin := haproxyBinary(t)
	text, err := os.ReadFile(hapConfig)
	if err != nil {
		t.Fatal(err)
	}

	// The shipped file as it is: valid with its own defaults, and HAProxy's
	// inactivity timeouts longer than the daemon's default idle timeout,
	// so that the daemon's timeout is the one that closes a quiet client.
	check := exec.Command(bin, "-c", "-f", hapConfig)
	check.Env = hapEnviron(r.checkEnv)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", hapConfig, err, out)
	}
	timeouts := hapTimeouts(t, string(text))
	for _, name := range []string{"client", "server", "tunnel"} {
		if d := timeouts[name]; d <= 60*time.Second {
			t.Errorf("timeout %s is %v, want more than the daemon's default --idle-timeout (60s)", name, d)
		}
	}

	// Two daemons: loops 1 and 2, both requiring a PROXY header.
	common := []string{"--addr", "127.0.0.1:0", "--proxy-protocol", "--log-level", "debug",
		"--metrics-addr", "127.0.0.1:0", "--max-message", strconv.Itoa(64 << 20), "--shutdown-timeout", "10s"}
	common = append(common, r.daemonArgs...)
	a := startDaemon(t, with(common, "--loops", "1")...)
	b := startDaemon(t, with(common, "--loops", "2")...)

	env := map[string]string{
		"FRAMELOOP_SERVER1":     a.addr,
		"FRAMELOOP_SERVER2":     b.addr,
		"FRAMELOOP_CHECK_INTER": "200ms",
		"FRAMELOOP_CHECK_FALL":  "2",
		"FRAMELOOP_CHECK_RISE":  "1",
		"FRAMELOOP_LOG":         "stderr",
		// Few descriptors: HAProxy refuses to start if it cannot raise its
		// limit to what maxconn needs.
		"FRAMELOOP_MAXCONN": "200",
	}
	for k, v := range r.env {
		env[k] = v
	}
	// Every variable the file takes must be set here (startHAProxy sets the
	// frontend and the stats socket), or a production default (a public
	// port, /run, /dev/log) would leak into the test.
	for _, m := range hapEnvVar.FindAllStringSubmatch(string(text), -1) {
		if _, ok := env[m[1]]; !ok && m[1] != "FRAMELOOP_FRONTEND" && m[1] != "FRAMELOOP_STATS_SOCKET" {
			t.Fatalf("%s uses ${%s-...}, which this test does not set", hapConfig, m[1])
		}
	}
	h := startHAProxy(t, bin, hapConfig, env)
	start := time.Now()
	// fl1 is a, fl2 is b. "UP L7OK": the check's ping came back, so each
	// daemon accepted the check's PROXY header (v2 LOCAL).
	h.waitServers(t, map[string]string{"fl1": "UP", "fl2": "UP"})
	t.Logf("both servers UP after %v", time.Since(start).Round(time.Millisecond))

	// 1. Clients echo through HAProxy, pipelining; round robin spreads them.
	const firstClients = 8
	onA, onB := map[string]*net.TCPConn{}, map[string]*net.TCPConn{}
	for i := range firstClients {
		c := hapDial(t, h, 0)
		if err := hapPipeline(c, hapPayloads(i)); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		// 2 & 3. The daemon that served it logged the client's own address,
		// from the PROXY header: exactly one of them, exactly once.
		addr := c.LocalAddr().String()
		testkit.EventuallyNil(t, ioWait, pollEvery, func() error {
			na, nb := openedFrom(a, addr), openedFrom(b, addr)
			switch {
			case na == 1 && nb == 0:
				onA[addr] = c
			case na == 0 && nb == 1:
				onB[addr] = c
			default:
				return fmt.Errorf("client %s: %d connection-opened lines on a, %d on b; want 1 in all", addr, na, nb)
			}
			return nil
		})
	}
	t.Logf("round robin: %d clients on a, %d on b", len(onA), len(onB))
	if len(onA) == 0 || len(onB) == 0 {
		t.Fatalf("clients on a: %d, on b: %d; round robin should use both", len(onA), len(onB))
	}
	fromClientIP := func(r logRecord) bool {
		return r["msg"] == "connection opened" && strings.HasPrefix(r["remote"], hapClientIP+":")
	}
	fromHAProxy := func(r logRecord) bool {
		return r["msg"] == "connection opened" && strings.HasPrefix(r["remote"], "127.0.0.1:")
	}
	if n := a.countLogs(fromClientIP) + b.countLogs(fromClientIP); n != firstClients {
		t.Errorf("%d connections seen from %s, want the %d clients", n, hapClientIP, firstClients)
	}
	for name, d := range map[string]*daemon{"a": a, "b": b} {
		// Health checks: HAProxy's own connections, LOCAL, so logged with
		// the socket's peer; none was refused for its header.
		if n := d.countLogs(fromHAProxy); n == 0 {
			t.Errorf("daemon %s logged no health check connection from 127.0.0.1", name)
		}
		if v := metric(t, d, `frameloop_connections_closed_total{reason="proxy_header"}`); v != 0 {
			t.Errorf("daemon %s closed %v connections for their PROXY header, want 0", name, v)
		}
		if v := metric(t, d, "frameloop_connections_accepted_total"); v <= 0 {
			t.Errorf("daemon %s accepted %v connections", name, v)
		}
		if r.checkDaemon != nil {
			r.checkDaemon(t, name, d)
		}
	}

	// 4. SIGTERM to a while one of its clients waits for a 32 MiB reply
	// that the buffers on the way cannot hold: a delivers it all, closes,
	// and exits 0.
	// The big client must be on a: round robin alternates, so dial until
	// one lands there (bounded).
	big := hapDial(t, h, 16<<10)
	for i := 0; ; i++ {
		if err := hapPipeline(big, [][]byte{[]byte("which")}); err != nil {
			t.Fatal(err)
		}
		addr := big.LocalAddr().String()
		var onAToo bool
		testkit.EventuallyNil(t, ioWait, pollEvery, func() error {
			na, nb := openedFrom(a, addr), openedFrom(b, addr)
			if na+nb != 1 {
				return fmt.Errorf("client %s: %d lines on a, %d on b", addr, na, nb)
			}
			onAToo = na == 1
			return nil
		})
		if onAToo {
			break
		}
		onB[addr] = big
		if i == 5 {
			t.Fatal("no new client reached a in 6 tries")
		}
		big = hapDial(t, h, 16<<10)
	}
	sentBefore := metric(t, a, "frameloop_bytes_sent_total")
	payload := testkit.Pattern(32<<20, 99)
	werr := make(chan error, 1)
	go func() {
		err := testkit.WriteFrame(big, payload, ioWait)
		werr <- err
	}()
	var hdr [4]byte
	big.SetReadDeadline(time.Now().Add(ioWait))
	if _, err := io.ReadFull(big, hdr[:]); err != nil {
		t.Fatalf("reading the big reply's header: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing the big frame: %v", err)
	}
	// The reply is under way; let what the buffers take settle, then see
	// how much a still holds.
	time.Sleep(300 * time.Millisecond)
	pending := float64(4+len(payload)) - (metric(t, a, "frameloop_bytes_sent_total") - sentBefore)
	t.Logf("a still holds about %.1f MiB of the reply at SIGTERM", pending/(1<<20))
	if pending < 1<<20 {
		t.Errorf("only %.0f bytes of the reply were left to drain: the test does not test draining", pending)
	}
	termAt := time.Now()
	a.signal(syscall.SIGTERM)
	got, err := readFrameAfterHeader(big, hdr, len(payload))
	if err != nil {
		t.Fatalf("the rest of the big reply after SIGTERM: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the big reply differs from the frame sent")
	}
	if _, err := testkit.WaitClosed(big, ioWait); err != nil {
		t.Fatal(err)
	}
	big.Close() // else a lingers until its 2 s limit for this peer to close
	code, ok := a.waitExit(exitWait)
	if !ok {
		t.Fatalf("daemon a did not exit within %v of SIGTERM", exitWait)
	}
	if code != 0 {
		t.Fatalf("daemon a exited with status %d after SIGTERM, want 0", code)
	}
	t.Logf("a drained and exited 0 in %v", time.Since(termAt).Round(time.Millisecond))
	// Its other clients were closed; b's are unaffected.
	for addr, c := range onA {
		if _, err := testkit.WaitClosed(c, ioWait); err != nil {
			t.Errorf("a's client %s: %v", addr, err)
		}
	}
	for addr, c := range onB {
		if err := testkit.EchoErr(c, []byte("b still serves "+addr), ioWait); err != nil {
			t.Errorf("b's client %s after a stopped: %v", addr, err)
		}
	}

	// The health check marks a DOWN (connection refused), b stays UP.
	h.waitServers(t, map[string]string{"fl1": "DOWN", "fl2": "UP"})
	t.Logf("a marked DOWN %v after SIGTERM", time.Since(termAt).Round(time.Millisecond))

	// Every new client now goes to b.
	const laterClients = 20
	acceptedBefore := metric(t, b, "frameloop_connections_accepted_total")
	for i := range laterClients {
		c := hapDial(t, h, 0)
		if err := hapPipeline(c, hapPayloads(100+i)); err != nil {
			t.Fatalf("client %d after a stopped: %v", i, err)
		}
		addr := c.LocalAddr().String()
		testkit.EventuallyNil(t, ioWait, pollEvery, func() error {
			if n := openedFrom(b, addr); n != 1 {
				return fmt.Errorf("client %s: %d connection-opened lines on b, want 1", addr, n)
			}
			return nil
		})
		c.Close()
	}
	if grew := metric(t, b, "frameloop_connections_accepted_total") - acceptedBefore; grew < laterClients {
		t.Errorf("b accepted %v connections for %d new clients", grew, laterClients)
	}
	if n := a.countLogs(fromClientIP); n != len(onA)+1 {
		t.Errorf("a logged %d client connections, want %d: it served clients after it stopped?", n, len(onA)+1)
	}
}

// readFrameAfterHeader reads the payload of a frame whose header hdr was
// already read, checking its length.
func readFrameAfterHeader(c net.Conn, hdr [4]byte, want int) ([]byte, error) {
	n := int(uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16 | uint32(hdr[3])<<24)
	if n != want {
		return nil, fmt.Errorf("reply announces %d bytes, want %d", n, want)
	}
	p := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(ioWait))
	if _, err := io.ReadFull(c, p); err != nil {
		return nil, err
	}
	return p, nil
}
