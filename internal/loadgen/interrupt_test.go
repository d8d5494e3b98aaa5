package loadgen

import (
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingEcho is a correct echo that counts the connections it accepted
// and the bytes it echoed, so that a test can tell when the run is under
// way.
type countingEcho struct{ conns, bytes atomic.Int64 }

func (e *countingEcho) handle(c net.Conn) {
	e.conns.Add(1)
	io.Copy(c, io.TeeReader(c, counter{&e.bytes}))
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// interruptWhen sends SIGINT on the returned channel once ready reports
// true, after a further pause (both bounded).
func interruptWhen(t *testing.T, ready func() bool, after time.Duration) <-chan os.Signal {
	t.Helper()
	ch := make(chan os.Signal, 1)
	go func() {
		for end := time.Now().Add(10 * time.Second); !ready() && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(after)
		ch <- syscall.SIGINT
	}()
	return ch
}

// A run interrupted while measuring ends at once with exit 130, says so on
// stderr, and reports what it measured until then: the rates over the part
// that ran, and the frames in flight at the signal neither lost nor errors.
func TestInterruptedWhileMeasuring(t *testing.T) {
	e := &countingEcho{}
	s := startServer(t, "tcp4", e.handle)
	interrupt := interruptWhen(t, func() bool { return e.bytes.Load() > 0 }, 300*time.Millisecond)
	start := time.Now()
	r, code, stderr := benchInterrupted(t, interrupt, "--addr", s.addr, "--conns", "4", "--pipeline", "8",
		"--duration", "60s", "--warmup", "0s", "--grace", "10s")
	took := time.Since(start)
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitInterrupted, stderr)
	}
	if took > 15*time.Second {
		t.Errorf("took %v after the signal came at about 0.3 s: the run did not end at once", took)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, "interrupted") || !strings.Contains(stderr, "of the 1m0s measured window") {
		t.Errorf("stderr %q: want it to say interrupted, and of which window", stderr)
	}
	if !r.Interrupted || r.Frames == 0 || r.DurationS <= 0 || r.DurationS >= 60 || r.Mode != "closed" {
		t.Errorf("interrupted %v frames %d duration_s %v mode %q", r.Interrupted, r.Frames, r.DurationS, r.Mode)
	}
	checkClean(t, r)
	checkFigures(t, r) // the rates are over the part that ran
}

func TestInterruptedDuringWarmup(t *testing.T) {
	e := &countingEcho{}
	s := startServer(t, "tcp4", e.handle)
	var stdout, stderr strings.Builder
	interrupt := interruptWhen(t, func() bool { return e.bytes.Load() > 0 }, 50*time.Millisecond)
	code := Main([]string{"--addr", s.addr, "--conns", "2", "--duration", "60s", "--warmup", "60s"}, &stdout, &stderr, interrupt)
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitInterrupted, stderr.String())
	}
	if want := "frameloop bench: interrupted during the warmup: nothing was measured\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	// The table, for people: what there is, and that it was interrupted.
	for _, want := range []string{"interrupted", "frames", "mismatches"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
}

// Idle mode: interrupted while holding its connections.
func TestInterruptedIdle(t *testing.T) {
	e := &countingEcho{}
	s := startServer(t, "tcp4", e.handle)
	interrupt := interruptWhen(t, func() bool { return e.bytes.Load() >= 10*(4+64) }, 100*time.Millisecond)
	r, code, stderr := benchInterrupted(t, interrupt, "--addr", s.addr, "--idle", "10", "--hold", "60s")
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitInterrupted, stderr)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, "interrupted") {
		t.Errorf("stderr %q", stderr)
	}
	if !r.Interrupted || r.Mode != "idle" || r.Idle.Conns != 10 || r.Frames != 10 || r.DurationS <= 0 || r.DurationS >= 60 {
		t.Errorf("interrupted %v mode %q idle.conns %d frames %d duration_s %v", r.Interrupted, r.Mode, r.Idle.Conns, r.Frames, r.DurationS)
	}
	checkClean(t, r)
}

// A signal that comes after the run finished changes nothing: nil and
// unused interrupt channels are the same as none.
func TestNotInterrupted(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	r, code, stderr := benchInterrupted(t, make(chan os.Signal), append(short, "--addr", s.addr, "--conns", "2")...)
	if code != exitOK || r.Interrupted || stderr != "" {
		t.Errorf("exit %d interrupted %v stderr %q", code, r.Interrupted, stderr)
	}
	if r.DurationS != 0.3 {
		t.Errorf("duration_s %v, want the configured 0.3", r.DurationS)
	}
}
