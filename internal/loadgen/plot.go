package loadgen

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writePlot draws latency by percentile as HdrHistogram's plotter does: the
// x axis is 1/(1-p) on a log scale, so that 90%, 99%, 99.9%, ... are evenly
// spaced and the tail gets the room it deserves. The latency axis is
// logarithmic too, so that p50 to p99 stay readable when the tail is 100
// times slower. The file name's extension (.png or .svg) picks the format.
func writePlot(file string, h *hdrhistogram.Histogram, title string) error {
	p, err := latencyPlot(h, title)
	if err != nil {
		return err
	}
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, file); err != nil {
		return fmt.Errorf("write plot: %v", err)
	}
	return nil
}

// latencyPlot builds the plot writePlot saves.
func latencyPlot(h *hdrhistogram.Histogram, title string) (*plot.Plot, error) {
	if h.TotalCount() == 0 {
		return nil, errors.New("no latency was measured, so there is nothing to plot")
	}
	pts := percentileCurve(h)
	lo, hi := math.Inf(1), 0.0
	for i := range pts {
		// A log axis has no 0: a latency below the histogram's 1 µs
		// resolution is drawn at 1 µs.
		pts[i].Y = max(pts[i].Y, histMin)
		lo, hi = min(lo, pts[i].Y), max(hi, pts[i].Y)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (log scale)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = percentileTicks(pts[len(pts)-1].X)
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = latencyTicks{}
	p.Add(plotter.NewGrid())
	line, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	line.Width = vg.Points(1.5)
	p.Add(line)
	// After Add, which widens the axes to the data.
	p.X.Min, p.X.Max = 1, pts[len(pts)-1].X
	p.Y.Min, p.Y.Max = latencyRange(lo, hi)
	return p, nil
}

// percentileCurve samples the histogram at 20 points per decade of 1/(1-p),
// up to where the samples run out, and ends at the maximum.
func percentileCurve(h *hdrhistogram.Histogram) plotter.XYs {
	n := float64(h.TotalCount())
	var pts plotter.XYs
	for k := 0; ; k++ {
		x := math.Pow(10, float64(k)/20)
		if x > n || x > 1e7 {
			break
		}
		q := 100 * (1 - 1/x)
		pts = append(pts, plotter.XY{X: x, Y: float64(h.ValueAtQuantile(q))})
	}
	// The maximum sits one step to the right of the last percentile drawn.
	last := 1.0
	if len(pts) > 0 {
		last = pts[len(pts)-1].X
	}
	pts = append(pts, plotter.XY{X: last * math.Pow(10, 1.0/20), Y: float64(h.Max())})
	return pts
}

// percentileTicks labels 1/(1-p) = 1, 10, 100, ... as 0%, 90%, 99%, ...
func percentileTicks(max float64) plot.ConstantTicks {
	var ticks plot.ConstantTicks
	for d := 0; math.Pow(10, float64(d)) <= max; d++ {
		x := math.Pow(10, float64(d))
		label := "0%"
		if d > 0 {
			label = fmt.Sprintf("%s%%", trimFloat(100*(1-1/x)))
		}
		ticks = append(ticks, plot.Tick{Value: x, Label: label})
		for m := 2; m < 10 && x*float64(m) <= max; m++ {
			ticks = append(ticks, plot.Tick{Value: x * float64(m)}) // minor
		}
	}
	return ticks
}

// latencyRange is the latency axis's span for data from lo to hi µs (both
// at least 1): from the 1-2-5 step at or below lo to the one at or above
// hi, and at least one step wide.
func latencyRange(lo, hi float64) (float64, float64) {
	lo, hi = step125(lo, false), step125(hi, true)
	if hi <= lo {
		hi = step125(lo*1.01, true)
	}
	return lo, hi
}

// step125 is the value of the series 1, 2, 5, 10, 20, 50, ... nearest to
// v (> 0) from below, or from above when up.
func step125(v float64, up bool) float64 {
	decade := math.Pow(10, math.Floor(math.Log10(v)))
	steps := []float64{1, 2, 5, 10}
	if up {
		for _, m := range steps {
			if m*decade >= v*(1-1e-9) {
				return m * decade
			}
		}
		return 10 * decade
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i]*decade <= v*(1+1e-9) {
			return steps[i] * decade
		}
	}
	return decade
}

// latencyTicks mark a logarithmic latency axis in µs: every power of ten
// is labelled (1 µs, 10 µs, ..., 1 ms, ..., 1 s), the multiples 2–9 are
// minor ticks, and on a short axis, where powers of ten alone would leave
// it bare, the 2s and 5s (less than three decades) or all the multiples
// (at most one decade) are labelled too.
type latencyTicks struct{}

func (latencyTicks) Ticks(min, max float64) []plot.Tick {
	if min <= 0 || max <= min {
		return nil
	}
	decades := math.Log10(max / min)
	labelled := func(m int) bool {
		switch {
		case m == 1:
			return true
		case decades <= 1.01:
			return true
		case decades < 3:
			return m == 2 || m == 5
		}
		return false
	}
	var ticks []plot.Tick
	for d := math.Floor(math.Log10(min)); math.Pow(10, d) <= max; d++ {
		decade := math.Pow(10, d)
		for m := 1; m < 10; m++ {
			v := float64(m) * decade
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if labelled(m) {
				t.Label = formatLatency(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// formatLatency spells a latency given in µs in µs, ms or s.
func formatLatency(us float64) string {
	num := func(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64) }
	switch {
	case us >= 1e6:
		return num(us/1e6) + " s"
	case us >= 1e3:
		return num(us/1e3) + " ms"
	}
	return num(us) + " µs"
}

func trimFloat(v float64) string { return fmt.Sprintf("%.*f", decimals(v), v) }

// decimals is how many decimals 99.9...% needs to be shown exactly.
func decimals(v float64) int {
	for d := 0; d < 8; d++ {
		if math.Abs(v*math.Pow(10, float64(d))-math.Round(v*math.Pow(10, float64(d)))) < 1e-6 {
			return d
		}
	}
	return 8
}
