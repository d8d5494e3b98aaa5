package frameloop_test

// docs/behaviour.md §4: a client reset (RST) at any moment affects no other
// connection.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestResetsAtRandomMomentsAffectNoOther(t *testing.T) {
	resetters, rounds := 12, 6
	if testing.Short() {
		resetters, rounds = 6, 3
	}
	moments := []struct {
		name string
		// act sends something and returns when the reset should come.
		act func(c net.Conn, rng *rand.Rand) error
	}{
		{
			name: "mid-header",
			act: func(c net.Conn, rng *rand.Rand) error {
				return testkit.WriteAll(c, testkit.Header(100)[:1+rng.IntN(3)], ioTimeout)
			},
		},
		{
			name: "mid-payload",
			act: func(c net.Conn, rng *rand.Rand) error {
				f := testkit.Frame(testkit.Pattern(200<<10, rng.Uint64()))
				return testkit.WriteAll(c, f[:4+rng.IntN(len(f)-5)], ioTimeout)
			},
		},
		{
			name: "mid-reply",
			act: func(c net.Conn, rng *rand.Rand) error {
				// Replies in flight: pipelined frames, partly read.
				var stream []byte
				for i := range 4 {
					stream = append(stream, testkit.Frame(testkit.Pattern(64<<10, uint64(i)))...)
				}
				if err := testkit.WriteAll(c, stream, ioTimeout); err != nil {
					return err
				}
				_, err := testkit.ReadFrame(c, ioTimeout, testkit.MaxFrame)
				return err
			},
		},
		{
			name: "after replies were queued, unread",
			act: func(c net.Conn, rng *rand.Rand) error {
				return testkit.WriteFrame(c, testkit.Pattern(1+rng.IntN(64<<10), rng.Uint64()), ioTimeout)
			},
		},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		rec := newRecorder(t)
		ts := startServer(t, rec, cfg)
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)

		by := startBystander(t, ts.addr, 3000)

		err := runGoroutines(resetters, func(i int) error {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for range rounds {
				m := moments[rng.IntN(len(moments))]
				c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
				if err != nil {
					return err
				}
				if err := m.act(c, rng); err != nil {
					c.Close()
					return fmt.Errorf("%s: %w", m.name, err)
				}
				time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
				if err := resetClose(c.(*net.TCPConn)); err != nil {
					return err
				}
			}
			return nil
		})
		by.stop(t, "during the resets")
		if err != nil {
			t.Fatal(err)
		}
		resets := uint64(resetters * rounds)
		st := ts.waitStats(t, ioTimeout, "every reset connection closed", func(st frameloop.Stats) bool {
			return st.Connections == 1 && totalClosed(st) == resets
		})
		if st.Accepted != resets+1 {
			t.Errorf("accepted %d, want %d", st.Accepted, resets+1)
		}
		if st.ClosedBy(frameloop.ReasonReset) != resets {
			t.Errorf("want all %d closes counted as resets: %s", resets, fmtStats(&st))
		}
		for _, ev := range rec.closeEvents() {
			if !testkit.IsReset(ev.err) {
				t.Errorf("OnClose for a reset connection got %v, want ECONNRESET or EPIPE", ev.err)
			}
		}
		testkit.Echo(t, by.c, []byte("after the resets"), ioTimeout)
	})
}
