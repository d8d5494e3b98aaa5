package frameloop_test

// docs/behaviour.md §6: a panic in OnOpen, OnFrame or
// OnClose closes that connection only (reason panic), is logged once with
// its stack and counted; the loop keeps serving everyone else.

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// panicky echoes, and panics where it is told to.
type panicky struct {
	*recorder
	mu          sync.Mutex
	openPanics  int      // the next OnOpen calls that panic
	closePanics int      // the next OnClose calls that panic
	delivered   []string // payloads of the frames seen, but the bystander's
}

func (p *panicky) OnOpen(c *frameloop.Conn) {
	p.recorder.OnOpen(c)
	p.mu.Lock()
	boom := p.openPanics > 0
	p.openPanics--
	p.mu.Unlock()
	if boom {
		panic("boom in OnOpen")
	}
}

func (p *panicky) OnFrame(c *frameloop.Conn, payload []byte) {
	if string(payload) == "panic" {
		var m map[string]int
		m["nil map"]++ // a real bug, not a panic(value)
	}
	if len(payload) < 16 {
		p.mu.Lock()
		p.delivered = append(p.delivered, string(payload))
		p.mu.Unlock()
	}
	c.Write(payload)
}

func (p *panicky) OnClose(c *frameloop.Conn, err error) {
	p.recorder.OnClose(c, err)
	p.mu.Lock()
	boom := p.closePanics > 0
	p.closePanics--
	p.mu.Unlock()
	if boom {
		panic("boom in OnClose")
	}
}

func startPanicky(t *testing.T, cfg frameloop.Config) (*testServer, *panicky, *logCapture) {
	t.Helper()
	logs := newLogCapture(slog.LevelError)
	cfg.Logger = logs.logger()
	p := &panicky{recorder: newRecorder(t)}
	return startServer(t, p, cfg), p, logs
}

// expectPanicLogged checks that one error line reports the panic, with a
// stack that names where it happened.
func expectPanicLogged(t *testing.T, logs *logCapture, where string) {
	t.Helper()
	recs := logs.matching(slog.LevelError, "handler panicked; closing its connection")
	if len(recs) != 1 {
		t.Fatalf("%d panic log lines, want 1 (all: %v)", len(recs), logs.records())
	}
	if st := recs[0].attrs["stack"]; !strings.Contains(st, where) {
		t.Errorf("the logged stack does not name %s:\n%s", where, st)
	}
}

func TestHandlerPanicInOnFrameClosesOnlyItsConnection(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts, p, logs := startPanicky(t, cfg)
		by := startBystander(t, ts.addr, 4096)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		var stream []byte
		for _, s := range []string{"a", "b", "panic", "c"} {
			stream = append(stream, testkit.Frame([]byte(s))...)
		}
		if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
			t.Fatal(err)
		}
		// The frames before the panic are answered; nothing after it.
		for _, want := range []string{"a", "b"} {
			if err := testkit.ExpectFrameErr(c, []byte(want), ioTimeout); err != nil {
				t.Fatal(err)
			}
		}
		testkit.ExpectClosed(t, c, ioTimeout)
		if ev := p.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrHandlerPanic) {
			t.Errorf("OnClose got %v, want ErrHandlerPanic", ev.err)
		}
		ts.waitStats(t, ioTimeout, "one panic, one panic close", func(st frameloop.Stats) bool {
			return st.Panics == 1 && st.ClosedBy(frameloop.ReasonPanic) == 1
		})
		expectPanicLogged(t, logs, "panicky).OnFrame")
		// The loop goes on: the bystander was served throughout, and new
		// connections are.
		by.stop(t, "while a handler panicked")
		testkit.Echo(t, testkit.DialTCP(t, ts.addr, ioTimeout), []byte("after"), ioTimeout)
	})
}

func TestHandlerPanicInOnOpenClosesOnlyItsConnection(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts, p, logs := startPanicky(t, cfg)
		by := startBystander(t, ts.addr, 4096)
		p.recorder.openFor(t, by.c, ioTimeout)
		p.mu.Lock()
		p.openPanics = 1
		p.mu.Unlock()
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		// Sent at once, perhaps before OnOpen runs: never delivered.
		if err := testkit.WriteFrame(c, []byte("too late"), ioTimeout); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectClosed(t, c, ioTimeout)
		if ev := p.closeFor(t, c, ioTimeout); !errors.Is(ev.err, frameloop.ErrHandlerPanic) {
			t.Errorf("OnClose got %v, want ErrHandlerPanic", ev.err)
		}
		ts.waitStats(t, ioTimeout, "one panic close", func(st frameloop.Stats) bool {
			return st.Panics == 1 && st.ClosedBy(frameloop.ReasonPanic) == 1
		})
		p.mu.Lock()
		for _, d := range p.delivered {
			if d == "too late" {
				t.Errorf("a frame of the connection whose OnOpen panicked was delivered")
			}
		}
		p.mu.Unlock()
		expectPanicLogged(t, logs, "panicky).OnOpen")
		by.stop(t, "while a handler panicked")
		testkit.Echo(t, testkit.DialTCP(t, ts.addr, ioTimeout), []byte("after"), ioTimeout)
	})
}

// A panic in OnClose comes after the close: it is counted and logged, the
// connection's reason stays what it was, and the loop goes on — also when
// it happens for every connection a shutdown closes.
func TestHandlerPanicInOnCloseIsContained(t *testing.T) {
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts, p, logs := startPanicky(t, cfg)
		p.mu.Lock()
		p.closePanics = 1
		p.mu.Unlock()
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		testkit.Echo(t, c, []byte("x"), ioTimeout)
		c.Close()
		ts.waitStats(t, ioTimeout, "one panic, closed by the peer", func(st frameloop.Stats) bool {
			return st.Panics == 1 && st.ClosedBy(frameloop.ReasonPeerClosed) == 1 && st.ClosedBy(frameloop.ReasonPanic) == 0
		})
		expectPanicLogged(t, logs, "panicky).OnClose")
		// Every OnClose of the shutdown panics: Serve still returns (the
		// cleanup checks it), every connection reported closed.
		var conns []io.Closer
		for range 8 {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			testkit.Echo(t, c, []byte("y"), ioTimeout)
			conns = append(conns, c)
		}
		p.mu.Lock()
		p.closePanics = 1 << 30
		p.mu.Unlock()
		if r := awaitShutdown(t, shutdownAsync(ts, ioTimeout), 3*ioTimeout); r.err != nil {
			t.Errorf("Shutdown returned %v", r.err)
		}
		if st := ts.stats(); st.Panics != 9 {
			t.Errorf("Stats.Panics = %d after 9 panicking OnClose calls", st.Panics)
		}
	})
}
