package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Scenario is one load shape. Idle scenarios open connections that send
// nothing and measure the server's memory per connection. Open-loop
// scenarios send at a fixed rate (--rate) and measure latency from each
// frame's intended send time; the others are closed loops, each
// connection keeping Pipeline frames in flight.
type Scenario struct {
	ID       string
	Group    string // --scenarios selects every scenario of a group by its name (S5)
	Conns    int
	Pipeline int // closed loop: frames in flight; open loop: the most in flight
	Size     int
	Idle     bool
	// Open loop: Rate frames/s over all connections, or RateOfS2 times the
	// lowest S2 msgs/s of the same run. Both zero: closed loop.
	Rate     float64
	RateOfS2 float64
}

// Open reports whether the scenario is an open loop.
func (s Scenario) Open() bool { return s.Rate > 0 || s.RateOfS2 > 0 }

// Describe is the scenario's one-line shape.
func (s Scenario) Describe(idleConns int, hold time.Duration) string {
	switch {
	case s.Idle:
		return fmt.Sprintf("%d idle connections held %s: server RSS growth per connection", idleConns, hold)
	case s.RateOfS2 > 0:
		return fmt.Sprintf("%d connections × pipeline %d × %d B payloads, open loop at %.0f %% of the lowest S2 msgs/s of the same run, the same for every server",
			s.Conns, s.Pipeline, s.Size, 100*s.RateOfS2)
	case s.Rate > 0:
		return fmt.Sprintf("%s connections all active, open loop at %s msgs/s in all (≤ %d in flight each), %d B payloads",
			grouped(float64(s.Conns)), grouped(s.Rate), s.Pipeline, s.Size)
	}
	return fmt.Sprintf("%d connections × pipeline %d × %d B payloads", s.Conns, s.Pipeline, s.Size)
}

// S5's defaults: connection counts and the fixed total rate. The issue
// asks for 10,000 connections, but on the 2-vCPU machine of BENCHMARKS.md
// one generator core cannot drive 10,000 connections at 100,000 msgs/s:
// every frame is a write and a read of its own, about 10 µs of the
// generator's CPU there, and its send lag reached p50 6–8 ms (latency p50
// about 50 ms, the generator's backlog). It keeps up at 5,000 (send lag
// p50 8–40 µs, p99 0.5–1.1 ms) and at 10,000 with 70,000 msgs/s (p99
// 60 µs). With more CPUs for the generator: --s5-conns 100,1000,10000
// --loadgen-cpus 1-3 --loadgen-threads 3.
var (
	defaultS5Conns = []int{100, 1000, 5000}
	defaultS5Rate  = 100000.0
)

// s5Pipeline bounds the frames in flight on one S5 connection: room to
// catch up after a stall without the generator holding frames back.
const s5Pipeline = 16

// catalog lists every scenario in the order they run and are reported,
// with S5 at the given connection counts and rate.
func catalog(s5Conns []int, s5Rate float64) []Scenario {
	out := []Scenario{
		{ID: "S1", Conns: 100, Pipeline: 1, Size: 64},
		{ID: "S2", Conns: 100, Pipeline: 32, Size: 64},
		{ID: "S3", Conns: 8, Pipeline: 8, Size: 4000},
		{ID: "S4", Idle: true},
	}
	for _, n := range s5Conns {
		out = append(out, Scenario{ID: fmt.Sprintf("S5-%d", n), Group: "S5", Conns: n, Pipeline: s5Pipeline, Size: 64, Rate: s5Rate})
	}
	return append(out, Scenario{ID: "S6", Conns: 100, Pipeline: 32, Size: 64, RateOfS2: 0.5})
}

var allScenarios = catalog(defaultS5Conns, defaultS5Rate)

// Server names. c is the hand-written C epoll server (../../cserver), the
// lower bound; net, gnet and nbio are the Go peers (../peer).
const (
	frameloopName = "frameloop"
	cName         = "c"
)

var allServers = []string{frameloopName, cName, "net", "gnet", "nbio"}

// goPeers are the servers other than frameloop and the C server.
func goPeers(servers []string) []string {
	var out []string
	for _, s := range servers {
		if s != frameloopName && s != cName {
			out = append(out, s)
		}
	}
	return out
}

// Sample is one measurement: a server under a scenario in one run.
type Sample struct {
	Run      int
	Server   string
	Scenario string
	Result   Result
	Offered  float64 // open loop: the rate asked for, frames/s
	Err      string  // non-empty when the measurement failed
}

// Cell aggregates the samples of one server × scenario over the runs.
type Cell struct {
	Server, Scenario string
	Runs             int // successful runs
	Failed           []string
	// Medians over the successful runs.
	MsgsPerSec, MBPerSec        float64
	P50, P99, P999              float64
	ServerNsPerMsg, CPURatio    float64
	LoadgenNsPerMsg             float64
	IdleBytesPerConn, IdleConns float64
	IdleRSSBefore, IdleRSSAfter float64
	// Open loop: the rate asked for, how late frames were started (p99),
	// and the share of one core the server and the generator used.
	Offered, LagP99         float64
	ServerUtil, LoadgenUtil float64
	// S4: the kernel's slab memory per socket (both ends of every
	// connection are on this machine), from the run with the median.
	KernelPerSocket float64
	Kernel          *KernelMem
	// Sums over all runs: any non-zero is a correctness failure.
	Mismatches, Lost, ConnErrors float64
	Samples                      []Sample
}

// Faulty reports whether the cell saw wrong or missing replies, connection
// errors, or failed measurements.
func (c *Cell) Faulty() bool {
	return c.Mismatches+c.Lost+c.ConnErrors > 0 || len(c.Failed) > 0
}

// median returns the median of xs (the mean of the middle two for an even
// count), or NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// aggregate groups samples into cells keyed by scenario then server.
func aggregate(samples []Sample) map[string]map[string]*Cell {
	cells := map[string]map[string]*Cell{}
	for _, s := range samples {
		if cells[s.Scenario] == nil {
			cells[s.Scenario] = map[string]*Cell{}
		}
		c := cells[s.Scenario][s.Server]
		if c == nil {
			c = &Cell{Server: s.Server, Scenario: s.Scenario}
			cells[s.Scenario][s.Server] = c
		}
		c.Samples = append(c.Samples, s)
	}
	for _, byServer := range cells {
		for _, c := range byServer {
			var msgs, mb, p50, p99, p999, ns, lgns, ratio, idleB, idleN, idleBefore, idleAfter []float64
			var offered, lag, sutil, lutil, kps []float64
			var kernels []*KernelMem
			for _, s := range c.Samples {
				if s.Err != "" {
					c.Failed = append(c.Failed, fmt.Sprintf("run %d: %s", s.Run, s.Err))
					continue
				}
				r := s.Result
				c.Runs++
				c.Mismatches += r.Mismatches
				c.Lost += r.Lost
				c.ConnErrors += r.ConnErrors
				if r.Idle != nil {
					if k := r.Kernel; k != nil && k.Sockets > 0 {
						kps = append(kps, k.PerSocket())
						kernels = append(kernels, k)
					}
					idleB = append(idleB, r.Idle.RSSPerConn)
					idleN = append(idleN, r.Idle.Conns)
					idleBefore = append(idleBefore, r.Idle.RSSBeforeBytes)
					idleAfter = append(idleAfter, r.Idle.RSSAfterBytes)
					continue
				}
				msgs = append(msgs, r.MsgsPerSec)
				mb = append(mb, r.MBPerSec)
				p50 = append(p50, r.Latency.P50)
				p99 = append(p99, r.Latency.P99)
				p999 = append(p999, r.Latency.P999)
				ns = append(ns, r.ServerCPUNsPerMsg)
				lgns = append(lgns, r.LoadgenCPUNsPerMsg)
				ratio = append(ratio, r.CPURatio)
				if s.Offered > 0 {
					offered = append(offered, s.Offered)
				}
				if r.SendLagUs != nil {
					lag = append(lag, r.SendLagUs.P99)
				}
				if r.DurationS > 0 {
					sutil = append(sutil, r.ServerCPUNs/1e9/r.DurationS)
					lutil = append(lutil, r.LoadgenCPUNs/1e9/r.DurationS)
				}
			}
			c.MsgsPerSec, c.MBPerSec = median(msgs), median(mb)
			c.P50, c.P99, c.P999 = median(p50), median(p99), median(p999)
			c.ServerNsPerMsg, c.CPURatio = median(ns), median(ratio)
			c.LoadgenNsPerMsg = median(lgns)
			c.IdleBytesPerConn, c.IdleConns = median(idleB), median(idleN)
			c.IdleRSSBefore, c.IdleRSSAfter = median(idleBefore), median(idleAfter)
			c.Offered, c.LagP99 = median(offered), median(lag)
			c.ServerUtil, c.LoadgenUtil = median(sutil), median(lutil)
			c.KernelPerSocket = median(kps)
			for _, k := range kernels { // the run closest to the median
				if c.Kernel == nil || math.Abs(k.PerSocket()-c.KernelPerSocket) < math.Abs(c.Kernel.PerSocket()-c.KernelPerSocket) {
					c.Kernel = k
				}
			}
		}
	}
	return cells
}

// Target is one goal from the brief, evaluated on the medians.
type Target struct {
	Name   string
	Status string // "met", "missed" or "not evaluated"
	Detail string
}

const (
	statusMet     = "met"
	statusMissed  = "missed"
	statusNotEval = "not evaluated"
)

// Thresholds of the targets (the issue "Speed: within 3 % of hand-written
// C epoll").
const (
	cRatioTarget    = 1.03 // S1–S3: frameloop's cpu_ratio ≤ 1.03 × the C server's
	scaleTarget     = 1.15 // S5: CPU/msg at the most connections ≤ 1.15 × at the fewest
	idleBytesTarget = 192  // S4: bytes of RSS per idle connection
	minTargetRuns   = 3    // targets are judged on medians of at least this many runs
	// shortfall: an open loop that delivered less than this share of the
	// rate asked for is flagged (server or generator could not keep up).
	shortfall = 0.97
)

func usable(c *Cell) bool { return c != nil && c.Runs > 0 && !c.Faulty() }

// fewRuns names the cells judged on fewer than minTargetRuns runs.
func fewRuns(cells ...*Cell) string {
	var out []string
	for _, c := range cells {
		if c != nil && c.Runs < minTargetRuns {
			out = append(out, fmt.Sprintf("%s %s: %d", c.Scenario, c.Server, c.Runs))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprintf("needs the medians of ≥ %d runs (have %s); ", minTargetRuns, strings.Join(out, ", "))
}

// judge sets t's status: met when ok, unless too few runs back it.
func judge(t *Target, ok bool, cells ...*Cell) {
	if few := fewRuns(cells...); few != "" {
		t.Status = statusNotEval
		t.Detail = few + t.Detail
		return
	}
	if ok {
		t.Status = statusMet
	} else {
		t.Status = statusMissed
	}
}

// evaluateTargets computes every target that the measured scenarios allow.
func evaluateTargets(cells map[string]map[string]*Cell, scenarios []Scenario, servers []string) []Target {
	peers := goPeers(servers)
	has := func(id string) bool {
		return slices.ContainsFunc(scenarios, func(s Scenario) bool { return s.ID == id })
	}
	var out []Target
	for _, id := range []string{"S1", "S2", "S3"} {
		if !has(id) {
			continue
		}
		out = append(out, ratioTarget(id, cells[id], peers))
	}
	if t, ok := scaleTargetOf(cells, scenarios, peers); ok {
		out = append(out, t)
	}
	if has("S6") {
		out = append(out, tailTarget(cells["S6"], peers))
	}
	if has("S4") {
		t := Target{Name: fmt.Sprintf("S4: frameloop ≤ %d B of RSS per idle connection", idleBytesTarget)}
		fl := cells["S4"][frameloopName]
		if !usable(fl) {
			t.Status, t.Detail = statusNotEval, "no valid frameloop result"
		} else {
			t.Detail = fmt.Sprintf("frameloop %.0f B/conn over %s connections", fl.IdleBytesPerConn, grouped(fl.IdleConns))
			judge(&t, fl.IdleBytesPerConn <= idleBytesTarget, fl)
		}
		out = append(out, t)
	}
	return out
}

// ratioTarget: frameloop's cpu_ratio ≤ cRatioTarget × the C server's and
// lower than every Go peer's.
func ratioTarget(id string, byServer map[string]*Cell, peers []string) Target {
	t := Target{Name: fmt.Sprintf("%s: frameloop's cpu_ratio ≤ %.2f × the C server's and lower than every Go peer's", id, cRatioTarget)}
	fl, c := byServer[frameloopName], byServer[cName]
	switch {
	case !usable(fl):
		t.Status, t.Detail = statusNotEval, "no valid frameloop result"
		return t
	case !usable(c):
		t.Status, t.Detail = statusNotEval, "no valid result of the C server"
		return t
	}
	rel := fl.CPURatio / c.CPURatio
	t.Detail = fmt.Sprintf("frameloop %.3f vs c %.3f (%.2f×)", fl.CPURatio, c.CPURatio, rel)
	ok := rel <= cRatioTarget
	v := versus(peers, func(p string) *Cell { return byServer[p] }, fl, cpuRatio, "%.3f")
	if len(v.cells) == 0 {
		t.Status = statusNotEval
		t.Detail += "; no valid Go peer result"
		return t
	}
	t.Detail += "; Go peers " + strings.Join(v.figs, ", ") + v.slowerNote()
	// For context: the server's own CPU per message, which the
	// generator's cost per message does not enter.
	nsFigs := make([]string, len(v.cells))
	for i, pc := range v.cells {
		nsFigs[i] = fmt.Sprintf("%s %.0f", v.names[i], pc.ServerNsPerMsg)
	}
	t.Detail += fmt.Sprintf("; server CPU ns/msg: frameloop %.0f, c %.0f (%.2f×), %s",
		fl.ServerNsPerMsg, c.ServerNsPerMsg, fl.ServerNsPerMsg/c.ServerNsPerMsg, strings.Join(nsFigs, ", "))
	t.Detail += v.missingNote()
	judge(&t, ok && len(v.slower) == 0, append([]*Cell{fl, c}, v.cells...)...)
	return t
}

// peerFigures is frameloop's figure set against each Go peer's, lower
// being better: the targets S1–S3, S5 and S6 all read it the same way.
type peerFigures struct {
	names   []string // the peers with a usable result, in order
	cells   []*Cell  // their results
	figs    []string // "name figure" for each
	slower  []string // those whose figure frameloop's is not below
	missing []string // the peers without a usable result
}

// versus compares frameloop's cell fl with each peer's, by figure,
// formatted with verb.
func versus(peers []string, cellOf func(string) *Cell, fl *Cell, figure func(*Cell) float64, verb string) peerFigures {
	var v peerFigures
	for _, p := range peers {
		pc := cellOf(p)
		if !usable(pc) {
			v.missing = append(v.missing, p)
			continue
		}
		v.names = append(v.names, p)
		v.cells = append(v.cells, pc)
		v.figs = append(v.figs, fmt.Sprintf("%s "+verb, p, figure(pc)))
		if figure(fl) >= figure(pc) {
			v.slower = append(v.slower, p)
		}
	}
	return v
}

func (v peerFigures) slowerNote() string {
	if len(v.slower) == 0 {
		return ""
	}
	return " (not below " + strings.Join(v.slower, ", ") + ")"
}

func (v peerFigures) missingNote() string {
	if len(v.missing) == 0 {
		return ""
	}
	return "; without " + strings.Join(v.missing, ", ")
}

func cpuRatio(c *Cell) float64 { return c.CPURatio }
func serverNs(c *Cell) float64 { return c.ServerNsPerMsg }
func p99(c *Cell) float64      { return c.P99 }

// scaleTargetOf: S5, frameloop's CPU per message at the most connections
// ≤ scaleTarget × its own at the fewest, and lower than every Go peer's at
// the most. ok is false when fewer than two S5 scenarios ran.
func scaleTargetOf(cells map[string]map[string]*Cell, scenarios []Scenario, peers []string) (Target, bool) {
	var s5 []Scenario
	for _, sc := range scenarios {
		if sc.Group == "S5" {
			s5 = append(s5, sc)
		}
	}
	if len(s5) < 2 {
		return Target{}, false
	}
	lo := slices.MinFunc(s5, func(a, b Scenario) int { return a.Conns - b.Conns })
	hi := slices.MaxFunc(s5, func(a, b Scenario) int { return a.Conns - b.Conns })
	t := Target{Name: fmt.Sprintf("S5: frameloop's CPU per message at %s busy connections ≤ %.2f × its own at %s, and lower than every Go peer's at %s",
		grouped(float64(hi.Conns)), scaleTarget, grouped(float64(lo.Conns)), grouped(float64(hi.Conns)))}
	flLo, flHi := cells[lo.ID][frameloopName], cells[hi.ID][frameloopName]
	if !usable(flLo) || !usable(flHi) {
		t.Status, t.Detail = statusNotEval, "no valid frameloop result"
		return t, true
	}
	rel := flHi.ServerNsPerMsg / flLo.ServerNsPerMsg
	t.Detail = fmt.Sprintf("frameloop %.0f ns/msg at %s vs %.0f ns at %s (%.2f×)",
		flHi.ServerNsPerMsg, grouped(float64(hi.Conns)), flLo.ServerNsPerMsg, grouped(float64(lo.Conns)), rel)
	ok := rel <= scaleTarget
	v := versus(peers, func(p string) *Cell { return cells[hi.ID][p] }, flHi, serverNs, "%.0f")
	if len(v.cells) == 0 {
		t.Status = statusNotEval
		t.Detail += "; no valid Go peer result"
		return t, true
	}
	ok = ok && len(v.slower) == 0
	judged := append([]*Cell{flLo, flHi}, v.cells...)
	t.Detail += fmt.Sprintf("; at %s: Go peers %s", grouped(float64(hi.Conns)), strings.Join(v.figs, ", ")) + v.slowerNote()
	if c := cells[hi.ID][cName]; usable(c) {
		t.Detail += fmt.Sprintf(", c %.0f (for reference)", c.ServerNsPerMsg)
	}
	t.Detail += v.missingNote()
	t.Detail += shortfallNote(append(slices.Clone(judged), cells[hi.ID][cName], cells[lo.ID][cName])...)
	judge(&t, ok, judged...)
	return t, true
}

// tailTarget: S6, frameloop's p99 lower than every Go peer's.
func tailTarget(byServer map[string]*Cell, peers []string) Target {
	t := Target{Name: "S6: frameloop's p99 latency lower than every Go peer's"}
	fl := byServer[frameloopName]
	if !usable(fl) {
		t.Status, t.Detail = statusNotEval, "no valid frameloop result"
		return t
	}
	t.Detail = fmt.Sprintf("frameloop p99 %.0f µs", fl.P99)
	v := versus(peers, func(p string) *Cell { return byServer[p] }, fl, p99, "%.0f")
	if len(v.cells) == 0 {
		t.Status = statusNotEval
		t.Detail += "; no valid Go peer result"
		return t
	}
	ok := len(v.slower) == 0
	judged := append([]*Cell{fl}, v.cells...)
	t.Detail += "; Go peers " + strings.Join(v.figs, ", ") + v.slowerNote()
	if c := byServer[cName]; usable(c) {
		t.Detail += fmt.Sprintf("; c %.0f (for reference)", c.P99)
	}
	t.Detail += v.missingNote()
	t.Detail += shortfallNote(append(slices.Clone(judged), byServer[cName])...)
	t.Detail += lagNote(append(slices.Clone(judged), byServer[cName])...)
	judge(&t, ok, judged...)
	return t
}

// lagBound reports whether an open-loop cell's p99 latency is mostly the
// generator's: its send lag (p99) is at least half of it.
func lagBound(c *Cell) bool {
	return usable(c) && c.Offered > 0 && c.P99 > 0 && !math.IsNaN(c.LagP99) && c.LagP99 >= c.P99/2
}

// lagNote names the cells whose p99 is mostly the generator's send lag.
func lagNote(cells ...*Cell) string {
	var out []string
	for _, c := range cells {
		if lagBound(c) {
			out = append(out, fmt.Sprintf("%s %s (send lag p99 %.0f of %.0f µs)", c.Scenario, c.Server, c.LagP99, c.P99))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; † latency mostly the generator's: " + strings.Join(out, ", ")
}

// shortfallNote warns about open-loop cells that delivered clearly less
// than the rate asked for: their latency includes a growing backlog.
func shortfallNote(cells ...*Cell) string {
	var out []string
	for _, c := range cells {
		if usable(c) && c.Offered > 0 && c.MsgsPerSec < shortfall*c.Offered {
			out = append(out, fmt.Sprintf("%s %s %s of %s msgs/s", c.Scenario, c.Server, fmtRate(c.MsgsPerSec), fmtRate(c.Offered)))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; ⚠️ below the rate asked for: " + strings.Join(out, ", ")
}

// fmtRate formats a message rate compactly (e.g. 1.23M, 456k).
func fmtRate(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
