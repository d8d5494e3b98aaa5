package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A canned report in the load generator's JSON contract.
const cannedLoad = `{"frames":1200000,"bytes":81600000,"msgs_per_sec":120000.5,"mb_per_sec":8.16,
 "latency_us":{"p50":800,"p90":900,"p99":1500,"p999":2500,"p9999":4000,"max":9000},
 "mismatches":0,"lost":0,"conn_errors":0,
 "loadgen_cpu_ns":9000000000,"loadgen_cpu_ns_per_msg":7500,
 "server_cpu_ns":6000000000,"server_cpu_ns_per_msg":5000,"cpu_ratio":0.6667,
 "idle":{"conns":0,"rss_before_bytes":0,"rss_after_bytes":0,"rss_per_conn_bytes":0},"mode":"closed"}`

const cannedIdle = `{"frames":0,"bytes":0,"mismatches":0,"lost":0,"conn_errors":0,
 "idle":{"conns":10000,"rss_before_bytes":5242880,"rss_after_bytes":6922880,"rss_per_conn_bytes":168}}`

func TestParseResult(t *testing.T) {
	r, err := parseResult([]byte(cannedLoad), false)
	if err != nil {
		t.Fatal(err)
	}
	if r.MsgsPerSec != 120000.5 || r.Latency.P999 != 2500 || r.CPURatio != 0.6667 || r.ServerCPUNsPerMsg != 5000 || r.Idle != nil {
		t.Errorf("parsed %+v", r)
	}

	// Noise lines around the JSON on stdout are tolerated.
	noisy := "connecting...\n" + strings.ReplaceAll(cannedLoad, "\n", "") + "\n"
	if _, err := parseResult([]byte(noisy), false); err != nil {
		t.Errorf("noisy stdout: %v", err)
	}

	// cpu_ratio left out: derived from the per-message CPU figures.
	var m map[string]any
	_ = json.Unmarshal([]byte(cannedLoad), &m)
	delete(m, "cpu_ratio")
	b, _ := json.Marshal(m)
	r, err = parseResult(b, false)
	if err != nil || math.Abs(r.CPURatio-5000.0/7500) > 1e-9 {
		t.Errorf("derived cpu_ratio = %v, %v", r.CPURatio, err)
	}

	// A missing field the suite relies on is a clear error.
	delete(m, "msgs_per_sec")
	delete(m, "latency_us")
	b, _ = json.Marshal(m)
	if _, err := parseResult(b, false); err == nil || !strings.Contains(err.Error(), "msgs_per_sec") ||
		!strings.Contains(err.Error(), "latency_us.p50") {
		t.Errorf("missing fields: err = %v", err)
	}

	// Not a number.
	if _, err := parseResult([]byte(strings.Replace(cannedLoad, `"lost":0`, `"lost":"none"`, 1)), false); err == nil {
		t.Error("string where a number belongs: no error")
	}
	for _, bad := range []string{"", "usage: frameloop bench ...", "{not json"} {
		if _, err := parseResult([]byte(bad), false); err == nil {
			t.Errorf("stdout %q: no error", bad)
		}
	}

	r, err = parseResult([]byte(cannedIdle), true)
	if err != nil || r.Idle == nil || r.Idle.RSSPerConn != 168 || r.Idle.Conns != 10000 {
		t.Errorf("idle: %+v, %v", r.Idle, err)
	}
	if _, err := parseResult([]byte(cannedLoad), true); err == nil {
		t.Error("idle run with a zeroed idle object: no error")
	}
	m = nil
	_ = json.Unmarshal([]byte(cannedLoad), &m)
	delete(m, "idle")
	b, _ = json.Marshal(m)
	if _, err := parseResult(b, true); err == nil {
		t.Error("idle run without the idle object: no error")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

// load makes a load-scenario result.
func load(ratio, msgs float64) Result {
	return Result{MsgsPerSec: msgs, MBPerSec: msgs * 68 / 1e6, CPURatio: ratio, ServerCPUNsPerMsg: ratio * 1000,
		LoadgenCPUNsPerMsg: 1000, Latency: Latency{P50: 100, P99: 200, P999: 300}}
}

func idle(perConn float64) Result {
	return Result{Idle: &Idle{Conns: 10000, RSSBeforeBytes: 4 << 20, RSSAfterBytes: 4<<20 + perConn*10000, RSSPerConn: perConn}}
}

// cannedSamples: frameloop meets every target except S3 throughput.
func cannedSamples() []Sample {
	var out []Sample
	add := func(sc, srv string, rs ...Result) {
		for i, r := range rs {
			out = append(out, Sample{Run: i + 1, Server: srv, Scenario: sc, Result: r})
		}
	}
	add("S1", "frameloop", load(0.50, 100e3), load(0.52, 101e3), load(0.90, 99e3))
	add("S1", "net", load(1.20, 90e3), load(1.10, 91e3), load(1.30, 92e3))
	add("S1", "gnet", load(0.70, 95e3), load(0.71, 96e3), load(0.69, 97e3))
	add("S2", "frameloop", load(0.20, 900e3), load(0.21, 910e3), load(0.22, 905e3))
	add("S2", "net", load(0.40, 700e3), load(0.41, 710e3), load(0.42, 705e3))
	add("S2", "gnet", load(0.30, 800e3), load(0.31, 810e3), load(0.32, 805e3))
	add("S3", "frameloop", load(0.30, 200e3), load(0.30, 200e3), load(0.30, 200e3))
	add("S3", "net", load(0.50, 210e3), load(0.50, 210e3), load(0.50, 210e3))
	add("S3", "gnet", load(0.40, 190e3), load(0.40, 190e3), load(0.40, 190e3))
	add("S4", "frameloop", idle(150), idle(160), idle(170))
	add("S4", "net", idle(9000), idle(9100), idle(9200))
	add("S4", "gnet", idle(400), idle(410), idle(420))
	return out
}

func TestAggregateAndTargets(t *testing.T) {
	cells := aggregate(cannedSamples())
	fl := cells["S1"]["frameloop"]
	if fl.Runs != 3 || fl.CPURatio != 0.52 || fl.MsgsPerSec != 100e3 {
		t.Errorf("S1 frameloop cell: runs %d ratio %v msgs %v", fl.Runs, fl.CPURatio, fl.MsgsPerSec)
	}
	if got := cells["S4"]["net"].IdleBytesPerConn; got != 9100 {
		t.Errorf("S4 net bytes/conn = %v", got)
	}
	targets := evaluateTargets(cells, allScenarios, []string{"frameloop", "net", "gnet"})
	want := map[string]string{
		"S1: frameloop's cpu_ratio": statusMet,    // 0.52 vs gnet 0.70: 0.74×
		"S2: frameloop's cpu_ratio": statusMet,    // 0.21 vs 0.31
		"S3: frameloop's cpu_ratio": statusMet,    // 0.30 vs 0.40: 0.75×
		"S2: frameloop's msgs/s":    statusMet,    // 905k vs 805k, 705k
		"S3: frameloop's msgs/s":    statusMissed, // 200k < net 210k
		"S4: frameloop ≤ 192 B":     statusMet,    // 160
	}
	if len(targets) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(targets), len(want), targets)
	}
	for _, tg := range targets {
		found := false
		for prefix, status := range want {
			if strings.HasPrefix(tg.Name, prefix) {
				found = true
				if tg.Status != status {
					t.Errorf("%s: %s (%s), want %s", tg.Name, tg.Status, tg.Detail, status)
				}
			}
		}
		if !found {
			t.Errorf("unexpected target %q", tg.Name)
		}
	}

	// Lowest but not by 10%: missed.
	samples := []Sample{
		{Run: 1, Server: "frameloop", Scenario: "S1", Result: load(0.66, 1)},
		{Run: 1, Server: "nbio", Scenario: "S1", Result: load(0.70, 1)},
	}
	tg := evaluateTargets(aggregate(samples), allScenarios[:1], []string{"frameloop", "nbio"})
	if len(tg) != 1 || tg[0].Status != statusMissed {
		t.Errorf("0.66 vs 0.70: %+v, want missed", tg)
	}

	// No frameloop, or a faulty frameloop: not evaluated.
	samples = []Sample{{Run: 1, Server: "nbio", Scenario: "S1", Result: load(0.70, 1)}}
	tg = evaluateTargets(aggregate(samples), allScenarios[:1], []string{"nbio"})
	if len(tg) != 1 || tg[0].Status != statusNotEval {
		t.Errorf("without frameloop: %+v", tg)
	}
	bad := load(0.1, 1)
	bad.Mismatches = 1
	samples = append(samples, Sample{Run: 1, Server: "frameloop", Scenario: "S1", Result: bad})
	tg = evaluateTargets(aggregate(samples), allScenarios[:1], []string{"frameloop", "nbio"})
	if tg[0].Status != statusNotEval {
		t.Errorf("faulty frameloop: %+v, want not evaluated", tg)
	}
}

func testReport(samples []Sample) *Report {
	servers := []string{"frameloop", "net", "gnet"}
	cells := aggregate(samples)
	return &Report{
		Generated: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Command:   commandLine([]string{"--runs", "3"}),
		Machine: Machine{CPUModel: "Test CPU", Cores: 2, Kernel: "6.1.0", GoVersion: "go version go1.26 linux/amd64",
			Peers:      map[string]string{"github.com/panjf2000/gnet/v2": "v2.9.7", "github.com/lesismal/nbio": "v1.6.8"},
			NofileSoft: 20000, NofileHard: 20000},
		Opts:      Options{Duration: 10 * time.Second, Warmup: 2 * time.Second, Runs: 3, ServerCPUs: "0", LoadgenCPUs: "1", IdleConns: 10000, Hold: 3 * time.Second},
		Scenarios: allScenarios,
		Servers:   servers,
		Samples:   samples,
		Cells:     cells,
		Targets:   evaluateTargets(cells, allScenarios, servers),
	}
}

func TestReportMarkdown(t *testing.T) {
	r := testReport(cannedSamples())
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# frameloop benchmarks",
		"Test CPU, 2 logical cores", "6.1.0", "go1.26", "v2.9.7", "v1.6.8", "hard 20000",
		"cd bench && go run ./cmd/suite --runs 3",
		"median over the runs", "cpu_ratio", "taskset -c 0", "GOMAXPROCS=1",
		"### S1 — 100 connections × pipeline 1 × 64 B",
		"### S3 — 8 connections × pipeline 8 × 4000 B",
		"### S4 — 10000 idle connections",
		"| frameloop | **0.520** |", // best ratio in bold
		"| net | 9,100 |",           // S4 bytes per conn
		"✅ met", "❌ missed",
		"frameloop 0.520 vs best peer gnet 0.700 (0.74×)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "CORRECTNESS FAILURES") || r.Failed() {
		t.Error("clean data reported as failed")
	}

	// Faults are loud.
	samples := cannedSamples()
	samples[3].Result.Lost = 2
	samples = append(samples, Sample{Run: 4, Server: "gnet", Scenario: "S2", Err: "load generator failed (exit status 1): boom"})
	r = testReport(samples)
	b.Reset()
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md = b.String()
	if !r.Failed() {
		t.Error("faulty data not reported as failed")
	}
	for _, want := range []string{"CORRECTNESS FAILURES", "S1 net: 0 mismatches, 2 lost", "S2 gnet: measurement failed, run 4", "**⚠️ 0 / 2 / 0**"} {
		if !strings.Contains(md, want) {
			t.Errorf("faulty report lacks %q", want)
		}
	}
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	files, err := writePlots(dir, testReport(cannedSamples()))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0] != plotCPURatio || files[1] != plotThroughput {
		t.Fatalf("files = %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 1000 || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s: not a PNG (%d bytes)", f, len(b))
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 10*time.Second || o.Warmup != 2*time.Second || o.Runs != 3 || o.Out != ".." ||
		o.FrameloopRoot != ".." || len(o.Servers) != 4 || len(o.Scenarios) != 4 || o.IdleConns != 10000 {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"--servers", "net, gnet,net", "--scenarios", "s2,S4"}, io.Discard)
	if err != nil || strings.Join(o.Servers, ",") != "net,gnet" || len(o.Scenarios) != 2 || o.Scenarios[0].ID != "S2" {
		t.Errorf("lists: %+v %v", o, err)
	}
	for _, bad := range [][]string{{"--servers", "nginx"}, {"--scenarios", "S9"}, {"--runs", "0"}, {"extra"}, {"--servers", ","}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); err != flag.ErrHelp {
		t.Errorf("-h: %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"--servers", "net,gnet", "--out", "/tmp/a b"})
	want := "cd bench && go run ./cmd/suite --servers net,gnet --out '/tmp/a b'"
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// ---- End to end, with a stand-in load generator ----------------------------

// TestMain lets the test binary act as a stand-in `frameloop bench`: it
// checks real echoes from the server, measures the server's real RSS for
// idle runs, and reports canned load figures (with mismatches if asked).
func TestMain(m *testing.M) {
	if mode := os.Getenv("SUITE_FAKE_LOADGEN"); mode != "" && len(os.Args) > 1 && os.Args[1] == "bench" {
		os.Exit(fakeLoadgen(mode, os.Args[2:]))
	}
	os.Exit(m.Run())
}

func fakeLoadgen(mode string, args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	jsonOut := fs.Bool("json", false, "")
	fs.Int("threads", 1, "")
	pid := fs.Int("server-pid", 0, "")
	addr := fs.String("addr", "", "")
	conns := fs.Int("conns", 0, "")
	fs.Int("pipeline", 0, "")
	size := fs.Int("size", 0, "")
	fs.Duration("duration", 0, "")
	fs.Duration("warmup", 0, "")
	idleN := fs.Int("idle", 0, "")
	hold := fs.Duration("hold", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*jsonOut || *pid == 0 || *addr == "" {
		fmt.Fprintln(os.Stderr, "fake loadgen: --json, --server-pid and --addr are required")
		return 2
	}
	if *idleN > 0 {
		before := rss(*pid)
		var cs []net.Conn
		for range *idleN {
			c, err := net.Dial("tcp", *addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "fake loadgen:", err)
				return 1
			}
			cs = append(cs, c)
		}
		time.Sleep(*hold)
		after := rss(*pid)
		for _, c := range cs {
			c.Close()
		}
		fmt.Printf(`{"frames":0,"bytes":0,"mismatches":0,"lost":0,"conn_errors":0,"idle":{"conns":%d,"rss_before_bytes":%d,"rss_after_bytes":%d,"rss_per_conn_bytes":%d}}`+"\n",
			*idleN, before, after, (after-before)/int64(*idleN))
		return 0
	}
	// One real echo per connection asked for (at most 4), to be sure the
	// suite pointed us at a live server.
	mismatches := 0
	for range min(*conns, 4) {
		c, err := net.DialTimeout("tcp", *addr, 2*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake loadgen:", err)
			return 1
		}
		msg := binary.LittleEndian.AppendUint32(nil, uint32(*size))
		msg = append(msg, bytes.Repeat([]byte{'x'}, *size)...)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			mismatches++
		}
		c.Close()
	}
	if mode == "mismatch" {
		mismatches += 3
	}
	fmt.Println("warming up") // noise on stdout, as a lenient parser must bear
	fmt.Printf(`{"frames":1000,"bytes":68000,"msgs_per_sec":%d,"mb_per_sec":1.5,"latency_us":{"p50":50,"p90":60,"p99":70,"p999":80,"p9999":90,"max":100},"mismatches":%d,"lost":0,"conn_errors":0,"loadgen_cpu_ns":1000000,"loadgen_cpu_ns_per_msg":1000,"server_cpu_ns":%d,"server_cpu_ns_per_msg":%d,"cpu_ratio":%.3f}`+"\n",
		10000+*pid%1000, mismatches, 500000+*pid%1000, 500+*pid%100, float64(500+*pid%100)/1000)
	return 0
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func requirePinning(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the suite pins with taskset: Linux only")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset not installed")
	}
	if _, n := cpuInfo(); n < 2 {
		t.Skip("needs 2 CPUs")
	}
	if testing.Short() {
		t.Skip("builds and runs the peers: skipped with -short")
	}
}

// TestSuiteEndToEnd runs the whole suite (build, pinning, readiness, stop
// checks, report, plots) against the real peers with the stand-in
// generator; frameloop's root is an empty directory, so it must be
// skipped with a clear reason.
func TestSuiteEndToEnd(t *testing.T) {
	requirePinning(t)
	t.Setenv("SUITE_FAKE_LOADGEN", "ok")
	out := t.TempDir()
	var stderr bytes.Buffer
	code := realMain([]string{
		"--servers", "frameloop,net,nbio", "--scenarios", "S1,S2,S4",
		"--runs", "2", "--duration", "200ms", "--warmup", "100ms",
		"--idle-conns", "200", "--hold", "300ms",
		"--out", out, "--frameloop-root", t.TempDir(), "--loadgen", os.Args[0],
	}, io.Discard, &stderr)
	log := stderr.String()
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, log)
	}
	if !strings.Contains(log, "SKIPPING frameloop: go build ./cmd/frameloop failed") {
		t.Errorf("frameloop not skipped with a clear reason:\n%s", log)
	}
	md, err := os.ReadFile(filepath.Join(out, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### S1", "### S2", "### S4", "| net |", "| nbio |", "Servers not measured", "frameloop: go build",
		"➖ not evaluated", "2/2", plotCPURatio} {
		if !strings.Contains(string(md), want) {
			t.Errorf("BENCHMARKS.md lacks %q", want)
		}
	}
	if strings.Contains(string(md), "CORRECTNESS") {
		t.Errorf("clean run reported faults:\n%s", md)
	}
	for _, f := range []string{plotCPURatio, plotThroughput} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// S4 RSS was measured on the real server process.
	cells := strings.Split(string(md), "### S4")[1]
	if !strings.Contains(cells, "MiB") {
		t.Errorf("S4 table lacks RSS figures:\n%s", cells)
	}
}

// TestSuiteFaultsFail checks that mismatches make the suite exit non-zero
// and are shown loudly.
func TestSuiteFaultsFail(t *testing.T) {
	requirePinning(t)
	t.Setenv("SUITE_FAKE_LOADGEN", "mismatch")
	out := t.TempDir()
	var stderr bytes.Buffer
	code := realMain([]string{
		"--servers", "gnet", "--scenarios", "S1", "--runs", "1", "--duration", "100ms", "--warmup", "0s",
		"--out", out, "--loadgen", os.Args[0],
	}, io.Discard, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "CORRECTNESS FAULT") {
		t.Errorf("stderr does not shout:\n%s", stderr.String())
	}
	md, _ := os.ReadFile(filepath.Join(out, "BENCHMARKS.md"))
	if !strings.Contains(string(md), "CORRECTNESS FAILURES") || !strings.Contains(string(md), "S1 gnet: 3 mismatches") {
		t.Errorf("report does not shout:\n%s", md)
	}
}
