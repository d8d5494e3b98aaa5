package frameloop_test

// docs/behaviour.md §3.1: at most MaxConns connections are served at once; further ones
// wait in the kernel's backlog and are served as soon as a slot frees,
// whatever freed it. Nothing is dropped at the limit.

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestConnectionCapResumesOnEveryPath(t *testing.T) {
	const (
		maxConns = 3
		// idleTimeout must leave time to fill the cap and see a waiter
		// wait, even on a slow machine under -race.
		idleTimeout = 3 * time.Second
		// lingerTimeout is the library's bound on draining a connection it
		// has finished with (config.go).
		lingerTimeout = 2 * time.Second
	)
	paths := []struct {
		name      string
		configure func(cfg *frameloop.Config)
		// free makes the server give up the slot held by c (server is its
		// server side).
		free func(t *testing.T, c *net.TCPConn, server *frameloop.Conn)
		// within bounds the time from free returning to the waiter's echo.
		within time.Duration
		reason frameloop.CloseReason
		// othersStay says the other connections at the cap stay open.
		othersStay bool
	}{
		{
			name:       "peer close",
			free:       func(t *testing.T, c *net.TCPConn, server *frameloop.Conn) { c.Close() },
			within:     2 * time.Second,
			reason:     frameloop.ReasonPeerClosed,
			othersStay: true,
		},
		{
			name: "peer reset",
			free: func(t *testing.T, c *net.TCPConn, server *frameloop.Conn) {
				if err := resetClose(c); err != nil {
					t.Fatal(err)
				}
			},
			within:     2 * time.Second,
			reason:     frameloop.ReasonReset,
			othersStay: true,
		},
		{
			name:      "idle timeout",
			configure: func(cfg *frameloop.Config) { cfg.IdleTimeout = idleTimeout },
			free:      func(t *testing.T, c *net.TCPConn, server *frameloop.Conn) {},
			within:    idleTimeout + 2*time.Second,
			reason:    frameloop.ReasonIdleTimeout,
		},
		{
			name: "oversize frame",
			free: func(t *testing.T, c *net.TCPConn, server *frameloop.Conn) {
				if err := testkit.WriteAll(c, testkit.Header(1<<30), ioTimeout); err != nil {
					t.Fatal(err)
				}
				testkit.ExpectClosed(t, c, ioTimeout)
				c.Close()
			},
			within:     2 * time.Second,
			reason:     frameloop.ReasonOversize,
			othersStay: true,
		},
		{
			name: "oversize frame, peer keeps its socket",
			free: func(t *testing.T, c *net.TCPConn, server *frameloop.Conn) {
				if err := testkit.WriteAll(c, testkit.Header(1<<30), ioTimeout); err != nil {
					t.Fatal(err)
				}
			},
			within:     lingerTimeout + 2*time.Second,
			reason:     frameloop.ReasonOversize,
			othersStay: true,
		},
		{
			name:       "write timeout",
			configure:  func(cfg *frameloop.Config) { cfg.WriteTimeout = 500 * time.Millisecond },
			free:       func(t *testing.T, c *net.TCPConn, server *frameloop.Conn) { stallNonReader(t, c, server) },
			within:     500*time.Millisecond + 2*time.Second,
			reason:     frameloop.ReasonWriteTimeout,
			othersStay: true,
		},
		{
			name: "application Close",
			free: func(t *testing.T, c *net.TCPConn, server *frameloop.Conn) {
				if err := testkit.WriteFrame(c, []byte("bye"), ioTimeout); err != nil {
					t.Fatal(err)
				}
				testkit.ExpectClosed(t, c, ioTimeout)
				c.Close()
			},
			within:     2 * time.Second,
			reason:     frameloop.ReasonLocal,
			othersStay: true,
		},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxConns = maxConns
		for _, p := range paths {
			t.Run(p.name, func(t *testing.T) {
				t.Parallel()
				cfg := cfg
				if p.configure != nil {
					p.configure(&cfg)
				}
				rec := newRecorder(t)
				rec.onFrame = func(c *frameloop.Conn, payload []byte) {
					if string(payload) == "bye" {
						c.Close()
						return
					}
					c.Write(payload)
				}
				ts := startServer(t, rec, cfg)
				start := time.Now()
				var held []*net.TCPConn
				for i := range maxConns {
					c := testkit.DialTCP(t, ts.addr, ioTimeout)
					testkit.Echo(t, c, fmt.Appendf(nil, "served %d", i), ioTimeout)
					held = append(held, c)
				}
				waiter := testkit.DialTCP(t, ts.addr, ioTimeout) // completes in the kernel's backlog
				if err := testkit.WriteFrame(waiter, []byte("waiting"), ioTimeout); err != nil {
					t.Fatal(err)
				}
				testkit.ExpectNothing(t, waiter, quiet)
				if p.reason == frameloop.ReasonIdleTimeout && time.Since(start) >= idleTimeout {
					t.Fatalf("filling the cap took %v, longer than the idle timeout the test relies on: widen idleTimeout", time.Since(start))
				}
				ts.waitStats(t, ioTimeout, "paused at the cap", func(st frameloop.Stats) bool {
					return st.AcceptPaused && st.Connections == maxConns
				})

				p.free(t, held[0], rec.openFor(t, held[0], ioTimeout))
				freed := time.Now()
				if err := testkit.ExpectFrameErr(waiter, []byte("waiting"), p.within+ioTimeout); err != nil {
					t.Fatalf("the waiting connection: %v", err)
				}
				within(t, "the waiting connection was served", time.Since(freed), 0, p.within)
				testkit.Echo(t, waiter, []byte("still served"), ioTimeout)
				if p.othersStay {
					for i, c := range held[1:] {
						testkit.Echo(t, c, fmt.Appendf(nil, "still %d", i+1), ioTimeout)
					}
					// The waiter took the freed slot: the cap is full again.
					extra := testkit.DialTCP(t, ts.addr, ioTimeout)
					if err := testkit.WriteFrame(extra, []byte("extra"), ioTimeout); err != nil {
						t.Fatal(err)
					}
					testkit.ExpectNothing(t, extra, quiet)
				}

				st := ts.waitStats(t, ioTimeout, "the freed slot counted", func(st frameloop.Stats) bool {
					return st.ClosedBy(p.reason) >= 1
				})
				if st.Accepted != maxConns+1 {
					t.Errorf("accepted %d connections, want %d: %s", st.Accepted, maxConns+1, fmtStats(&st))
				}
			})
		}
	})
}

// A crowd of connections beyond the cap: exactly MaxConns are served at
// once, across loops; each slot freed lets exactly one more in; none is
// dropped.
func TestConnectionCapServesEveryWaiter(t *testing.T) {
	const (
		maxConns = 2
		clients  = 8
	)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxConns = maxConns
		ts := startServer(t, nil, cfg)
		type servedConn struct {
			c   *net.TCPConn
			err error
		}
		served := make(chan servedConn, clients)
		for i := range clients {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			msg := fmt.Appendf(nil, "client %d", i)
			if err := testkit.WriteFrame(c, msg, ioTimeout); err != nil {
				t.Fatal(err)
			}
			go func() { served <- servedConn{c, testkit.ExpectFrameErr(c, msg, 4*ioTimeout)} }()
		}
		next := func() *net.TCPConn {
			t.Helper()
			select {
			case s := <-served:
				if s.err != nil {
					t.Fatal(s.err)
				}
				return s.c
			case <-time.After(5 * ioTimeout):
				t.Fatal("no waiting client was served")
			}
			return nil
		}
		var open []*net.TCPConn
		for range maxConns {
			open = append(open, next())
		}
		for left := clients - maxConns; ; left-- {
			// The cap is full: nobody else is served.
			select {
			case s := <-served:
				t.Fatalf("a client beyond the cap of %d was served (err %v)", maxConns, s.err)
			case <-time.After(quiet):
			}
			if left == 0 {
				break
			}
			open[0].Close()
			open = append(open[1:], next())
		}
		for _, c := range open {
			c.Close()
		}
		// Each loop publishes its figures once per pass, so the loops'
		// accept state may lag the connection count by a pass: wait for
		// both, within the bound.
		st := ts.waitStats(t, ioTimeout, "all served and gone, accepting resumed", func(st frameloop.Stats) bool {
			return st.Connections == 0 && st.Accepted == clients && !st.AcceptPaused
		})
		if got := st.ClosedBy(frameloop.ReasonPeerClosed); got != clients {
			t.Errorf("want %d closes by the peers: %s", clients, fmtStats(&st))
		}
	})
}
