package loadgen

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressLine redraws one status line on a terminal once a second.
type progressLine struct {
	out  io.Writer
	quit chan struct{}
	wg   sync.WaitGroup
}

func newProgressLine(out io.Writer) *progressLine { return &progressLine{out: out} }

func (p *progressLine) start(ws []*worker, pl plan) {
	p.quit = make(chan struct{})
	p.wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lastReplies int64
		last := now()
		for {
			select {
			case <-p.quit:
				fmt.Fprint(p.out, "\r\x1b[K")
				return
			case <-tick.C:
			}
			t := now()
			var replies, errs, p99 int64
			for _, w := range ws {
				replies += w.pub.replies.Load()
				errs += w.pub.errors.Load()
				p99 = max(p99, w.pub.p99.Load()) // per thread; the worst stands for all
			}
			rate := float64(replies-lastReplies) / (float64(t-last) / 1e9)
			lastReplies, last = replies, t
			fmt.Fprint(p.out, "\r\x1b[K"+formatProgress(time.Duration(t-pl.start), phaseAt(pl, t), rate, p99, errs))
		}
	})
}

func (p *progressLine) stop() {
	close(p.quit)
	p.wg.Wait()
}

func phaseAt(pl plan, t int64) string {
	switch {
	case t < pl.recordFrom:
		return "warmup"
	case t < pl.sendUntil:
		return "measuring"
	default:
		return "draining"
	}
}

// formatProgress is the status line: elapsed time, phase, reply rate, p99 of
// the measured replies so far, and errors (mismatches + lost + conn errors).
func formatProgress(elapsed time.Duration, phase string, rate float64, p99us, errs int64) string {
	p99 := "-"
	if p99us > 0 {
		p99 = fmt.Sprintf("%d µs", p99us)
	}
	s := fmt.Sprintf("%6.1fs  %-9s  %10.0f msgs/s  p99 %s  errors %d", elapsed.Seconds(), phase, rate, p99, errs)
	if errs > 0 {
		s += "  !"
	}
	return s
}
