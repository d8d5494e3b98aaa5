package frameloop_test

// docs/behaviour.md §3.5: the input all connections hold for
// unfinished frames is bounded by Config.MaxInputMemory. A connection whose
// frame does not fit stops being read until memory is freed; it is not
// closed, and no one deadlocks: a frame that completes frees its charge for
// the next.

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestInputMemoryBudgetPausesReadingInsteadOfBuffering(t *testing.T) {
	const (
		clients = 16
		size    = 1 << 20
		budget  = 4 << 20
		// What may be charged beyond the budget: bytes already read must
		// be kept, at most one read per connection.
		overdraft = clients * (64<<10 + 512)
	)
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		cfg.MaxMessage = size
		cfg.MaxInputMemory = budget
		ts := startServer(t, nil, cfg)

		// Each client sends all but the last byte of a 1 MiB frame, waits
		// until it is told to go on, sends the last byte and checks the
		// echo. Their first writes cannot all complete: the server stops
		// reading the clients whose frames do not fit.
		goOn := make(chan struct{})
		var sentAllButOne atomic.Int64
		frames := make([][]byte, clients)
		conns := make([]interface{ Close() error }, clients)
		errs := make(chan error, clients)
		for i := range clients {
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			conns[i] = c
			frames[i] = testkit.Frame(testkit.Pattern(size, uint64(i)))
			go func() {
				f := frames[i]
				if err := testkit.WriteAll(c, f[:len(f)-1], 6*ioTimeout); err != nil {
					errs <- fmt.Errorf("client %d: first write: %w", i, err)
					return
				}
				sentAllButOne.Add(1)
				<-goOn
				if err := testkit.WriteAll(c, f[len(f)-1:], ioTimeout); err != nil {
					errs <- fmt.Errorf("client %d: last byte: %w", i, err)
					return
				}
				errs <- testkit.ExpectFrameErr(c, f[4:], 6*ioTimeout)
			}()
		}

		// The budget holds while every connection waits with its frame
		// unfinished: at most three 1 MiB frames fit 4 MiB (each is
		// charged its size class, 1.125 MiB), the others wait unread.
		var peak int64
		ts.waitStats(t, 3*ioTimeout, "the connections beyond the budget paused", func(st frameloop.Stats) bool {
			peak = max(peak, st.InputMemory)
			return st.MemoryPauses >= clients-3 && sentAllButOne.Load() == clients
		})
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			peak = max(peak, ts.stats().InputMemory)
			time.Sleep(5 * time.Millisecond)
		}

		// Every frame completes, in turns, and is echoed intact; no
		// connection is closed for the budget.
		close(goOn)
		stopWatch := make(chan struct{})
		watched := make(chan int64)
		go func() {
			var p int64
			for {
				select {
				case <-stopWatch:
					watched <- p
					return
				case <-time.After(time.Millisecond):
					p = max(p, ts.stats().InputMemory)
				}
			}
		}()
		for range clients {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		close(stopWatch)
		peak = max(peak, <-watched)
		if peak > budget+overdraft {
			t.Errorf("input memory reached %d KiB; the budget is %d KiB (plus at most %d KiB already read)", peak>>10, budget>>10, overdraft>>10)
		}
		st := ts.stats()
		if n := totalClosed(st); n != 0 {
			t.Errorf("%d connections closed: %s", n, fmtStats(&st))
		}
		if st.InputMemory != 0 {
			t.Errorf("Stats.InputMemory = %d with every frame answered, want 0", st.InputMemory)
		}
		t.Logf("peak input memory %d KiB for a %d KiB budget; %d pauses", peak>>10, budget>>10, st.MemoryPauses)
		for _, c := range conns {
			c.Close()
		}
	})
}
