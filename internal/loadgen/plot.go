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
// spaced and the tail gets the room it deserves. The file name's extension
// (.png or .svg) picks the format.
func writePlot(file string, h *hdrhistogram.Histogram, title string) error {
	if h.TotalCount() == 0 {
		return errors.New("no latency was measured, so there is nothing to plot")
	}
	pts := percentileCurve(h)
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (µs)"
	p.X.Scale = plot.LogScale{}
	p.X.Min, p.X.Max = 1, pts[len(pts)-1].X
	p.X.Tick.Marker = percentileTicks(p.X.Max)
	p.Y.Min = 0
	p.Y.Tick.Marker = wholeTicks{}
	p.Add(plotter.NewGrid())
	line, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	line.Width = vg.Points(1.5)
	p.Add(line)
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, file); err != nil {
		return fmt.Errorf("write plot: %v", err)
	}
	return nil
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

// wholeTicks are gonum's default ticks, labelled without decimals:
// latencies are whole microseconds.
type wholeTicks struct{}

func (wholeTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
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
