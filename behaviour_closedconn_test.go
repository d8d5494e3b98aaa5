package frameloop_test

// docs/behaviour.md §6.1: Close returns ErrClosed once the connection is
// closing, whoever decided it; Write returns ErrClosed once nothing written
// could be sent any more — after Close, once the write side is shut, once
// closed. Neither ever returns nil and drops the data.

import (
	"errors"
	"testing"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestWriteAndCloseRefusedOnceTheServerCloses(t *testing.T) {
	cases := []struct {
		name string
		// provoke makes the server close the connection of client c,
		// whose server side is sc.
		provoke func(t *testing.T, ts *testServer, c interface{ Write([]byte) (int, error) }, sc *frameloop.Conn)
	}{
		{"oversize", func(t *testing.T, _ *testServer, c interface{ Write([]byte) (int, error) }, _ *frameloop.Conn) {
			if _, err := c.Write(testkit.Header(1 << 20)); err != nil {
				t.Fatal(err)
			}
		}},
		{"Close", func(t *testing.T, _ *testServer, _ interface{ Write([]byte) (int, error) }, sc *frameloop.Conn) {
			if err := sc.Close(); err != nil {
				t.Fatalf("the first Close returned %v", err)
			}
		}},
		{"shutdown", func(t *testing.T, ts *testServer, _ interface{ Write([]byte) (int, error) }, _ *frameloop.Conn) {
			shutdownAsync(ts, ioTimeout)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
				cfg.MaxMessage = 1024
				rec := newRecorder(t)
				ts := startServer(t, rec, cfg)
				c := testkit.DialTCP(t, ts.addr, ioTimeout)
				testkit.Echo(t, c, []byte("before"), ioTimeout)
				sc := rec.openFor(t, c, ioTimeout)
				tc.provoke(t, ts, c, sc)
				// The client reads the end of the stream: the server has
				// shut its write side. The connection may linger a moment,
				// the client having not closed yet; whatever its state,
				// nothing can be sent on it any more.
				testkit.ExpectClosed(t, c, ioTimeout)
				if err := sc.Write([]byte("lost")); !errors.Is(err, frameloop.ErrClosed) {
					t.Errorf("Write after the server shut the connection returned %v, want ErrClosed", err)
				}
				if err := sc.Close(); !errors.Is(err, frameloop.ErrClosed) {
					t.Errorf("Close after the server closed the connection returned %v, want ErrClosed", err)
				}
			})
		})
	}
}
