package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot file names, written next to BENCHMARKS.md.
const (
	plotCPURatio   = "bench-cpu-ratio.png"
	plotThroughput = "bench-throughput.png"
)

// serverColor gives each server the same colour in every plot, whichever
// servers were measured.
func serverColor(name string) color.Color {
	i := slices.Index(allServers, name)
	if i < 0 {
		i = len(allServers)
	}
	return plotutil.Color(i)
}

// writePlots draws the median cpu_ratio as a grouped bar chart (one group
// per closed-loop scenario, one bar per server; ratios share a scale) and the
// median msgs/s as one panel per scenario (rates differ by an order of
// magnitude between scenarios, so each panel has its own scale). It
// returns the files written. A server without a valid result in a scenario
// gets no bar there.
func writePlots(dir string, r *Report) ([]string, error) {
	var load []Scenario // the closed loops: cpu_ratio is their figure
	for _, sc := range r.Scenarios {
		if !sc.Idle && !sc.Open() {
			load = append(load, sc)
		}
	}
	if len(load) == 0 || len(r.Servers) == 0 {
		return nil, nil
	}
	value := func(id, srv string, f func(*Cell) float64) float64 {
		if c := r.Cells[id][srv]; usable(c) && !math.IsNaN(f(c)) {
			return f(c)
		}
		return 0
	}
	ratio := func(c *Cell) float64 { return c.CPURatio }
	rate := func(c *Cell) float64 { return c.MsgsPerSec }
	var written []string

	// cpu_ratio: grouped bars.
	p := plot.New()
	p.Title.Text = fmt.Sprintf("cpu_ratio = server CPU/msg ÷ generator CPU/msg (lower is better; median of %d run(s))", r.Opts.Runs)
	p.Y.Label.Text = "cpu_ratio"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	n := len(r.Servers)
	barW := vg.Points(math.Min(28, 220/float64(n)))
	top := 0.0
	var ids []string
	for _, sc := range load {
		ids = append(ids, sc.ID)
	}
	for i, srv := range r.Servers {
		vals := make(plotter.Values, len(load))
		for j, sc := range load {
			vals[j] = value(sc.ID, srv, ratio)
			top = math.Max(top, vals[j])
		}
		bars, err := plotter.NewBarChart(vals, barW)
		if err != nil {
			return written, fmt.Errorf("%s: %v", plotCPURatio, err)
		}
		bars.LineStyle.Width = 0
		bars.Color = serverColor(srv)
		bars.Offset = barW * vg.Length(float64(i)-float64(n-1)/2)
		p.Add(bars)
		p.Legend.Add(srv, bars)
	}
	if top > 0 {
		p.Y.Max = top * 1.35 // room for the legend
	}
	p.X.Min, p.X.Max = -0.6, float64(len(load))-0.4
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(8)
	p.NominalX(ids...)
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, plotCPURatio)); err != nil {
		return written, fmt.Errorf("%s: %v", plotCPURatio, err)
	}
	written = append(written, plotCPURatio)

	// msgs/s: a panel per scenario.
	panels := [][]*plot.Plot{make([]*plot.Plot, len(load))}
	for j, sc := range load {
		q := plot.New()
		q.Title.Text = fmt.Sprintf("%s: %d×%d×%d B", sc.ID, sc.Conns, sc.Pipeline, sc.Size)
		if j == 0 {
			q.Y.Label.Text = "messages per second (higher is better)"
		}
		q.Y.Min = 0
		q.Add(plotter.NewGrid())
		top := 0.0
		for i, srv := range r.Servers {
			v := value(sc.ID, srv, rate)
			top = math.Max(top, v)
			bars, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(22))
			if err != nil {
				return written, fmt.Errorf("%s: %v", plotThroughput, err)
			}
			bars.LineStyle.Width = 0
			bars.Color = serverColor(srv)
			bars.XMin = float64(i)
			q.Add(bars)
		}
		if top > 0 {
			q.Y.Max = top * 1.1
		}
		q.X.Min, q.X.Max = -0.6, float64(n)-0.4
		q.NominalX(r.Servers...)
		panels[0][j] = q
	}
	w, h := vg.Length(math.Max(8, 2.8*float64(len(load))))*vg.Inch, 4.5*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(load), PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align(panels, tiles, dc)
	for j := range load {
		panels[0][j].Draw(canvases[0][j])
	}
	f, err := os.Create(filepath.Join(dir, plotThroughput))
	if err != nil {
		return written, fmt.Errorf("%s: %v", plotThroughput, err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return written, fmt.Errorf("%s: %v", plotThroughput, err)
	}
	if err := f.Close(); err != nil {
		return written, fmt.Errorf("%s: %v", plotThroughput, err)
	}
	written = append(written, plotThroughput)
	return written, nil
}
