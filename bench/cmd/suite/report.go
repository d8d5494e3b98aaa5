package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	// Appendices are bench/results/*.md, appended verbatim.
	Appendices []Appendix
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
	p("frameloop is compared with a hand-written C echo server for the same protocol, the lower bound ")
	p("(`c`: one thread, level-triggered epoll, `bench/cserver/echo.c`), and three Go echo servers: ")
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
		p("Computed from the medians below (a target needs the medians of at least %d runs). cpu_ratio, CPU per message and latency: lower is better. ", minTargetRuns)
		p("\"Go peers\" are net, gnet and nbio; the C server is the bar S1–S3 are measured against.\n\n")
		p("| target | status | figures |\n|---|---|---|\n")
		for _, t := range r.Targets {
			p("| %s | %s | %s |\n", t.Name, statusMark(t.Status), mdEscape(t.Detail))
		}
		p("\n")
	}

	p("## Machine\n\n")
	m := r.Machine
	p("- CPU: %s, %d logical cores\n", m.CPUModel, m.Cores)
	p("- Kernel: %s\n", m.Kernel)
	p("- Go: %s\n", m.GoVersion)
	p("- C compiler: %s (`cc -O2`)\n", orUnknown(m.CC))
	for _, mod := range peerModules {
		p("- Peer: `%s` %s\n", mod, orUnknown(m.Peers[mod]))
	}
	p("- frameloop tree: %s\n", m.FrameloopRev)
	p("- RLIMIT_NOFILE for the servers and the generator: soft %d, hard %d (the suite raises soft to hard)\n", m.NofileSoft, m.NofileHard)
	p("- Ephemeral ports: %s\n", m.PortRange)
	p("- `net.ipv4.tcp_rmem`: %s; `net.ipv4.tcp_wmem`: %s (min, default, max bytes)\n\n", orUnknown(m.TCPRmem), orUnknown(m.TCPWmem))

	p("## Command\n\n```sh\n%s\n```\n\n", r.Command)

	r.writeMethod(p)

	if len(r.Skipped) > 0 {
		p("**Servers not measured:**\n\n")
		for _, s := range r.Skipped {
			p("- %s\n", s)
		}
		p("\n")
	}

	p("## Results\n\n")
	s5Done := false
	for _, sc := range r.Scenarios {
		switch {
		case sc.Idle:
			p("### %s — %s\n\n", sc.ID, sc.Describe(r.Opts.IdleConns, r.Opts.Hold))
			r.writeIdleTable(p, sc)
		case sc.Group == "S5":
			if !s5Done {
				s5Done = true
				r.writeS5Summary(p)
			}
			p("#### %s — %s\n\n", sc.ID, sc.Describe(r.Opts.IdleConns, r.Opts.Hold))
			r.writeOpenTable(p, sc)
		case sc.Open():
			p("### %s — %s\n\n", sc.ID, sc.Describe(r.Opts.IdleConns, r.Opts.Hold))
			r.writeOpenTable(p, sc)
		default:
			p("### %s — %s\n\n", sc.ID, sc.Describe(r.Opts.IdleConns, r.Opts.Hold))
			r.writeClosedTable(p, sc)
		}
	}

	if slices.ContainsFunc(r.Scenarios, func(sc Scenario) bool { return sc.Idle }) {
		r.writeMemory(p)
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

	r.writeEveryRun(p)

	for _, a := range r.Appendices {
		p("\n<!-- appended verbatim from bench/%s/%s -->\n\n", resultsDir, a.Name)
		b.WriteString(a.Content)
		if !strings.HasSuffix(a.Content, "\n") {
			b.WriteByte('\n')
		}
	}

	_, err := io.WriteString(w, b.String())
	return err
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

type printer func(format string, args ...any)

func (r *Report) writeMethod(p printer) {
	p("## Method\n\n")
	p("- Each server runs pinned to CPU %s (`taskset -c %s`) with `GOMAXPROCS=1` and one event loop ",
		r.Opts.ServerCPUs, r.Opts.ServerCPUs)
	p("(`frameloop serve --loops 1 --max-conns 20000 --idle-timeout 0`, `cserver --addr …` (one thread), peers `--loops 1`; `net` has no loops: one goroutine per connection). ")
	p("The load generator, `frameloop bench --threads %d`, runs pinned to CPU %s, so server and generator never share a core.\n", max(r.Opts.LoadgenThreads, 1), r.Opts.LoadgenCPUs)
	p("- The C server (`bench/cserver/echo.c`, compiled by the suite with `cc -O2`) is the lower bound: one thread, level-triggered epoll, non-blocking sockets, ")
	p("per ready descriptor one `read` into the connection's own 64 KiB buffer and one `write` of every complete frame straight from it; ")
	p("unsent bytes wait with `EPOLLOUT` armed instead of `EPOLLIN`.\n")
	p("- Every measurement starts a fresh server on a fresh loopback port, waits for its `listening` line, ")
	p("runs the generator (%s warm-up, then %s measured), then stops the server (SIGTERM, SIGKILL after a grace period) and checks that it is gone.\n",
		r.Opts.Warmup, r.Opts.Duration)
	p("- Closed loop (S1–S3): each connection keeps `pipeline` frames in flight. Open loop (S5, S6, `--rate`): frame k of connection c is due at a fixed time, ")
	p("sent then or as soon as the connection has fewer than `pipeline` frames in flight, and its latency counts from that intended time, ")
	p("so a stall delays every frame due during it (coordinated omission corrected, as wrk2). ")
	p("The generator's *send lag* (how late it started frames) shows whether it kept up: a lag far below the latency means the time was the server's.\n")
	if slices.ContainsFunc(r.Scenarios, func(sc Scenario) bool { return sc.Group == "S5" }) {
		var ns []string
		for _, sc := range r.Scenarios {
			if sc.Group == "S5" {
				ns = append(ns, grouped(float64(sc.Conns)))
			}
		}
		p("- S5 runs every connection count (%s) at the same total rate, %s frames/s of 64 B (at most %d in flight per connection): ",
			strings.Join(ns, ", "), grouped(r.s5Rate()), s5Pipeline)
		p("each connection sends its share, so more connections mean fewer frames per connection, per wakeup and per read; the figure is the server's CPU per message.\n")
	}
	if slices.ContainsFunc(r.Scenarios, func(sc Scenario) bool { return sc.RateOfS2 > 0 }) {
		p("- S6 offers every server the same open-loop load: half of the lowest msgs/s any server reached in S2 in the same run (closed loop, the same 100 × 32 × 64 B), so at most 50 %% of each server's measured maximum: latency under load, not at saturation. ")
		p("One rate for all, rather than half of each server's own S2 rate, because S2's maximum of the faster servers is the generator's, not theirs, and at half of it the open-loop generator (which spends more per message than the closed loop) fell behind its schedule, adding its own lag to the faster servers' p99 only.\n")
	}
	p("- %d run(s). Within a run every server goes through a scenario before the next scenario starts, and the server order rotates from run to run, ",
		r.Opts.Runs)
	p("so slow drift of the machine falls on all servers alike. Each figure is the **median over the runs** (mean of the middle two for an even count).\n")
	p("- **cpu_ratio** = server CPU time per message ÷ generator CPU time per message, both read from `/proc` by the generator over the measured interval. ")
	p("The generator does the same fixed work per message whatever the server, so it is a yardstick measured on the same machine at the same moment: ")
	p("a slower or busier machine (frequency scaling, a noisy neighbour on a shared host) stretches both sides and the ratio stays put. ")
	p("It is therefore the figure to compare across servers and across machines in closed loop; absolute ns/msg and msgs/s are shown for context. ")
	p("Throughput in a closed loop is bounded by the slower of the two cores, so msgs/s can saturate at the generator's speed while cpu_ratio still tells the servers apart. ")
	p("In open loop the generator's CPU includes its polling for due frames, so only the server's CPU per message is compared there.\n")
	p("- Caveat on cpu_ratio: the generator's cost per message is not entirely independent of the server. A server that answers a pipelined burst in fewer, larger writes ")
	p("lets the generator read more replies per system call, which lowers the denominator and *raises* that server's ratio. ")
	p("The generator CPU ns/msg column shows how much this moved between servers; where it differs widely, read server CPU ns/msg alongside cpu_ratio ")
	p("(the target lines quote both).\n")
	p("- Errors are mismatched replies / replies lost (sent, never answered) / connection errors, summed over the runs; any non-zero value makes the suite exit non-zero.\n")
	p("- S4 opens %d connections that send nothing, holds them %s, and reports the server's RSS growth divided by the connections; ",
		r.Opts.IdleConns, r.Opts.Hold)
	p("meanwhile the suite samples `/proc/net/sockstat` and `/proc/slabinfo` for the kernel's share (see Memory at scale).\n\n")
}

// s5Rate is S5's rate, from the first S5 scenario.
func (r *Report) s5Rate() float64 {
	for _, sc := range r.Scenarios {
		if sc.Group == "S5" {
			return sc.Rate
		}
	}
	return math.NaN()
}

func (r *Report) writeClosedTable(p printer, sc Scenario) {
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

func (r *Report) writeOpenTable(p printer, sc Scenario) {
	p("| server | offered msgs/s | achieved msgs/s | **server CPU ns/msg** | server CPU | p50 µs | **p99 µs** | p99.9 µs | send lag p99 µs | generator CPU | runs | mismatches / lost / errors |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, srv := range r.Servers {
		c := r.Cells[sc.ID][srv]
		if c == nil {
			continue
		}
		achieved := grouped(c.MsgsPerSec)
		if usable(c) && c.Offered > 0 && c.MsgsPerSec < shortfall*c.Offered {
			achieved += " ⚠️"
		}
		p99 := num(c.P99, 0)
		if lagBound(c) {
			p99 += " †"
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %s |\n", srv, grouped(c.Offered), achieved,
			num(c.ServerNsPerMsg, 0), pct(c.ServerUtil), num(c.P50, 0), p99, num(c.P999, 0), num(c.LagP99, 0),
			pct(c.LoadgenUtil), c.Runs, len(c.Samples), errorsCell(c))
	}
	p("\n")
	if sc.Open() {
		p("Server CPU and generator CPU are shares of one core over the measured time; ⚠️ marks an achieved rate below %.0f %% of the offered one; ", 100*shortfall)
		p("† marks a p99 of which the generator's own send lag (p99) is at least half: that latency is the generator's as much as the server's.\n\n")
	}
}

// pct formats a share of one core.
func pct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*v)
}

// writeS5Summary is the S5 overview: CPU per message and p99 by
// connection count, for every server.
func (r *Report) writeS5Summary(p printer) {
	var s5 []Scenario
	for _, sc := range r.Scenarios {
		if sc.Group == "S5" {
			s5 = append(s5, sc)
		}
	}
	p("### S5 — scale with connections: every connection active, open loop at %s msgs/s in all, 64 B\n\n", grouped(r.s5Rate()))
	p("Server CPU ns per message (lower is better), the ratio of the most connections to the fewest, and p99 latency in µs from the intended send times. ")
	p("Per connection count, the full figures follow.\n\n")
	p("| server |")
	for _, sc := range s5 {
		p(" ns/msg @ %s |", grouped(float64(sc.Conns)))
	}
	lo, hi := s5[0], s5[len(s5)-1]
	p(" %s ÷ %s |", grouped(float64(hi.Conns)), grouped(float64(lo.Conns)))
	for _, sc := range s5 {
		p(" p99 µs @ %s |", grouped(float64(sc.Conns)))
	}
	p("\n|---|%s\n", strings.Repeat("--:|", 2*len(s5)+1))
	for _, srv := range r.Servers {
		p("| %s |", srv)
		val := func(sc Scenario, f func(*Cell) float64) float64 {
			if c := r.Cells[sc.ID][srv]; usable(c) {
				return f(c)
			}
			return math.NaN()
		}
		ns := func(c *Cell) float64 { return c.ServerNsPerMsg }
		for _, sc := range s5 {
			p(" %s |", num(val(sc, ns), 0))
		}
		p(" %s |", num(val(hi, ns)/val(lo, ns), 2))
		for _, sc := range s5 {
			p(" %s |", num(val(sc, func(c *Cell) float64 { return c.P99 }), 0))
		}
		p("\n")
	}
	p("\n")
}

func (r *Report) writeIdleTable(p printer, sc Scenario) {
	p("| server | bytes per idle conn | conns | RSS before | RSS after | kernel slab per socket | runs | mismatches / lost / errors |\n")
	p("|---|--:|--:|--:|--:|--:|--:|---|\n")
	for _, srv := range r.Servers {
		c := r.Cells[sc.ID][srv]
		if c == nil {
			continue
		}
		kernel := "–"
		if c.KernelPerSocket > 0 {
			kernel = grouped(c.KernelPerSocket) + " B"
		}
		p("| %s | %s | %s | %s | %s | %s | %d/%d | %s |\n", srv, grouped(c.IdleBytesPerConn), grouped(c.IdleConns),
			mib(c.IdleRSSBefore), mib(c.IdleRSSAfter), kernel, c.Runs, len(c.Samples), errorsCell(c))
	}
	p("\n")
}

// frameloop's per-connection structures, from the engine (see
// sizes_internal_test.go and lifecycle.go at the repository root): a
// table slot per descriptor, the state (allocated 64 at a time, 7,168 B:
// a Go size class, so it costs its size) and the handle (a size class).
const (
	flTableSlot = 8
	flState     = 112
	flHandle    = 48
	flFirstTab  = 1 << 16 // the first table covers min(descriptor limit, 64 Ki) slots
	million     = 1_000_000
)

// writeMemory is the memory-at-scale section: what S4 measured, the
// kernel's share, and frameloop's arithmetic for a million connections.
func (r *Report) writeMemory(p printer) {
	cells := r.Cells["S4"]
	fl := cells[frameloopName]
	p("## Memory at scale\n\n")
	p("S4's figures per idle connection: the server's RSS growth (user space: its own structures and its runtime's), ")
	p("and the kernel's slab memory per socket, which every server pays alike on top. ")
	p("Both ends of every connection are on this machine, so the slab growth is divided by all the sockets opened (about twice the connections).\n\n")
	if fl == nil || !usable(fl) {
		p("No valid frameloop S4 result: no arithmetic.\n\n")
		return
	}
	conns := fl.IdleConns
	k := fl.Kernel
	if k != nil && k.SlabErr == "" && k.Sockets > 0 {
		p("Slab caches that grew by at least half an object per connection during frameloop's S4 (the run nearest the median), %s sockets opened:\n\n", grouped(float64(k.Sockets)))
		p("| slab cache | objects added | bytes each | bytes per socket | note |\n|---|--:|--:|--:|---|\n")
		for _, g := range k.Slab {
			p("| `%s` | %s | %s | %s | %s |\n", g.Name, grouped(float64(g.Grown)), grouped(float64(g.ObjSize)),
				num(float64(g.Bytes())/float64(k.Sockets), 0), g.Note)
		}
		p("| **total** | | | **%s** | |\n\n", num(k.PerSocket(), 0))
		p("Socket buffers: `TCP: mem` in `/proc/net/sockstat` (pages charged to TCP sockets, the whole machine's) moved by %d pages while the connections were held, %s B per socket: ",
			k.MemPages, num(k.BufferPerSocket(), 0))
		p("an upper bound for what the idle sockets hold, since any other TCP traffic on the machine moves it too. ")
		p("The minimums of `tcp_rmem` and `tcp_wmem` (%s / %s) are what a socket keeps under memory pressure once it carries data, not what an idle one holds.\n\n",
			firstField(r.Machine.TCPRmem), firstField(r.Machine.TCPWmem))
	} else if k != nil && k.SlabErr != "" {
		p("The kernel's slab memory could not be read (%s; `/proc/slabinfo` is readable by root only).\n\n", mdEscape(k.SlabErr))
	} else {
		p("The kernel's socket memory was not sampled.\n\n")
	}

	rss := fl.IdleBytesPerConn
	own := float64(flState + flHandle + flTableSlot)
	tableM := float64(nextPow2(million+64) * flTableSlot) // descriptors up to a little above the connections
	p("### frameloop at 1,000,000 connections\n\n")
	p("Measured at %s connections, projected linearly; every line is per connection and for a million.\n\n", grouped(conns))
	p("| part | per connection | 1,000,000 connections |\n|---|--:|--:|\n")
	p("| connection table: 8 B per descriptor slot; the first table covers min(descriptor limit, %s) slots, beyond it doubles, so a million descriptors take %s slots | %.1f B | %s |\n",
		grouped(flFirstTab), grouped(float64(nextPow2(million+64))), tableM/million, bytesIEC(tableM))
	p("| connection state `connState`: %d B, allocated 64 at a time (7,168 B, a Go size class: no rounding) | %d B | %s |\n", flState, flState, bytesIEC(flState*million))
	p("| handle `Conn`: %d B, a Go size class | %d B | %s |\n", flHandle, flHandle, bytesIEC(flHandle*million))
	p("| **frameloop's structures** | **%.1f B** | **%s** |\n", own-flTableSlot+tableM/million, bytesIEC(tableM+float64(flState+flHandle)*million))
	p("| runtime overhead measured by S4: RSS growth − %.0f B (GC metadata, garbage not yet collected, heap pages not yet reused) | %s B | %s |\n",
		own, num(rss-own, 0), bytesIEC((rss-own)*million))
	p("| pools: an idle connection holds no input or output buffer (both are taken from `bufpool` for a read's or a flush's time); per loop, fixed: a 64 KiB read buffer, 1,024 epoll events, a 1,024-entry iovec | 0 B | about 100 KiB per loop |\n")
	p("| **user space, as measured** (S4 RSS per idle connection) | **%s B** | **%s** |\n", num(rss, 0), bytesIEC(rss*million))
	if k != nil && k.PerSocket() > 0 {
		ps := k.PerSocket()
		p("| kernel: slab per socket (above) | %s B | %s |\n", num(ps, 0), bytesIEC(ps*million))
		buf := max(k.BufferPerSocket(), 0)
		p("| kernel: socket buffers while idle (`TCP: mem` above, an upper bound) | ≤ %s B | ≤ %s |\n", num(buf, 0), bytesIEC(buf*million))
		p("| **total for the server's side, idle** | **%s B** | **%s** |\n", num(rss+ps+buf, 0), bytesIEC((rss+ps+buf)*million))
		p("\nThe kernel's share is %.0f× frameloop's at any scale: at a million connections the machine needs about %s for the sockets whatever the server, ",
			ps/rss, bytesIEC(ps*million))
		p("plus, once connections carry data, up to the `tcp_rmem`/`tcp_wmem` minimums per socket under memory pressure (%s + %s B: %s for a million). ",
			firstField(r.Machine.TCPRmem), firstField(r.Machine.TCPWmem), bytesIEC(float64(atoiOr(firstField(r.Machine.TCPRmem))+atoiOr(firstField(r.Machine.TCPWmem)))*million))
		p("A million connections also need a descriptor limit above a million for the server, and, to come from one client machine, ")
		p("several source addresses (about 28,000 ephemeral ports each here).\n\n")
	} else {
		p("\n")
	}
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func atoiOr(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return v
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// bytesIEC formats a byte count in KiB, MiB or GiB.
func bytesIEC(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case math.Abs(v) >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case math.Abs(v) >= 1<<10:
		return fmt.Sprintf("%.0f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

func (r *Report) writeEveryRun(p printer) {
	p("## Every run\n\n<details><summary>Per-run figures (cpu_ratio, msgs/s, server ns/msg, p99 µs; open loop: offered msgs/s; S4: bytes/conn)</summary>\n\n")
	p("| scenario | server | run | cpu_ratio | offered msgs/s | msgs/s | server ns/msg | p99 µs | bytes/idle conn | errors |\n|---|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
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
			p("| %s | %s | %d | ⚠️ failed: %s |  |  |  |  |  |  |\n", s.Scenario, s.Server, s.Run, mdEscape(s.Err))
			continue
		}
		res := s.Result
		errs := fmt.Sprintf("%.0f / %.0f / %.0f", res.Mismatches, res.Lost, res.ConnErrors)
		if res.Faults() > 0 {
			errs = "**⚠️ " + errs + "**"
		}
		if res.Idle != nil {
			p("| %s | %s | %d |  |  |  |  |  | %s | %s |\n", s.Scenario, s.Server, s.Run, grouped(res.Idle.RSSPerConn), errs)
			continue
		}
		offered := ""
		if s.Offered > 0 {
			offered = grouped(s.Offered)
		}
		p("| %s | %s | %d | %s | %s | %s | %s | %s |  | %s |\n", s.Scenario, s.Server, s.Run, num(res.CPURatio, 3), offered,
			grouped(res.MsgsPerSec), num(res.ServerCPUNsPerMsg, 0), num(res.Latency.P99, 0), errs)
	}
	p("\n</details>\n")
}

// resultsDir holds measurements made by other commands (bench/results/*.md),
// which the report appends verbatim, so that they survive regenerating it.
const resultsDir = "results"

// Appendix is one file appended to the report.
type Appendix struct {
	Name    string
	Content string
}

// readAppendices reads dir/*.md sorted by name; a missing dir has none.
func readAppendices(dir string) ([]Appendix, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out []Appendix
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return out, err
		}
		out = append(out, Appendix{Name: filepath.Base(n), Content: string(b)})
	}
	return out, nil
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
