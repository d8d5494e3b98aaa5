package frameloop_test

// Logs: the warnings for bad input (an oversize frame, a bad PROXY header)
// are rate limited, and report how many were suppressed; at debug level
// each connection gets one "connection opened" and one "connection closed"
// line, with its remote address and the reason.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// ---- a capturing slog handler ----

// logCapture collects log records; safe for concurrent use.
type logCapture struct {
	level slog.Level
	mu    sync.Mutex
	recs  []logRec
}

type logRec struct {
	time  time.Time
	level slog.Level
	msg   string
	attrs map[string]string // including the logger's With attributes
}

func newLogCapture(level slog.Level) *logCapture { return &logCapture{level: level} }

func (lc *logCapture) logger() *slog.Logger { return slog.New(&captureHandler{lc: lc}) }

// records returns the records captured so far.
func (lc *logCapture) records() []logRec {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return append([]logRec(nil), lc.recs...)
}

// matching returns the captured records with this level and message.
func (lc *logCapture) matching(level slog.Level, msg string) []logRec {
	var out []logRec
	for _, r := range lc.records() {
		if r.level == level && r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

type captureHandler struct {
	lc     *logCapture
	attrs  []slog.Attr
	prefix string // group prefix, "g." (unused by the server, kept correct)
}

func (h *captureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.lc.level }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{time: r.Time, level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.Resolve().String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[h.prefix+a.Key] = a.Value.Resolve().String()
		return true
	})
	h.lc.mu.Lock()
	h.lc.recs = append(h.lc.recs, rec)
	h.lc.mu.Unlock()
	return nil
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &captureHandler{lc: h.lc, prefix: h.prefix, attrs: append([]slog.Attr(nil), h.attrs...)}
	for _, a := range as {
		n.attrs = append(n.attrs, slog.Attr{Key: h.prefix + a.Key, Value: a.Value})
	}
	return n
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &captureHandler{lc: h.lc, attrs: h.attrs, prefix: h.prefix + name + "."}
}

// ---- rate-limited warnings ----

const (
	msgOversize = "closing connection: frame larger than max-message"
	msgBadProxy = "closing connection: bad PROXY header"
	// warnEvery is the period of the warnings' rate limit (loop.go).
	warnEvery = 10 * time.Second
)

// logBadClient connects, sends input and waits until the server closes
// the connection.
func logBadClient(addr string, input []byte) error {
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := testkit.WriteAll(c, input, ioTimeout); err != nil {
		return err
	}
	return testkit.ExpectClosedErr(c, ioTimeout)
}

func TestLogWarningsRateLimited(t *testing.T) {
	const perKind = 500
	// Each kind of bad client: the warning it causes and its input.
	kinds := []struct {
		msg   string
		input []byte
	}{
		{msgOversize, append(ppV2(0, 0, nil), testkit.Header(1000)...)},
		{msgBadProxy, []byte("GET / HTTP/1.0\r\n\r\n")},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		lc := newLogCapture(slog.LevelInfo)
		cfg.Logger = lc.logger()
		cfg.ProxyProtocol = true
		cfg.MaxMessage = 100
		ts := startServer(t, nil, cfg)

		// Round 1: 500 clients of each kind, 16 at a time.
		start := time.Now()
		const workers = 16
		err := runGoroutines(workers, func(w int) error {
			for i := w; i < perKind*len(kinds); i += workers {
				if err := logBadClient(ts.addr, kinds[i%len(kinds)].input); err != nil {
					return fmt.Errorf("client %d: %w", i, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ts.waitStats(t, ioTimeout, "every bad client closed", func(st frameloop.Stats) bool {
			return st.ClosedBy(frameloop.ReasonOversize) == perKind && st.ClosedBy(frameloop.ReasonProxyHeader) == perKind
		})
		elapsed := time.Since(start)
		round1 := len(lc.records())

		// One line per loop and period at most; the first one of a loop
		// has suppressed nothing yet.
		first := map[string]time.Time{} // earliest warning of each kind
		for _, k := range kinds {
			lines := lc.matching(slog.LevelWarn, k.msg)
			t.Logf("%q: %d lines for %d clients in %v", k.msg, len(lines), perKind, elapsed.Round(time.Millisecond))
			if len(lines) == 0 {
				t.Fatalf("no %q warning for %d such clients", k.msg, perKind)
			}
			if elapsed < warnEvery-time.Second && (len(lines) > cfg.Loops || len(lines) > 3) {
				t.Errorf("%d %q warnings within %v, want at most one per loop (%d)", len(lines), k.msg, elapsed.Round(time.Millisecond), cfg.Loops)
			}
			first[k.msg] = lines[0].time
			for _, l := range lines {
				if l.attrs["suppressed"] != "0" || l.attrs["remote"] == "" {
					t.Errorf("first warning of its loop: suppressed=%q remote=%q, want 0 and the client", l.attrs["suppressed"], l.attrs["remote"])
				}
			}
		}
		if testing.Short() {
			return
		}

		// Round 2, once the period has passed: the next warning of each
		// loop reports how many it suppressed. Over the loops, that is
		// every client of round 1 but those that were logged.
		latest := first[msgOversize]
		if first[msgBadProxy].After(latest) {
			latest = first[msgBadProxy]
		}
		time.Sleep(time.Until(latest.Add(warnEvery + 200*time.Millisecond)))
		for _, k := range kinds {
			round1Lines := len(lc.matching(slog.LevelWarn, k.msg))
			loopsToReport := map[string]bool{}
			for _, l := range lc.matching(slog.LevelWarn, k.msg) {
				loopsToReport[l.attrs["loop"]] = true
			}
			reported := map[string]int{} // loop -> suppressed, from its first round-2 line
			for i := 0; len(reported) < len(loopsToReport); i++ {
				if i == 50 {
					t.Fatalf("%q: after %d more clients, only loops %v reported; want %v", k.msg, 8*i, reported, loopsToReport)
				}
				// A few at a time, so that handoff spreads them over the loops.
				if err := runGoroutines(8, func(int) error { return logBadClient(ts.addr, k.input) }); err != nil {
					t.Fatal(err)
				}
				// The warning is logged before the connection closes.
				for _, r := range lc.records()[round1:] {
					if r.level != slog.LevelWarn || r.msg != k.msg {
						continue
					}
					if _, ok := reported[r.attrs["loop"]]; ok {
						continue
					}
					n, err := strconv.Atoi(r.attrs["suppressed"])
					if err != nil {
						t.Fatalf("%q: suppressed=%q: %v", k.msg, r.attrs["suppressed"], err)
					}
					reported[r.attrs["loop"]] = n
				}
			}
			total := 0
			for _, n := range reported {
				total += n
			}
			if want := perKind - round1Lines; total != want {
				t.Errorf("%q: the later lines report %d suppressed (%v by loop), want %d (%d clients, %d logged)",
					k.msg, total, reported, want, perKind, round1Lines)
			}
		}
	})
}

// ---- one debug line per connection event ----

func TestLogDebugLinePerConnection(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		lc := newLogCapture(slog.LevelDebug)
		cfg.Logger = lc.logger()
		cfg.ProxyProtocol = true
		cfg.MaxMessage = 100
		cfg.IdleTimeout = time.Second
		ts := startServer(t, nil, cfg)
		claimed := netip.MustParseAddrPort("192.0.2.9:41000")
		dst := netip.MustParseAddrPort("198.51.100.1:443")

		type client struct {
			name   string
			conn   *net.TCPConn
			remote string // what the lines must say
			opened bool   // a "connection opened" line is due
			reason string
		}
		var clients []*client
		add := func(name string, opened bool, reason string, remote string) *client {
			c := &client{name: name, conn: testkit.DialTCP(t, ts.addr, ioTimeout), opened: opened, reason: reason, remote: remote}
			if c.remote == "" {
				c.remote = c.conn.LocalAddr().String()
			}
			clients = append(clients, c)
			return c
		}

		// Proxied, then closed by the client: its lines name the address
		// from the header, not the socket's.
		proxied := add("proxied", true, "peer_closed", claimed.String())
		if err := testkit.WriteAll(proxied.conn, ppV2Proxy(claimed, dst), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.Echo(t, proxied.conn, []byte("hello"), ioTimeout)
		proxied.conn.Close()

		local := add("LOCAL, then oversize", true, "oversize", "")
		if err := testkit.WriteAll(local.conn, append(ppV2(0, 0, nil), testkit.Header(101)...), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectClosed(t, local.conn, ioTimeout)
		local.conn.Close()

		bad := add("bad header", false, "proxy_header", "")
		if err := testkit.WriteFrame(bad.conn, []byte("no header"), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectClosed(t, bad.conn, ioTimeout)
		bad.conn.Close()

		reset := add("reset", true, "reset", "")
		if err := testkit.WriteAll(reset.conn, []byte("PROXY UNKNOWN\r\n"), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.Echo(t, reset.conn, []byte("then a reset"), ioTimeout)
		if err := resetClose(reset.conn); err != nil {
			t.Fatal(err)
		}

		idle := add("idle", false, "idle_timeout", "")
		testkit.ExpectClosed(t, idle.conn, ioTimeout)
		idle.conn.Close()

		kept := add("open at shutdown", true, "shutdown", "")
		if err := testkit.WriteAll(kept.conn, ppV2(0, 0, nil), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.Echo(t, kept.conn, []byte("kept"), ioTimeout)

		ctx, cancel := context.WithTimeout(context.Background(), serveWait)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectClosed(t, kept.conn, ioTimeout)

		opened := lc.matching(slog.LevelDebug, "connection opened")
		closed := lc.matching(slog.LevelDebug, "connection closed")
		for _, c := range clients {
			var o, cl []logRec
			for _, r := range opened {
				if r.attrs["remote"] == c.remote {
					o = append(o, r)
				}
			}
			for _, r := range closed {
				if r.attrs["remote"] == c.remote {
					cl = append(cl, r)
				}
			}
			wantOpened := 0
			if c.opened {
				wantOpened = 1
			}
			if len(o) != wantOpened {
				t.Errorf("%s (%s): %d \"connection opened\" lines, want %d", c.name, c.remote, len(o), wantOpened)
			}
			if len(cl) != 1 {
				t.Errorf("%s (%s): %d \"connection closed\" lines, want 1", c.name, c.remote, len(cl))
				continue
			}
			if cl[0].attrs["reason"] != c.reason {
				t.Errorf("%s (%s): closed with reason %q, want %q", c.name, c.remote, cl[0].attrs["reason"], c.reason)
			}
		}
		if len(opened) != 4 || len(closed) != len(clients) {
			t.Errorf("%d opened and %d closed lines, want 4 and %d", len(opened), len(closed), len(clients))
		}
	})
}
