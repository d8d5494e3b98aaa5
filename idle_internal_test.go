package frameloop

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestQuantizeRoundsDownByAtMostAnEighth(t *testing.T) {
	seen := map[time.Duration]bool{}
	for d := time.Duration(1); d < 100*time.Hour; d += d/97 + 1 {
		q := quantize(d)
		if q > d || float64(d-q) > float64(d)/8 {
			t.Fatalf("quantize(%v) = %v", d, q)
		}
		if quantize(q) != q {
			t.Fatalf("quantize(%v) = %v, not a fixed point", q, quantize(q))
		}
		if d >= time.Second && d < time.Hour {
			seen[q] = true
		}
	}
	// Eight steps per doubling: about 12 doublings from 1 s to 1 h.
	if n := len(seen); n > 8*12+8 {
		t.Errorf("%d distinct durations between 1 s and 1 h, want at most about %d", n, 8*12)
	}
}

// BenchmarkIdleListsSpread measures the choice of one deadline list per
// (quantized) duration at 10,000 connections whose idle timeouts spread
// over 10 s to 10 min, as MQTT keep-alives do: the cost of pushing one
// connection's deadline (done for each frame that completes), and of
// finding the next deadline (done once per loop pass), against the same
// with every connection on one list.
func BenchmarkIdleListsSpread(b *testing.B) {
	for _, spread := range []bool{false, true} {
		name := "one-duration"
		if spread {
			name = "spread-10s-10min"
		}
		b.Run(name, func(b *testing.B) {
			l, _ := newDetachedLoop(b, EchoHandler{}, Config{IdleTimeout: time.Minute})
			const conns = 10000
			states := make([]*connState, conns)
			for i := range states {
				st := l.newState()
				st.phase = phaseOpen
				if spread {
					st.idleIdx = l.idleListFor(10*time.Second + rand.N[time.Duration](10*time.Minute-10*time.Second))
				}
				l.setIdle(st)
				states[i] = st
			}
			b.Run("touch", func(b *testing.B) {
				i := 0
				for b.Loop() {
					l.setIdle(states[i%conns])
					i++
				}
			})
			b.Run("next-deadline", func(b *testing.B) {
				for b.Loop() {
					_ = l.timeoutMs()
				}
			})
			b.Logf("%d idle lists", len(l.idleLists))
		})
	}
}
