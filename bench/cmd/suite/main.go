// Command suite benchmarks frameloop side by side with a hand-written C
// epoll echo server (the lower bound; see ../../cserver) and Go peer echo
// servers (net, gnet, nbio; see ../peer) under the same load generator, and
// writes BENCHMARKS.md with plots. Run it from the bench module:
//
//	cd bench && go run ./cmd/suite
//
// Every server runs pinned to one core with GOMAXPROCS=1 and one event loop;
// the generator (`frameloop bench`) runs pinned to another core. The
// headline figure is cpu_ratio, the server's CPU time per message divided
// by the generator's. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options are the suite's settings.
type Options struct {
	Duration, Warmup time.Duration
	Runs             int
	Servers          []string
	Scenarios        []Scenario
	Out              string // directory for BENCHMARKS.md and the plots
	FrameloopRoot    string
	Loadgen          string // optional: a prebuilt generator instead of frameloop's
	ServerCPUs       string
	LoadgenCPUs      string
	IdleConns        int
	Hold             time.Duration
	S5Conns          []int   // S5's connection counts
	S5Rate           float64 // S5's total rate, frames/s
	LoadgenThreads   int     // the generator's --threads
	ReadyTimeout     time.Duration
	StopGrace        time.Duration
	// Framing is frameloop's --framing for the server and the generator;
	// "" is the default, u32le, the only format the peers speak.
	Framing string
}

const benchModule = "github.com/frameloop/frameloop/bench"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the suite; its result is the exit status: 0 all good, 1 a
// failure or a correctness fault, 2 bad flags, 130 interrupted.
func realMain(args []string, stdout, stderr io.Writer) (code int) {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "suite: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	defer killAllChildren()
	defer func() {
		if ctx.Err() != nil && code != 0 {
			code = 130
		}
	}()

	s := &suite{opts: opts, stdout: stdout, stderr: stderr}
	if err := s.run(ctx); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "suite: interrupted; servers and generator stopped")
			return 130
		}
		fmt.Fprintf(stderr, "suite: %v\n", err)
		return 1
	}
	if s.failed {
		fmt.Fprintln(stderr, "suite: FAILED: correctness faults or failed measurements (see above and BENCHMARKS.md)")
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per server and scenario")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "warm-up before each measurement")
	fs.IntVar(&o.Runs, "runs", 3, "runs; each figure is the median over them")
	servers := fs.String("servers", strings.Join(allServers, ","), "servers to compare: "+strings.Join(allServers, ","))
	scenarios := fs.String("scenarios", "S1,S2,S3,S4,S5,S6", "scenarios: S1 100×1×64B, S2 100×32×64B, S3 8×8×4000B, S4 idle connections, "+
		"S5 open loop at a fixed rate over --s5-conns connections (S5-N for one count), S6 S2's load open loop at half the lowest S2 rate of the run (needs S2)")
	fs.StringVar(&o.Out, "out", "..", "directory for BENCHMARKS.md and the PNG plots")
	fs.StringVar(&o.FrameloopRoot, "frameloop-root", "..", "root of the frameloop module (built with go build ./cmd/frameloop)")
	fs.StringVar(&o.Loadgen, "loadgen", "", "use this binary's `bench` subcommand as the load generator instead of the frameloop binary built from --frameloop-root")
	fs.StringVar(&o.ServerCPUs, "server-cpus", "0", "taskset CPU list for the server")
	fs.StringVar(&o.LoadgenCPUs, "loadgen-cpus", "1", "taskset CPU list for the load generator")
	fs.IntVar(&o.IdleConns, "idle-conns", 10000, "S4: idle connections to open")
	fs.DurationVar(&o.Hold, "hold", 3*time.Second, "S4: how long to hold the idle connections")
	s5Conns := fs.String("s5-conns", joinInts(defaultS5Conns), "S5: connection counts, each a scenario S5-N")
	fs.Float64Var(&o.S5Rate, "s5-rate", defaultS5Rate, "S5: total rate over all connections, frames/s")
	fs.IntVar(&o.LoadgenThreads, "loadgen-threads", 1, "the generator's --threads (OS threads; give them CPUs with --loadgen-cpus)")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", 15*time.Second, "longest wait for a server's 'listening' line")
	fs.DurationVar(&o.StopGrace, "stop-grace", 5*time.Second, "wait after SIGTERM before SIGKILL")
	fs.StringVar(&o.Framing, "framing", "", "frameloop's --framing for server and generator (the peers speak only the default, u32le)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Runs < 1 {
		return o, fmt.Errorf("--runs must be at least 1, got %d", o.Runs)
	}
	if o.Duration <= 0 || o.Warmup < 0 || o.Hold <= 0 || o.ReadyTimeout <= 0 || o.StopGrace <= 0 {
		return o, errors.New("--duration, --hold, --ready-timeout and --stop-grace must be positive, --warmup not negative")
	}
	if o.IdleConns < 1 {
		return o, fmt.Errorf("--idle-conns must be at least 1, got %d", o.IdleConns)
	}
	if o.S5Rate <= 0 || math.IsInf(o.S5Rate, 0) || math.IsNaN(o.S5Rate) {
		return o, fmt.Errorf("--s5-rate must be positive, got %v", o.S5Rate)
	}
	if o.LoadgenThreads < 1 {
		return o, fmt.Errorf("--loadgen-threads must be at least 1, got %d", o.LoadgenThreads)
	}
	for _, f := range splitList(*s5Conns) {
		n, err := strconv.Atoi(f)
		if err != nil || n < o.LoadgenThreads {
			return o, fmt.Errorf("--s5-conns: %q is not a connection count (at least --loadgen-threads)", f)
		}
		if !slices.Contains(o.S5Conns, n) {
			o.S5Conns = append(o.S5Conns, n)
		}
	}
	slices.Sort(o.S5Conns)
	known := catalog(o.S5Conns, o.S5Rate)
	for _, name := range splitList(*servers) {
		if !slices.Contains(allServers, name) {
			return o, fmt.Errorf("unknown server %q in --servers (want some of %s)", name, strings.Join(allServers, ","))
		}
		if !slices.Contains(o.Servers, name) {
			o.Servers = append(o.Servers, name)
		}
	}
	want := map[string]bool{}
	for _, id := range splitList(*scenarios) {
		found := false
		for _, sc := range known {
			if strings.EqualFold(sc.ID, id) || (sc.Group != "" && strings.EqualFold(sc.Group, id)) {
				want[sc.ID], found = true, true
			}
		}
		if !found {
			var ids []string
			for _, sc := range known {
				ids = append(ids, sc.ID)
			}
			return o, fmt.Errorf("unknown scenario %q in --scenarios (want some of %s, or S5 for all of S5)", id, strings.Join(ids, ","))
		}
	}
	for _, sc := range known { // in the order they run: S2 before S6
		if want[sc.ID] {
			o.Scenarios = append(o.Scenarios, sc)
		}
	}
	if want["S6"] && !want["S2"] {
		return o, errors.New("S6 runs at half of the lowest S2 msgs/s measured in the same run: add S2 to --scenarios")
	}
	if len(o.Servers) == 0 || len(o.Scenarios) == 0 {
		return o, errors.New("--servers and --scenarios must each name at least one")
	}
	if o.Framing == "u32le" {
		o.Framing = ""
	}
	if o.Framing != "" && !slices.Equal(o.Servers, []string{frameloopName}) {
		return o, fmt.Errorf("--framing %s: the peers speak only u32le; add --servers frameloop", o.Framing)
	}
	return o, nil
}

func joinInts(xs []int) string {
	var out []string
	for _, x := range xs {
		out = append(out, strconv.Itoa(x))
	}
	return strings.Join(out, ",")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// suite is one execution of the benchmark.
type suite struct {
	opts           Options
	stdout, stderr io.Writer

	benchRoot, frameloopRoot, outDir string
	tmp                              string
	frameloopBin, peerBin, loadgen   string
	cBin                             string
	servers                          []string // available, in table order
	skipped, notes                   []string
	failed                           bool
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.stderr, "suite: "+format+"\n", args...)
}

func (s *suite) run(ctx context.Context) error {
	if err := s.locate(); err != nil {
		return err
	}
	if err := s.preflight(ctx); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "frameloop-bench-")
	if err != nil {
		return err
	}
	s.tmp = tmp
	defer os.RemoveAll(tmp)

	if err := s.build(ctx); err != nil {
		return err
	}
	if err := s.checkServers(ctx); err != nil {
		return err
	}
	started := time.Now()
	samples, err := s.measure(ctx)
	if err != nil {
		return err
	}
	s.logf("measurements done in %s", time.Since(started).Round(time.Second))
	return s.writeReport(samples)
}

// locate resolves the module directories and the output directory.
func (s *suite) locate() error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	s.benchRoot, err = findModuleRoot(wd, benchModule)
	if err != nil {
		return err
	}
	if s.frameloopRoot, err = filepath.Abs(s.opts.FrameloopRoot); err != nil {
		return err
	}
	if s.outDir, err = filepath.Abs(s.opts.Out); err != nil {
		return err
	}
	if fi, err := os.Stat(s.outDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("--out %s is not a directory", s.opts.Out)
	}
	return nil
}

// findModuleRoot walks up from dir to the go.mod that declares module.
func findModuleRoot(dir, module string) (string, error) {
	for d := dir; ; {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) == 2 && f[0] == "module" && f[1] == module {
					return d, nil
				}
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("run the suite inside the bench module (%s): no go.mod for it above %s", module, dir)
		}
		d = parent
	}
}

// preflight checks the tools and limits the suite depends on.
func (s *suite) preflight(ctx context.Context) error {
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset not found: install util-linux (it pins the server and the generator to their cores)")
	}
	for _, cpus := range []string{s.opts.ServerCPUs, s.opts.LoadgenCPUs} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(cctx, "taskset", "-c", cpus, "true").CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("cannot pin to CPU %s (this machine has %d): %s", cpus, s.cores(), strings.TrimSpace(string(out)))
		}
	}
	if s.opts.ServerCPUs == s.opts.LoadgenCPUs {
		s.note(fmt.Sprintf("server and generator share CPU %s: cpu_ratio and throughput are distorted", s.opts.ServerCPUs))
	}
	soft, hard, err := raiseNofile()
	if err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE: %v", err)
	}
	s.logf("RLIMIT_NOFILE soft %d, hard %d", soft, hard)
	// The server and the generator each hold one descriptor per
	// connection (each has its own limit); the generator wants 64 more.
	for _, sc := range s.opts.Scenarios {
		n, what := sc.Conns, "connections ("+sc.ID+")"
		if sc.Idle {
			n, what = s.opts.IdleConns, "idle connections (S4): lower --idle-conns"
		}
		if hard < uint64(n)+64 {
			return fmt.Errorf("RLIMIT_NOFILE hard limit %d is too low for %d %s; raise it (ulimit -Hn)", hard, n, what)
		}
	}
	return nil
}

func (s *suite) cores() int {
	_, n := cpuInfo()
	return n
}

func (s *suite) note(msg string) {
	s.logf("note: %s", msg)
	s.notes = append(s.notes, msg)
}

// build compiles the frameloop binary (server and generator) and the peers.
func (s *suite) build(ctx context.Context) error {
	needFrameloop := slices.Contains(s.opts.Servers, frameloopName) || s.opts.Loadgen == ""
	if needFrameloop {
		s.frameloopBin = filepath.Join(s.tmp, "frameloop")
		s.logf("building frameloop from %s", s.frameloopRoot)
		if err := goBuild(ctx, s.frameloopRoot, s.frameloopBin, "./cmd/frameloop"); err != nil {
			s.frameloopBin = ""
			if s.opts.Loadgen == "" {
				return fmt.Errorf("cannot build the load generator (frameloop bench): %v", err)
			}
			s.skip(frameloopName, "go build ./cmd/frameloop failed: "+err.Error())
		}
	}
	s.loadgen = s.frameloopBin
	if s.opts.Loadgen != "" {
		p, err := filepath.Abs(s.opts.Loadgen)
		if err != nil {
			return err
		}
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("--loadgen %s is not an executable file", s.opts.Loadgen)
		}
		s.loadgen = p
		s.note(fmt.Sprintf("load generator: %s (given with --loadgen) instead of the frameloop binary", p))
	}
	if slices.Contains(s.opts.Servers, cName) {
		s.cBin = filepath.Join(s.tmp, "cserver")
		s.logf("building the C server (%s)", strings.Join(cBuildArgv(s.benchRoot, s.cBin), " "))
		if err := buildC(ctx, s.benchRoot, s.cBin); err != nil {
			s.cBin = ""
			s.skip(cName, err.Error())
		}
	}
	if len(goPeers(s.opts.Servers)) > 0 {
		s.peerBin = filepath.Join(s.tmp, "peer")
		s.logf("building peers (net, gnet, nbio) from %s", s.benchRoot)
		if err := goBuild(ctx, s.benchRoot, s.peerBin, "./cmd/peer"); err != nil {
			return fmt.Errorf("cannot build the peers: %v", err)
		}
	}
	return nil
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.SysProcAttr = childAttrs()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	b, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("go build %s in %s: %v", pkg, dir, ctx.Err())
		}
		msg := strings.TrimSpace(string(b))
		lines := strings.Split(msg, "\n")
		if len(lines) > 3 {
			msg = strings.Join(lines[:3], " | ") + fmt.Sprintf(" | … (%d more lines)", len(lines)-3)
		} else {
			msg = strings.Join(lines, " | ")
		}
		return fmt.Errorf("go build %s in %s: %s", pkg, dir, msg)
	}
	return nil
}

// cSource is the C server's source, in the bench module.
const cSource = "cserver/echo.c"

// cBuildArgv is the compiler command line for the C server.
func cBuildArgv(benchRoot, out string) []string {
	return []string{"cc", "-O2", "-Wall", "-o", out, filepath.Join(benchRoot, cSource)}
}

// buildC compiles the C server with the machine's cc.
func buildC(ctx context.Context, benchRoot, out string) error {
	argv := cBuildArgv(benchRoot, out)
	if _, err := exec.LookPath(argv[0]); err != nil {
		return fmt.Errorf("no C compiler: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = childAttrs()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		msg := strings.Join(strings.Split(strings.TrimSpace(string(b)), "\n"), " | ")
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return fmt.Errorf("%s failed (%v): %s", strings.Join(argv, " "), err, msg)
	}
	return nil
}

func (s *suite) skip(server, reason string) {
	msg := fmt.Sprintf("%s: %s", server, reason)
	s.logf("SKIPPING %s", msg)
	s.skipped = append(s.skipped, msg)
}

// serverArgv is the command line of server on addr.
func (s *suite) serverArgv(server, addr string) []string {
	if server == frameloopName {
		argv := []string{s.frameloopBin, "serve", "--loops", "1", "--max-conns", "20000",
			"--idle-timeout", "0", "--addr", addr}
		if s.opts.Framing != "" {
			argv = append(argv, "--framing", s.opts.Framing)
		}
		return argv
	}
	if server == cName {
		return []string{s.cBin, "--addr", addr}
	}
	return []string{s.peerBin, "--impl", server, "--loops", "1", "--addr", addr}
}

// checkServers starts and stops each server once, and leaves out those
// that cannot be run, with the reason.
func (s *suite) checkServers(ctx context.Context) error {
	var ports portPicker
	for _, name := range s.opts.Servers {
		if (name == frameloopName && s.frameloopBin == "") || (name == cName && s.cBin == "") {
			continue // already skipped: did not build
		}
		addr, err := ports.next()
		if err != nil {
			return err
		}
		srv, err := startServer(ctx, name, addr, s.opts.ServerCPUs, s.serverArgv(name, addr), s.opts.ReadyTimeout)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.skip(name, err.Error())
			continue
		}
		if err := srv.stop(s.opts.StopGrace); err != nil {
			s.note(err.Error())
		}
		s.servers = append(s.servers, name)
	}
	if len(s.servers) == 0 {
		return errors.New("no server could be started")
	}
	return nil
}

// measure runs every scenario for every available server, run after run.
func (s *suite) measure(ctx context.Context) ([]Sample, error) {
	var (
		samples []Sample
		ports   portPicker
	)
	total := s.opts.Runs * len(s.opts.Scenarios) * len(s.servers)
	done := 0
	for run := 1; run <= s.opts.Runs; run++ {
		// Rotate the server order from run to run.
		order := append(slices.Clone(s.servers[(run-1)%len(s.servers):]), s.servers[:(run-1)%len(s.servers)]...)
		s2 := map[string]float64{} // this run's S2 msgs/s per server, for S6
		for _, sc := range s.opts.Scenarios {
			for _, name := range order {
				done++
				sample := Sample{Run: run, Server: name, Scenario: sc.ID, Offered: sc.Rate}
				prefix := fmt.Sprintf("[%d/%d] run %d %s %-9s", done, total, run, sc.ID, name)
				if sc.RateOfS2 > 0 {
					base, ok := lowestRate(s2)
					if !ok {
						sample.Err = "no valid S2 result in this run, whose lowest msgs/s sets this scenario's rate"
						s.logf("%s FAILED: %s", prefix, sample.Err)
						samples = append(samples, sample)
						continue
					}
					sample.Offered = math.Round(sc.RateOfS2 * base)
				}
				res, err := s.measureOne(ctx, &ports, name, sc, sample.Offered)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if errors.Is(err, errUsage) {
					return nil, err
				}
				if err != nil {
					sample.Err = err.Error()
					s.logf("%s FAILED: %v", prefix, err)
				} else {
					sample.Result = res
					s.logf("%s %s", prefix, summarize(res))
					if res.Faults() > 0 {
						s.logf("%s ⚠️ CORRECTNESS FAULT: %.0f mismatches, %.0f lost, %.0f connection errors %s",
							prefix, res.Mismatches, res.Lost, res.ConnErrors, res.FirstError)
					} else if sc.ID == "S2" {
						s2[name] = res.MsgsPerSec
					}
				}
				samples = append(samples, sample)
			}
		}
	}
	return samples, nil
}

// lowestRate is the lowest of the run's S2 rates: S6 offers every server
// the same load, a fraction of it. Each server's own S2 maximum would be
// the fairer "50 % of its capacity" on paper, but one generator core caps
// S2 for the faster servers, and an open loop costs the generator more per
// message than a closed one: at half of the fastest servers' S2 rate the
// generator itself fell behind (send lag p99 of tens of milliseconds), so
// the faster a server, the more of the generator's lag its p99 carried.
// One rate for all makes the p99s comparable, and it is at most half of
// every server's measured maximum.
func lowestRate(s2 map[string]float64) (float64, bool) {
	low, ok := 0.0, false
	for _, r := range s2 {
		if !ok || r < low {
			low, ok = r, true
		}
	}
	return low, ok
}

func summarize(r Result) string {
	if r.Idle != nil {
		line := fmt.Sprintf("%.0f B/conn over %.0f idle conns (RSS %.1f → %.1f MiB)",
			r.Idle.RSSPerConn, r.Idle.Conns, r.Idle.RSSBeforeBytes/(1<<20), r.Idle.RSSAfterBytes/(1<<20))
		if k := r.Kernel; k != nil && k.PerSocket() > 0 {
			line += fmt.Sprintf("; kernel slab %.0f B per socket over %d sockets", k.PerSocket(), k.Sockets)
		}
		return line
	}
	if r.Rate > 0 {
		lag := "–"
		if r.SendLagUs != nil {
			lag = fmt.Sprintf("%.0fµs", r.SendLagUs.P99)
		}
		return fmt.Sprintf("%s of %s msgs/s  p50 %.0fµs p99 %.0fµs p99.9 %.0fµs  server %.0f ns/msg  send lag p99 %s",
			fmtRate(r.MsgsPerSec), fmtRate(r.Rate), r.Latency.P50, r.Latency.P99, r.Latency.P999, r.ServerCPUNsPerMsg, lag)
	}
	return fmt.Sprintf("cpu_ratio %.3f  %s msgs/s  %.1f MB/s  p50 %.0fµs p99 %.0fµs  server %.0f ns/msg",
		r.CPURatio, fmtRate(r.MsgsPerSec), r.MBPerSec, r.Latency.P50, r.Latency.P99, r.ServerCPUNsPerMsg)
}

// measureOne starts a fresh server, runs the generator against it, and
// stops it again (checking that it is gone) whatever happened.
func (s *suite) measureOne(ctx context.Context, ports *portPicker, name string, sc Scenario, rate float64) (res Result, err error) {
	addr, err := ports.next()
	if err != nil {
		return res, err
	}
	srv, err := startServer(ctx, name, addr, s.opts.ServerCPUs, s.serverArgv(name, addr), s.opts.ReadyTimeout)
	if err != nil {
		return res, err
	}
	defer func() {
		if stopErr := srv.stop(s.opts.StopGrace); stopErr != nil {
			s.note(fmt.Sprintf("%s %s: %v", sc.ID, name, stopErr))
		}
	}()
	var ks *kernelSampler
	if sc.Idle {
		if ks, err = startKernelSampler(); err != nil {
			s.note(fmt.Sprintf("%s %s: kernel socket memory not sampled: %v", sc.ID, name, err))
		}
	}
	res, err = runLoadgen(ctx, loadgenSpec{
		bin:       s.loadgen,
		cpus:      s.opts.LoadgenCPUs,
		threads:   s.opts.LoadgenThreads,
		addr:      addr,
		serverPID: srv.Pid(),
		sc:        sc,
		rate:      rate,
		duration:  s.opts.Duration,
		warmup:    s.opts.Warmup,
		idleConns: s.opts.IdleConns,
		hold:      s.opts.Hold,
		framing:   s.opts.Framing,
	})
	if ks != nil {
		k, kerr := ks.finish(s.opts.IdleConns)
		switch {
		case kerr != nil:
			s.note(fmt.Sprintf("%s %s: kernel socket memory not sampled: %v", sc.ID, name, kerr))
		case err == nil:
			res.Kernel = k
		}
	}
	if err != nil {
		select {
		case <-srv.exited:
			err = fmt.Errorf("%v; the server had exited (%v): %s", err, srv.waitErr, srv.log.last(2))
		default:
		}
	}
	return res, err
}

// writeReport aggregates the samples and writes BENCHMARKS.md and the plots.
func (s *suite) writeReport(samples []Sample) error {
	r := &Report{
		Generated: time.Now(),
		Command:   commandLine(os.Args[1:]),
		Machine:   collectMachine(s.benchRoot, s.frameloopRoot),
		Opts:      s.opts,
		Scenarios: s.opts.Scenarios,
		Servers:   s.servers,
		Skipped:   s.skipped,
		Samples:   samples,
		Cells:     aggregate(samples),
	}
	var err error
	if r.Appendices, err = readAppendices(filepath.Join(s.benchRoot, resultsDir)); err != nil {
		s.note(fmt.Sprintf("appendices from %s/: %v", resultsDir, err))
	}
	r.Targets = evaluateTargets(r.Cells, r.Scenarios, r.Servers)
	plots, err := writePlots(s.outDir, r)
	r.Plots = plots
	if err != nil {
		r.PlotErr = err.Error()
		s.logf("plotting failed: %v", err)
	}
	r.Notes = s.notes
	var buf strings.Builder
	if err := r.WriteMarkdown(&buf); err != nil {
		return err
	}
	path := filepath.Join(s.outDir, "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte(buf.String()), 0o644); err != nil {
		return fmt.Errorf("writing report: %v", err)
	}
	s.logf("wrote %s", path)
	for _, p := range plots {
		s.logf("wrote %s", filepath.Join(s.outDir, p))
	}
	for _, t := range r.Targets {
		s.logf("target %s: %s (%s)", t.Status, t.Name, t.Detail)
	}
	if faults := r.faultLines(); len(faults) > 0 {
		s.failed = true
		s.logf("⚠️ ⚠️ ⚠️  CORRECTNESS FAULTS / FAILED MEASUREMENTS:")
		for _, f := range faults {
			s.logf("  ⚠️ %s", f)
		}
	}
	if len(s.skipped) > 0 {
		s.logf("servers not measured: %s", strings.Join(s.skipped, "; "))
	}
	return nil
}

// commandLine is the command that reproduces this run.
func commandLine(args []string) string {
	parts := []string{"cd bench && go run ./cmd/suite"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\`*?[]{}()<>|&;") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
