package loadgen

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/plot"
)

// labels returns the labelled ticks' labels.
func labels(ticks []plot.Tick) []string {
	var out []string
	for _, t := range ticks {
		if t.Label != "" {
			out = append(out, t.Label)
		}
	}
	return out
}

func TestLatencyTicks(t *testing.T) {
	for _, tc := range []struct {
		min, max float64
		want     []string
	}{
		// Many decades: powers of ten only.
		{1, 1e6, []string{"1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s"}},
		{20, 500_000, []string{"100 µs", "1 ms", "10 ms", "100 ms"}},
		// Fewer than three: the 2s and 5s too.
		{50, 20_000, []string{"50 µs", "100 µs", "200 µs", "500 µs", "1 ms", "2 ms", "5 ms", "10 ms", "20 ms"}},
		{2, 50, []string{"2 µs", "5 µs", "10 µs", "20 µs", "50 µs"}},
		// One decade or less: every multiple.
		{20, 80, []string{"20 µs", "30 µs", "40 µs", "50 µs", "60 µs", "70 µs", "80 µs"}},
		{1000, 10_000, []string{"1 ms", "2 ms", "3 ms", "4 ms", "5 ms", "6 ms", "7 ms", "8 ms", "9 ms", "10 ms"}},
		{2e6, 5e6, []string{"2 s", "3 s", "4 s", "5 s"}},
	} {
		ticks := latencyTicks{}.Ticks(tc.min, tc.max)
		if got := labels(ticks); !slices.Equal(got, tc.want) {
			t.Errorf("Ticks(%g, %g) labels %q, want %q", tc.min, tc.max, got, tc.want)
		}
		for i, tk := range ticks {
			if tk.Value < tc.min*(1-1e-9) || tk.Value > tc.max*(1+1e-9) || i > 0 && tk.Value <= ticks[i-1].Value {
				t.Errorf("Ticks(%g, %g): tick %g out of range or order", tc.min, tc.max, tk.Value)
			}
		}
	}
	// Minor ticks fill the decades: 1..9 × 10^k between 1 µs and 1 s.
	if n := len(latencyTicks{}.Ticks(1, 1e6)); n != 6*9+1 {
		t.Errorf("%d ticks from 1 µs to 1 s, want 55", n)
	}
	if ticks := (latencyTicks{}).Ticks(0, 10); ticks != nil {
		t.Errorf("Ticks(0, 10) = %v: a log axis has no 0", ticks)
	}
}

func TestLatencyRange(t *testing.T) {
	for _, tc := range []struct{ lo, hi, wantLo, wantHi float64 }{
		{23, 2400, 20, 5000},
		{1, 1, 1, 2},
		{100, 100, 100, 200},
		{7, 9, 5, 10},
		{12, 480_000, 10, 500_000},
		{1000, 2000, 1000, 2000},
	} {
		lo, hi := latencyRange(tc.lo, tc.hi)
		if lo != tc.wantLo || hi != tc.wantHi {
			t.Errorf("latencyRange(%g, %g) = %g, %g; want %g, %g", tc.lo, tc.hi, lo, hi, tc.wantLo, tc.wantHi)
		}
	}
}

func TestFormatLatency(t *testing.T) {
	for us, want := range map[float64]string{1: "1 µs", 500: "500 µs", 1000: "1 ms", 1500: "1.5 ms", 20_000: "20 ms", 1e6: "1 s", 3e7: "30 s"} {
		if got := formatLatency(us); got != want {
			t.Errorf("formatLatency(%g) = %q, want %q", us, got, want)
		}
	}
}

// A tail 1000 times slower than the median: the latency axis is
// logarithmic and spans both, and the PNG is written.
func TestLatencyPlotSpansDecades(t *testing.T) {
	h := newHistogram()
	for range 100_000 {
		h.RecordValue(40) // p50: 40 µs
	}
	for range 1000 {
		h.RecordValue(4000)
	}
	for range 10 {
		h.RecordValue(400_000) // 400 ms
	}
	h.RecordValue(0) // below the resolution: drawn at 1 µs, no panic
	p, err := latencyPlot(h, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Y.Scale.(plot.LogScale); !ok {
		t.Fatalf("latency axis scale %T, want plot.LogScale", p.Y.Scale)
	}
	if p.Y.Min != 1 || p.Y.Max != 500_000 {
		t.Errorf("latency axis from %g to %g µs, want 1 to 500000", p.Y.Min, p.Y.Max)
	}
	got := labels(p.Y.Tick.Marker.Ticks(p.Y.Min, p.Y.Max))
	if !slices.Contains(got, "10 µs") || !slices.Contains(got, "100 µs") || !slices.Contains(got, "1 ms") || !slices.Contains(got, "100 ms") {
		t.Errorf("latency labels %q", got)
	}
	file := filepath.Join(t.TempDir(), "lat.png")
	if err := writePlot(file, h, "test"); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, file)
}

func checkPNG(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s (%d bytes) is not a PNG: %v", file, len(b), err)
	}
	if r := img.Bounds(); r.Dx() < 100 || r.Dy() < 100 {
		t.Fatalf("%s is %v", file, r)
	}
}

// A real run whose latencies span several decades: the server stalls for
// 150 ms while most replies take microseconds. The plot is written.
func TestPlotOfARunSpanningDecades(t *testing.T) {
	s := startServer(t, "tcp4", stallingEcho(200*time.Millisecond, 150*time.Millisecond))
	file := filepath.Join(t.TempDir(), "lat.png")
	r, code, stderr := bench(t, "--addr", s.addr, "--conns", "2", "--rate", "1000", "--duration", "600ms", "--warmup", "0s",
		"--grace", "500ms", "--plot", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if r.LatencyUs.Max < 100*r.LatencyUs.P50 {
		t.Fatalf("p50 %.0f µs, max %.0f µs: the run does not span the decades this test is about", r.LatencyUs.P50, r.LatencyUs.Max)
	}
	checkPNG(t, file)
}
