//go:build linux

// Command tlsbench compares frameloop's TLS 1.3 with Go's net + crypto/tls
// and with nbio's TLS extension, each server on one pinned core: CPU per
// echoed message under two closed loops (S1-TLS, S2-TLS) and the resident
// memory of idle TLS connections (Idle-TLS). It writes a Markdown section
// for BENCHMARKS.md (bench/results/tls.md). See bench/README.md.
//
//	cd bench && go run ./cmd/tlsbench --out results/tls.md
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/frameloop/frameloop/bench/internal/tlscert"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "gen" {
		os.Exit(genMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// genMain is the generator, which the orchestrator runs pinned on its core.
func genMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tlsbench gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := genConfig{WarmupConns: 100, DrainTimeout: 5 * time.Second, ConnectTimeout: 10 * time.Second,
		RSSSettle: time.Second, WarmEnd: 500 * time.Millisecond}
	fs.StringVar(&c.Addr, "addr", "", "server address")
	fs.StringVar(&c.CA, "ca", "", "PEM certificate to trust")
	fs.IntVar(&c.ServerPid, "server-pid", 0, "the server's process id, for its CPU time and RSS")
	fs.IntVar(&c.Conns, "conns", 100, "load: connections")
	fs.IntVar(&c.Pipeline, "pipeline", 1, "load: frames in flight per connection")
	fs.IntVar(&c.Size, "size", 64, "payload bytes")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "load: warm-up")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "load: measured time")
	fs.IntVar(&c.Idle, "idle", 0, "idle mode: connections to open and hold")
	fs.DurationVar(&c.Hold, "hold", 3*time.Second, "idle mode: how long to hold them")
	fs.IntVar(&c.HandshakeParallel, "handshake-parallel", 64, "idle mode: handshakes in flight")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var r Result
	var err error
	if c.Idle > 0 {
		r, err = runIdle(c)
	} else {
		r, err = runLoad(c)
	}
	_ = json.NewEncoder(stdout).Encode(r)
	if err != nil {
		fmt.Fprintln(stderr, "tlsbench gen:", err)
		return 3
	}
	return 0
}

// scenario is one measurement's load.
type scenario struct {
	name            string
	conns, pipeline int // load; 0 for the idle scenario
}

var allScenarios = []scenario{{"S1-TLS", 100, 1}, {"S2-TLS", 100, 32}, {"Idle-TLS", 0, 0}}

var allServers = []string{"frameloop", "net", "nbio"}

type options struct {
	servers          []string
	scenarios        []scenario
	runs, size       int
	idle, hsParallel int
	warmup, duration time.Duration
	hold             time.Duration
	serverCPUs       string
	genCPUs          string
	root, out        string
	readyTimeout     time.Duration
	stopGrace        time.Duration
	args             []string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tlsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	servers := fs.String("servers", strings.Join(allServers, ","), "servers to compare: frameloop, net, nbio")
	scenarios := fs.String("scenarios", "S1-TLS,S2-TLS,Idle-TLS", "scenarios, run in this order")
	fs.IntVar(&o.runs, "runs", 3, "runs; figures are medians over them, the servers' order rotating from run to run")
	fs.IntVar(&o.size, "size", 64, "payload bytes (at least 12)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measurement (not counted)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per server and load scenario")
	fs.IntVar(&o.idle, "idle-conns", 10000, "Idle-TLS: connections opened (handshake and one echo each) and held")
	fs.DurationVar(&o.hold, "hold", 3*time.Second, "Idle-TLS: how long they are held")
	fs.IntVar(&o.hsParallel, "handshake-parallel", 64, "Idle-TLS: handshakes in flight at most")
	fs.StringVar(&o.serverCPUs, "server-cpus", "0", "taskset CPU list for the server")
	fs.StringVar(&o.genCPUs, "gen-cpus", "1", "taskset CPU list for the generator")
	fs.StringVar(&o.root, "frameloop-root", "..", "the frameloop module, whose ./cmd/frameloop is built")
	fs.StringVar(&o.out, "out", "", "write the Markdown report to this file as well as to standard output")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 15*time.Second, "longest wait for a server's 'listening' line")
	fs.DurationVar(&o.stopGrace, "stop-grace", 5*time.Second, "SIGTERM → SIGKILL grace")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.args = args
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tlsbench: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments: %q", fs.Args())
	}
	for _, s := range strings.Split(*servers, ",") {
		if !slices.Contains(allServers, s) {
			return bad("unknown server %q (want frameloop, net, nbio; gnet has no TLS)", s)
		}
		if slices.Contains(o.servers, s) {
			return bad("server %q given twice", s)
		}
		o.servers = append(o.servers, s)
	}
	for _, name := range strings.Split(*scenarios, ",") {
		i := slices.IndexFunc(allScenarios, func(s scenario) bool { return strings.EqualFold(s.name, name) })
		if i < 0 {
			return bad("unknown scenario %q (want S1-TLS, S2-TLS, Idle-TLS)", name)
		}
		if slices.ContainsFunc(o.scenarios, func(s scenario) bool { return s.name == allScenarios[i].name }) {
			return bad("scenario %q given twice", name)
		}
		o.scenarios = append(o.scenarios, allScenarios[i])
	}
	switch {
	case o.runs < 1:
		return bad("--runs must be at least 1")
	case o.size < minPayload || o.size > 1<<20:
		return bad("--size must be between %d and 1048576", minPayload)
	case o.duration <= 0 || o.warmup < 0 || o.hold < 0:
		return bad("--duration must be positive, --warmup and --hold not negative")
	case o.idle < 1 && slices.ContainsFunc(o.scenarios, func(s scenario) bool { return s.conns == 0 }):
		return bad("--idle-conns must be at least 1 for Idle-TLS")
	case o.hsParallel < 1:
		return bad("--handshake-parallel must be at least 1")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		fmt.Fprintln(stderr, "tlsbench: taskset (util-linux) is needed to pin the server and the generator")
		return 1
	}

	tmp, err := os.MkdirTemp("", "tlsbench")
	if err != nil {
		fmt.Fprintln(stderr, "tlsbench:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	certs, err := tlscert.Write(tmp)
	if err != nil {
		fmt.Fprintln(stderr, "tlsbench: making the certificate:", err)
		return 1
	}
	bins := map[string]string{"frameloop": filepath.Join(tmp, "frameloop"), "peer": filepath.Join(tmp, "peer")}
	for _, b := range []struct{ out, dir, pkg string }{
		{bins["frameloop"], o.root, "./cmd/frameloop"},
		{bins["peer"], "", "github.com/frameloop/frameloop/bench/cmd/peer"}, // this module's
	} {
		if b.out == bins["peer"] && !slices.Contains(o.servers, "net") && !slices.Contains(o.servers, "nbio") {
			continue
		}
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(stderr, "tlsbench: building %s in %s: %v\n%s", b.pkg, b.dir, err, out)
			return 1
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "tlsbench:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)

	start := time.Now()
	results := map[string]map[string][]Result{} // scenario → server → runs
	var failures []string
	for r := range o.runs {
		order := slices.Clone(o.servers)
		for range r % len(order) {
			order = append(order[1:], order[0]) // rotate: drift falls on all alike
		}
		for _, sc := range o.scenarios {
			for _, srv := range order {
				res, err := measure(o, sc, srv, bins, certs, self, sig)
				if err != nil {
					msg := fmt.Sprintf("run %d, %s, %s: %v", r+1, sc.name, srv, err)
					failures = append(failures, msg)
					fmt.Fprintln(stderr, "tlsbench: FAILED:", msg)
				}
				if res == nil {
					continue
				}
				fmt.Fprintf(stderr, "run %d %-8s %-9s %s\n", r+1, sc.name, srv, res.line())
				if results[sc.name] == nil {
					results[sc.name] = map[string][]Result{}
				}
				results[sc.name][srv] = append(results[sc.name][srv], *res)
			}
		}
	}
	var buf bytes.Buffer
	report(&buf, o, results, failures, start, time.Now())
	stdout.Write(buf.Bytes())
	if o.out != "" {
		if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
			fmt.Fprintln(stderr, "tlsbench:", err)
			return 1
		}
	}
	if len(failures) > 0 {
		fmt.Fprintf(stderr, "tlsbench: %d measurement(s) FAILED (mismatched, lost or errored messages, or a server that misbehaved):\n  %s\n",
			len(failures), strings.Join(failures, "\n  "))
		return 1
	}
	return 0
}

// measure starts srv on a fresh port, runs the generator for sc and stops
// the server. A result with a failure is returned with the error when the
// generator reported one.
func measure(o options, sc scenario, srv string, bins map[string]string, certs tlscert.Files, self string, sig chan os.Signal) (*Result, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var argv []string
	switch srv {
	case "frameloop":
		argv = []string{bins["frameloop"], "serve", "--addr", addr, "--loops", "1", "--max-conns", "20000", "--idle-timeout", "0",
			"--tls-cert", certs.Cert, "--tls-key", certs.Key, "--tls-min-version", "1.3"}
	default:
		argv = []string{bins["peer"], "--impl", srv, "--addr", addr, "--loops", "1", "--tls-cert", certs.Cert, "--tls-key", certs.Key}
	}
	s, err := startServer(srv, addr, o.serverCPUs, argv, o.readyTimeout)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = s.stop(o.stopGrace)
		}
	}()
	gargs := []string{"-c", o.genCPUs, self, "gen", "--addr", addr, "--ca", certs.Cert, "--server-pid", fmt.Sprint(s.cmd.Process.Pid),
		"--size", fmt.Sprint(o.size)}
	if sc.conns > 0 {
		gargs = append(gargs, "--conns", fmt.Sprint(sc.conns), "--pipeline", fmt.Sprint(sc.pipeline),
			"--warmup", o.warmup.String(), "--duration", o.duration.String())
	} else {
		gargs = append(gargs, "--idle", fmt.Sprint(o.idle), "--hold", o.hold.String(), "--handshake-parallel", fmt.Sprint(o.hsParallel))
	}
	var out, gerr bytes.Buffer
	gen := exec.Command("taskset", gargs...)
	gen.Env = append(os.Environ(), "GOMAXPROCS=1")
	gen.Stdout, gen.Stderr = &out, &gerr
	gen.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := gen.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- gen.Wait() }()
	select {
	case err = <-done:
	case got := <-sig:
		_ = gen.Process.Kill()
		<-done
		_ = s.stop(o.stopGrace)
		fmt.Fprintln(os.Stderr, "tlsbench: interrupted by", got)
		os.Exit(130)
	}
	var r Result
	jerr := json.Unmarshal(out.Bytes(), &r)
	if jerr != nil && err == nil {
		err = fmt.Errorf("generator output: %v", jerr)
	}
	select {
	case <-s.exited:
		err = errors.Join(err, fmt.Errorf("%s exited during the measurement (%v): %s", srv, s.err, s.output()))
	default:
	}
	stopped = true
	if serr := s.stop(o.stopGrace); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		err = fmt.Errorf("%v: %s (server output: %.300s)", err, strings.TrimSpace(gerr.String()), s.output())
	}
	if jerr != nil {
		return nil, err
	}
	return &r, err
}

// line is a run's figures on one line, for the console.
func (r Result) line() string {
	if r.Mode == "idle" {
		return fmt.Sprintf("%d/%d opened in %.2f s (%.0f handshakes/s, server %.0f µs CPU/handshake), RSS %d → %d: %.0f B/conn, %s %s, errors %d",
			r.Opened, r.Conns, r.HandshakeSecs, r.hsRate(), r.hsCPUus(), r.RSSBefore, r.RSSAfter, r.rssPerConn(), r.Version, r.Group, r.Errors+r.Mismatched)
	}
	return fmt.Sprintf("%.0f msgs/s, server %.0f ns/msg (stat %.0f), gen %.0f ns/msg, ratio %.3f, p50 %.0f µs, p99 %.0f µs, mismatched %d lost %d errors %d",
		r.rate(), r.serverNs(), float64(r.ServerStat)/float64(max(r.Msgs, 1)), r.genNs(), r.ratio(), r.P50us, r.P99us, r.Mismatched, r.Lost, r.Errors)
}

func (r Result) rate() float64     { return float64(r.Msgs) / max(r.Seconds, 1e-9) }
func (r Result) serverNs() float64 { return float64(r.ServerCPUns) / float64(max(r.Msgs, 1)) }
func (r Result) genNs() float64    { return float64(r.GenCPUns) / float64(max(r.Msgs, 1)) }
func (r Result) ratio() float64    { return r.serverNs() / max(r.genNs(), 1e-9) }
func (r Result) hsRate() float64   { return float64(r.Opened) / max(r.HandshakeSecs, 1e-9) }
func (r Result) hsCPUus() float64  { return float64(r.ServerHSCPUns) / 1e3 / float64(max(r.Opened, 1)) }
func (r Result) rssPerConn() float64 {
	return float64(r.RSSAfter-r.RSSBefore) / float64(max(r.Opened, 1))
}
