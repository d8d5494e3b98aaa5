package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Scenario is one load shape. Idle scenarios open connections that send
// nothing and measure the server's memory per connection.
type Scenario struct {
	ID       string
	Conns    int
	Pipeline int
	Size     int
	Idle     bool
}

// Describe is the scenario's one-line shape.
func (s Scenario) Describe(idleConns int, hold time.Duration) string {
	if s.Idle {
		return fmt.Sprintf("%d idle connections held %s: server RSS growth per connection", idleConns, hold)
	}
	return fmt.Sprintf("%d connections × pipeline %d × %d B payloads", s.Conns, s.Pipeline, s.Size)
}

var allScenarios = []Scenario{
	{ID: "S1", Conns: 100, Pipeline: 1, Size: 64},
	{ID: "S2", Conns: 100, Pipeline: 32, Size: 64},
	{ID: "S3", Conns: 8, Pipeline: 8, Size: 4000},
	{ID: "S4", Idle: true},
}

var allServers = []string{"frameloop", "net", "gnet", "nbio"}

// Sample is one measurement: a server under a scenario in one run.
type Sample struct {
	Run      int
	Server   string
	Scenario string
	Result   Result
	Err      string // non-empty when the measurement failed
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
			}
			c.MsgsPerSec, c.MBPerSec = median(msgs), median(mb)
			c.P50, c.P99, c.P999 = median(p50), median(p99), median(p999)
			c.ServerNsPerMsg, c.CPURatio = median(ns), median(ratio)
			c.LoadgenNsPerMsg = median(lgns)
			c.IdleBytesPerConn, c.IdleConns = median(idleB), median(idleN)
			c.IdleRSSBefore, c.IdleRSSAfter = median(idleBefore), median(idleAfter)
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

// Thresholds of the targets.
const (
	ratioTarget     = 0.9 // frameloop's cpu_ratio ≤ 0.9 × the best peer's
	idleBytesTarget = 192 // bytes of RSS per idle connection
	frameloopName   = "frameloop"
)

func usable(c *Cell) bool { return c != nil && c.Runs > 0 && !c.Faulty() }

// evaluateTargets computes every target that the measured scenarios allow.
func evaluateTargets(cells map[string]map[string]*Cell, scenarios []Scenario, servers []string) []Target {
	var peers []string
	for _, s := range servers {
		if s != frameloopName {
			peers = append(peers, s)
		}
	}
	has := func(id string) bool {
		return slices.ContainsFunc(scenarios, func(s Scenario) bool { return s.ID == id })
	}
	var out []Target
	for _, id := range []string{"S1", "S2", "S3"} {
		if !has(id) {
			continue
		}
		t := Target{Name: fmt.Sprintf("%s: frameloop's cpu_ratio is the lowest and ≤ %.1f × the best Go peer's", id, ratioTarget)}
		fl := cells[id][frameloopName]
		best, bestName, missingPeers := math.Inf(1), "", []string(nil)
		bestNs, bestNsName := math.Inf(1), ""
		for _, p := range peers {
			c := cells[id][p]
			if !usable(c) {
				missingPeers = append(missingPeers, p)
				continue
			}
			if c.CPURatio < best {
				best, bestName = c.CPURatio, p
			}
			if c.ServerNsPerMsg < bestNs {
				bestNs, bestNsName = c.ServerNsPerMsg, p
			}
		}
		switch {
		case !usable(fl):
			t.Status, t.Detail = statusNotEval, "no valid frameloop result"
		case bestName == "":
			t.Status, t.Detail = statusNotEval, "no valid peer result"
		default:
			rel := fl.CPURatio / best
			t.Detail = fmt.Sprintf("frameloop %.3f vs best peer %s %.3f (%.2f×)", fl.CPURatio, bestName, best, rel)
			if fl.CPURatio < best && rel <= ratioTarget {
				t.Status = statusMet
			} else {
				t.Status = statusMissed
			}
			// For context: the server's own CPU per message, which the
			// generator's cost per message does not enter.
			t.Detail += fmt.Sprintf("; server CPU/msg: frameloop %.0f ns vs best peer %s %.0f ns", fl.ServerNsPerMsg, bestNsName, bestNs)
			if len(missingPeers) > 0 {
				t.Detail += "; without " + strings.Join(missingPeers, ", ")
			}
		}
		out = append(out, t)
	}
	for _, id := range []string{"S2", "S3"} {
		if !has(id) {
			continue
		}
		t := Target{Name: fmt.Sprintf("%s: frameloop's msgs/s ≥ every peer's", id)}
		fl := cells[id][frameloopName]
		var beaten, compared, missingPeers []string
		for _, p := range peers {
			c := cells[id][p]
			if !usable(c) {
				missingPeers = append(missingPeers, p)
				continue
			}
			compared = append(compared, fmt.Sprintf("%s %s", p, fmtRate(c.MsgsPerSec)))
			if usable(fl) && fl.MsgsPerSec < c.MsgsPerSec {
				beaten = append(beaten, p)
			}
		}
		switch {
		case !usable(fl):
			t.Status, t.Detail = statusNotEval, "no valid frameloop result"
		case len(compared) == 0:
			t.Status, t.Detail = statusNotEval, "no valid peer result"
		default:
			t.Detail = fmt.Sprintf("frameloop %s vs %s", fmtRate(fl.MsgsPerSec), strings.Join(compared, ", "))
			if len(beaten) == 0 {
				t.Status = statusMet
			} else {
				t.Status = statusMissed
				t.Detail += "; slower than " + strings.Join(beaten, ", ")
			}
			if len(missingPeers) > 0 {
				t.Detail += "; without " + strings.Join(missingPeers, ", ")
			}
		}
		out = append(out, t)
	}
	if has("S4") {
		t := Target{Name: fmt.Sprintf("S4: frameloop ≤ %d B of RSS per idle connection", idleBytesTarget)}
		fl := cells["S4"][frameloopName]
		if !usable(fl) {
			t.Status, t.Detail = statusNotEval, "no valid frameloop result"
		} else {
			t.Detail = fmt.Sprintf("frameloop %.0f B/conn", fl.IdleBytesPerConn)
			if fl.IdleBytesPerConn <= idleBytesTarget {
				t.Status = statusMet
			} else {
				t.Status = statusMissed
			}
		}
		out = append(out, t)
	}
	return out
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
