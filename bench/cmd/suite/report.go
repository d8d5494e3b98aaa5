package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Report is everything BENCHMARKS.md is written from.
type Report struct {
	Generated time.Time
	Command   string
	Machine   Machine
	Opts      Options
	Scenarios []Scenario
	Servers   []string // servers measured, in table order
	Skipped   []string // servers left out, with the reason
	Notes     []string // warnings met on the way (slow shutdowns, …)
	Samples   []Sample
	Cells     map[string]map[string]*Cell
	Targets   []Target
	Plots     []string // plot files written next to the report
	PlotErr   string
}

// Failed reports whether any measurement failed or saw a fault.
func (r *Report) Failed() bool {
	for _, byServer := range r.Cells {
		for _, c := range byServer {
			if c.Faulty() {
				return true
			}
		}
	}
	return false
}

// faultLines lists every failure and non-zero error count, for the loud
// block at the top of the report and the console.
func (r *Report) faultLines() []string {
	var out []string
	for _, sc := range r.Scenarios {
		for _, srv := range r.Servers {
			c := r.Cells[sc.ID][srv]
			if c == nil {
				continue
			}
			if n := c.Mismatches + c.Lost + c.ConnErrors; n > 0 {
				line := fmt.Sprintf("%s %s: %.0f mismatches, %.0f lost, %.0f connection errors (summed over runs)",
					sc.ID, srv, c.Mismatches, c.Lost, c.ConnErrors)
				for _, s := range c.Samples {
					if s.Result.FirstError != "" {
						line += fmt.Sprintf("; first error (run %d): %s", s.Run, mdEscape(s.Result.FirstError))
						break
					}
				}
				out = append(out, line)
			}
			for _, f := range c.Failed {
				out = append(out, fmt.Sprintf("%s %s: measurement failed, %s", sc.ID, srv, f))
			}
		}
	}
	return out
}

func statusMark(s string) string {
	switch s {
	case statusMet:
		return "✅ met"
	case statusMissed:
		return "❌ missed"
	default:
		return "➖ " + s
	}
}

func num(v float64, prec int) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// grouped formats an integer-valued figure with thin digit groups.
func grouped(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if v < 0 {
		return "-" + b.String()
	}
	return b.String()
}

func errorsCell(c *Cell) string {
	n := c.Mismatches + c.Lost + c.ConnErrors
	s := fmt.Sprintf("%.0f / %.0f / %.0f", c.Mismatches, c.Lost, c.ConnErrors)
	if n > 0 {
		s = "**⚠️ " + s + "**"
	}
	if len(c.Failed) > 0 {
		s += fmt.Sprintf(" **⚠️ %d failed run(s)**", len(c.Failed))
	}
	return s
}

// WriteMarkdown renders BENCHMARKS.md.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("# frameloop benchmarks\n\n")
	p("Generated %s by the side-by-side suite in `bench/` (see `bench/README.md`). ",
		r.Generated.UTC().Format("2006-01-02 15:04 MST"))
	p("frameloop is compared with three Go echo servers for the same protocol: ")
	p("`net` (standard library, goroutine per connection, bufio), `gnet` and `nbio` (event loops).\n\n")

	if faults := r.faultLines(); len(faults) > 0 {
		p("> [!CAUTION]\n> **⚠️ CORRECTNESS FAILURES — the figures below are not trustworthy where marked.**\n>\n")
		for _, f := range faults {
			p("> - %s\n", f)
		}
		p("\n")
	}

	p("## Targets\n\n")
	if len(r.Targets) == 0 {
		p("No target could be evaluated from the scenarios run.\n\n")
	} else {
		p("Computed from the medians below. cpu_ratio: lower is better.\n\n")
		p("| target | status | figures |\n|---|---|---|\n")
		for _, t := range r.Targets {
			p("| %s | %s | %s |\n", t.Name, statusMark(t.Status), t.Detail)
		}
		p("\n")
	}

	p("## Machine\n\n")
	m := r.Machine
	p("- CPU: %s, %d logical cores\n", m.CPUModel, m.Cores)
	p("- Kernel: %s\n", m.Kernel)
	p("- Go: %s\n", m.GoVersion)
	for _, mod := range peerModules {
		v := m.Peers[mod]
		if v == "" {
			v = "unknown"
		}
		p("- Peer: `%s` %s\n", mod, v)
	}
	p("- frameloop tree: %s\n", m.FrameloopRev)
	p("- RLIMIT_NOFILE for the servers and the generator: soft %d, hard %d (the suite raises soft to hard)\n", m.NofileSoft, m.NofileHard)
	p("- Ephemeral ports: %s\n\n", m.PortRange)

	p("## Command\n\n```sh\n%s\n```\n\n", r.Command)

	p("## Method\n\n")
	p("- Each server runs pinned to CPU %s (`taskset -c %s`) with `GOMAXPROCS=1` and one event loop ",
		r.Opts.ServerCPUs, r.Opts.ServerCPUs)
	p("(`frameloop serve --loops 1 --max-conns 20000 --idle-timeout 0`, peers `--loops 1`; `net` has no loops: one goroutine per connection). ")
	p("The load generator, `frameloop bench --threads 1`, runs pinned to CPU %s, so server and generator never share a core.\n", r.Opts.LoadgenCPUs)
	p("- Every measurement starts a fresh server on a fresh loopback port, waits for its `listening` line, ")
	p("runs the generator (%s warm-up, then %s measured; closed loop: each connection keeps `pipeline` frames in flight), ",
		r.Opts.Warmup, r.Opts.Duration)
	p("then stops the server (SIGTERM, SIGKILL after a grace period) and checks that it is gone.\n")
	p("- %d run(s). Within a run every server goes through a scenario before the next scenario starts, and the server order rotates from run to run, ",
		r.Opts.Runs)
	p("so slow drift of the machine falls on all servers alike. Each figure is the **median over the runs** (mean of the middle two for an even count).\n")
	p("- **cpu_ratio** = server CPU time per message ÷ generator CPU time per message, both read from `/proc` by the generator over the measured interval. ")
	p("The generator does the same fixed work per message whatever the server, so it is a yardstick measured on the same machine at the same moment: ")
	p("a slower or busier machine (frequency scaling, a noisy neighbour on a shared host) stretches both sides and the ratio stays put. ")
	p("It is therefore the figure to compare across servers and across machines; absolute ns/msg and msgs/s are shown for context. ")
	p("Throughput in a closed loop is bounded by the slower of the two cores, so msgs/s can saturate at the generator's speed while cpu_ratio still tells the servers apart.\n")
	p("- Caveat on cpu_ratio: the generator's cost per message is not entirely independent of the server. A server that answers a pipelined burst in fewer, larger writes ")
	p("lets the generator read more replies per system call, which lowers the denominator and *raises* that server's ratio. ")
	p("The generator CPU ns/msg column shows how much this moved between servers; where it differs widely, read server CPU ns/msg alongside cpu_ratio ")
	p("(the target lines quote both).\n")
	p("- Errors are mismatched replies / replies lost (sent, never answered) / connection errors, summed over the runs; any non-zero value makes the suite exit non-zero.\n")
	p("- S4 opens %d connections that send nothing, holds them %s, and reports the server's RSS growth divided by the connections.\n\n",
		r.Opts.IdleConns, r.Opts.Hold)

	if len(r.Skipped) > 0 {
		p("**Servers not measured:**\n\n")
		for _, s := range r.Skipped {
			p("- %s\n", s)
		}
		p("\n")
	}

	p("## Results\n\n")
	for _, sc := range r.Scenarios {
		p("### %s — %s\n\n", sc.ID, sc.Describe(r.Opts.IdleConns, r.Opts.Hold))
		if sc.Idle {
			p("| server | bytes per idle conn | conns | RSS before | RSS after | runs | mismatches / lost / errors |\n")
			p("|---|--:|--:|--:|--:|--:|---|\n")
			for _, srv := range r.Servers {
				c := r.Cells[sc.ID][srv]
				if c == nil {
					continue
				}
				p("| %s | %s | %s | %s | %s | %d/%d | %s |\n", srv, grouped(c.IdleBytesPerConn), grouped(c.IdleConns),
					mib(c.IdleRSSBefore), mib(c.IdleRSSAfter), c.Runs, len(c.Samples), errorsCell(c))
			}
			p("\n")
			continue
		}
		best := math.Inf(1)
		for _, srv := range r.Servers {
			if c := r.Cells[sc.ID][srv]; usable(c) && c.CPURatio < best {
				best = c.CPURatio
			}
		}
		p("| server | **cpu_ratio** | server CPU ns/msg | generator CPU ns/msg | msgs/s | MB/s | p50 µs | p99 µs | p99.9 µs | runs | mismatches / lost / errors |\n")
		p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
		for _, srv := range r.Servers {
			c := r.Cells[sc.ID][srv]
			if c == nil {
				continue
			}
			ratio := num(c.CPURatio, 3)
			if usable(c) && c.CPURatio == best {
				ratio = "**" + ratio + "**"
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %s |\n", srv, ratio, num(c.ServerNsPerMsg, 0),
				num(c.LoadgenNsPerMsg, 0), grouped(c.MsgsPerSec), num(c.MBPerSec, 1), num(c.P50, 0), num(c.P99, 0), num(c.P999, 0),
				c.Runs, len(c.Samples), errorsCell(c))
		}
		p("\n")
	}

	if len(r.Plots) > 0 || r.PlotErr != "" {
		p("## Plots\n\n")
		for _, f := range r.Plots {
			p("![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
		}
		if r.PlotErr != "" {
			p("Plotting failed: %s\n\n", r.PlotErr)
		}
	}

	if len(r.Notes) > 0 {
		p("## Notes from this run\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}

	p("## Every run\n\n<details><summary>Per-run figures (cpu_ratio, msgs/s, p99 µs; S4: bytes/conn)</summary>\n\n")
	p("| scenario | server | run | cpu_ratio | msgs/s | p99 µs | bytes/idle conn | errors |\n|---|---|--:|--:|--:|--:|--:|---|\n")
	samples := slices.Clone(r.Samples)
	order := func(list []string, v string) int { return slices.Index(list, v) }
	var scIDs []string
	for _, sc := range r.Scenarios {
		scIDs = append(scIDs, sc.ID)
	}
	slices.SortStableFunc(samples, func(a, b Sample) int {
		if d := order(scIDs, a.Scenario) - order(scIDs, b.Scenario); d != 0 {
			return d
		}
		if d := order(r.Servers, a.Server) - order(r.Servers, b.Server); d != 0 {
			return d
		}
		return a.Run - b.Run
	})
	for _, s := range samples {
		if s.Err != "" {
			p("| %s | %s | %d | ⚠️ failed: %s |  |  |  |  |\n", s.Scenario, s.Server, s.Run, mdEscape(s.Err))
			continue
		}
		res := s.Result
		errs := fmt.Sprintf("%.0f / %.0f / %.0f", res.Mismatches, res.Lost, res.ConnErrors)
		if res.Faults() > 0 {
			errs = "**⚠️ " + errs + "**"
		}
		if res.Idle != nil {
			p("| %s | %s | %d |  |  |  | %s | %s |\n", s.Scenario, s.Server, s.Run, grouped(res.Idle.RSSPerConn), errs)
			continue
		}
		p("| %s | %s | %d | %s | %s | %s |  | %s |\n", s.Scenario, s.Server, s.Run, num(res.CPURatio, 3),
			grouped(res.MsgsPerSec), num(res.Latency.P99, 0), errs)
	}
	p("\n</details>\n")

	_, err := io.WriteString(w, b.String())
	return err
}

func mib(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", v/(1<<20))
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
