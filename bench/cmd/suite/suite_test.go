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

// open makes an open-loop result: server CPU ns/msg, p99 µs, achieved
// msgs/s; the sample's offered rate is set by add.
func open(ns, p99, msgs float64) Result {
	return Result{MsgsPerSec: msgs, MBPerSec: msgs * 68 / 1e6, CPURatio: ns / 2000, ServerCPUNsPerMsg: ns,
		LoadgenCPUNsPerMsg: 2000, Latency: Latency{P50: p99 / 4, P99: p99, P999: 2 * p99}, DurationS: 10,
		ServerCPUNs: ns * msgs * 10, LoadgenCPUNs: 2000 * msgs * 10, Rate: 100000, SendLagUs: &SendLag{P50: 1, P99: 20, P999: 40, Max: 90}}
}

func idle(perConn float64) Result {
	return Result{Idle: &Idle{Conns: 10000, RSSBeforeBytes: 4 << 20, RSSAfterBytes: 4<<20 + perConn*10000, RSSPerConn: perConn},
		Kernel: &KernelMem{Conns: 10000, Sockets: 20000, Slab: []SlabGrowth{
			{Name: "TCP", Objs: 20000, ObjSize: 2368, Grown: 20000}, {Name: "sock_inode_cache", Objs: 20000, ObjSize: 832, Grown: 20000}}}}
}

// cannedSamples: frameloop meets every target but S2's (1.4 × the C
// server's cpu_ratio) and S6's (gnet's p99 is lower).
func cannedSamples() []Sample {
	var out []Sample
	add := func(sc, srv string, rs ...Result) {
		for i, r := range rs {
			s := Sample{Run: i + 1, Server: srv, Scenario: sc, Result: r}
			if r.Rate > 0 {
				s.Offered = r.Rate
			}
			out = append(out, s)
		}
	}
	add("S1", "frameloop", load(0.50, 100e3), load(0.52, 101e3), load(0.90, 99e3))
	add("S1", "c", load(0.50, 100e3), load(0.51, 101e3), load(0.52, 99e3))
	add("S1", "net", load(1.20, 90e3), load(1.10, 91e3), load(1.30, 92e3))
	add("S1", "gnet", load(0.70, 95e3), load(0.71, 96e3), load(0.69, 97e3))
	add("S2", "frameloop", load(0.20, 900e3), load(0.21, 910e3), load(0.22, 905e3))
	add("S2", "c", load(0.15, 950e3), load(0.15, 950e3), load(0.15, 950e3))
	add("S2", "net", load(0.40, 700e3), load(0.41, 710e3), load(0.42, 705e3))
	add("S2", "gnet", load(0.30, 800e3), load(0.31, 810e3), load(0.32, 805e3))
	add("S3", "frameloop", load(0.30, 200e3), load(0.30, 200e3), load(0.30, 200e3))
	add("S3", "c", load(0.30, 200e3), load(0.30, 200e3), load(0.30, 200e3))
	add("S3", "net", load(0.50, 210e3), load(0.50, 210e3), load(0.50, 210e3))
	add("S3", "gnet", load(0.40, 190e3), load(0.40, 190e3), load(0.40, 190e3))
	add("S4", "frameloop", idle(150), idle(160), idle(170))
	add("S4", "c", idle(4000), idle(4100), idle(4200))
	add("S4", "net", idle(9000), idle(9100), idle(9200))
	add("S4", "gnet", idle(400), idle(410), idle(420))
	add("S5-100", "frameloop", open(1000, 100, 100e3), open(1000, 100, 100e3), open(1000, 100, 100e3))
	add("S5-100", "c", open(800, 90, 100e3), open(800, 90, 100e3), open(800, 90, 100e3))
	add("S5-100", "net", open(2000, 200, 100e3), open(2000, 200, 100e3), open(2000, 200, 100e3))
	add("S5-100", "gnet", open(1100, 150, 100e3), open(1100, 150, 100e3), open(1100, 150, 100e3))
	add("S5-10000", "frameloop", open(1100, 300, 99e3), open(1100, 300, 99e3), open(1100, 300, 99e3))
	add("S5-10000", "c", open(900, 250, 100e3), open(900, 250, 100e3), open(900, 250, 100e3))
	add("S5-10000", "net", open(3000, 900, 90e3), open(3000, 900, 90e3), open(3000, 900, 90e3)) // short of the rate
	add("S5-10000", "gnet", open(1200, 400, 100e3), open(1200, 400, 100e3), open(1200, 400, 100e3))
	add("S6", "frameloop", open(300, 500, 450e3), open(300, 500, 450e3), open(300, 500, 450e3))
	add("S6", "c", open(250, 300, 475e3), open(250, 300, 475e3), open(250, 300, 475e3))
	lagged := open(400, 800, 350e3)
	lagged.SendLagUs = &SendLag{P50: 300, P99: 600, P999: 700, Max: 900} // the generator's, mostly
	add("S6", "net", lagged, lagged, lagged)
	add("S6", "gnet", open(350, 400, 400e3), open(350, 400, 400e3), open(350, 400, 400e3))
	return out
}

// testScenarios is the catalog with S5 at 100 and 10,000 connections.
var testScenarios = catalog([]int{100, 10000}, 100000)

var testServers = []string{"frameloop", "c", "net", "gnet"}

func TestAggregateAndTargets(t *testing.T) {
	cells := aggregate(cannedSamples())
	fl := cells["S1"]["frameloop"]
	if fl.Runs != 3 || fl.CPURatio != 0.52 || fl.MsgsPerSec != 100e3 {
		t.Errorf("S1 frameloop cell: runs %d ratio %v msgs %v", fl.Runs, fl.CPURatio, fl.MsgsPerSec)
	}
	if got := cells["S4"]["net"].IdleBytesPerConn; got != 9100 {
		t.Errorf("S4 net bytes/conn = %v", got)
	}
	if got := cells["S4"]["frameloop"].KernelPerSocket; got != 3200 {
		t.Errorf("S4 kernel bytes per socket = %v, want (2368+832)", got)
	}
	if c := cells["S5-10000"]["frameloop"]; c.Offered != 100000 || c.LagP99 != 20 || math.Abs(c.ServerUtil-0.1089) > 1e-9 {
		t.Errorf("S5-10000 frameloop: offered %v lag %v server use %v", c.Offered, c.LagP99, c.ServerUtil)
	}
	targets := evaluateTargets(cells, testScenarios, testServers)
	want := map[string]string{
		"S1: frameloop's cpu_ratio": statusMet,    // 0.52 vs c 0.51 (1.02×), below gnet 0.70
		"S2: frameloop's cpu_ratio": statusMissed, // 0.21 vs c 0.15: 1.4×
		"S3: frameloop's cpu_ratio": statusMet,    // 0.30 vs 0.30
		"S5: frameloop's CPU":       statusMet,    // 1100 vs 1000 (1.10×), below gnet 1200
		"S6: frameloop's p99":       statusMissed, // 500 µs vs gnet 400
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
		if strings.HasPrefix(tg.Name, "S5") {
			if !strings.Contains(tg.Name, "10,000 busy connections ≤ 1.15 × its own at 100") ||
				!strings.Contains(tg.Detail, "(1.10×)") || !strings.Contains(tg.Detail, "S5-10000 net 90.0k of 100.0k") {
				t.Errorf("S5 target: %s — %s", tg.Name, tg.Detail)
			}
		}
		if strings.HasPrefix(tg.Name, "S6") && !strings.Contains(tg.Detail, "† latency mostly the generator's: S6 net (send lag p99 600 of 800 µs)") {
			t.Errorf("S6 target detail: %s", tg.Detail)
		}
		if strings.HasPrefix(tg.Name, "S2") && !strings.Contains(tg.Detail, "frameloop 0.210 vs c 0.150 (1.40×)") {
			t.Errorf("S2 target detail: %s", tg.Detail)
		}
	}

	// Below every Go peer and within 3 % of c, but from one run only: not
	// evaluated, with the figures.
	samples := []Sample{
		{Run: 1, Server: "frameloop", Scenario: "S1", Result: load(0.66, 1)},
		{Run: 1, Server: "c", Scenario: "S1", Result: load(0.65, 1)},
		{Run: 1, Server: "nbio", Scenario: "S1", Result: load(0.70, 1)},
	}
	tg := evaluateTargets(aggregate(samples), allScenarios[:1], []string{"frameloop", "c", "nbio"})
	if len(tg) != 1 || tg[0].Status != statusNotEval || !strings.Contains(tg[0].Detail, "≥ 3 runs") ||
		!strings.Contains(tg[0].Detail, "frameloop 0.660 vs c 0.650") {
		t.Errorf("one run: %+v, want not evaluated with the figures", tg)
	}
	// Three runs: met; a Go peer below frameloop: missed.
	samples = nil
	for run := 1; run <= 3; run++ {
		samples = append(samples,
			Sample{Run: run, Server: "frameloop", Scenario: "S1", Result: load(0.66, 1)},
			Sample{Run: run, Server: "c", Scenario: "S1", Result: load(0.65, 1)},
			Sample{Run: run, Server: "nbio", Scenario: "S1", Result: load(0.70, 1)})
	}
	tg = evaluateTargets(aggregate(samples), allScenarios[:1], []string{"frameloop", "c", "nbio"})
	if tg[0].Status != statusMet {
		t.Errorf("three runs: %+v, want met", tg)
	}
	for i := range samples {
		if samples[i].Server == "nbio" {
			samples[i].Result = load(0.60, 1)
		}
	}
	tg = evaluateTargets(aggregate(samples), allScenarios[:1], []string{"frameloop", "c", "nbio"})
	if tg[0].Status != statusMissed || !strings.Contains(tg[0].Detail, "not below nbio") {
		t.Errorf("nbio lower: %+v, want missed", tg)
	}

	// No C server, no frameloop, or a faulty frameloop: not evaluated.
	samples = []Sample{{Run: 1, Server: "nbio", Scenario: "S1", Result: load(0.70, 1)}}
	tg = evaluateTargets(aggregate(samples), allScenarios[:1], []string{"nbio"})
	if len(tg) != 1 || tg[0].Status != statusNotEval {
		t.Errorf("without frameloop: %+v", tg)
	}
	samples = append(samples, Sample{Run: 1, Server: "frameloop", Scenario: "S1", Result: load(0.5, 1)})
	tg = evaluateTargets(aggregate(samples), allScenarios[:1], []string{"frameloop", "nbio"})
	if tg[0].Status != statusNotEval || !strings.Contains(tg[0].Detail, "C server") {
		t.Errorf("without c: %+v", tg)
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
	cells := aggregate(samples)
	return &Report{
		Generated: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Command:   commandLine([]string{"--runs", "3"}),
		Machine: Machine{CPUModel: "Test CPU", Cores: 2, Kernel: "6.1.0", GoVersion: "go version go1.26 linux/amd64",
			Peers:      map[string]string{"github.com/panjf2000/gnet/v2": "v2.9.7", "github.com/lesismal/nbio": "v1.6.8"},
			NofileSoft: 20000, NofileHard: 20000, CC: "cc (Test) 12.2.0", TCPRmem: "4096 131072 33554432", TCPWmem: "4096 16384 4194304"},
		Opts:      Options{Duration: 10 * time.Second, Warmup: 2 * time.Second, Runs: 3, ServerCPUs: "0", LoadgenCPUs: "1", IdleConns: 10000, Hold: 3 * time.Second},
		Scenarios: testScenarios,
		Servers:   testServers,
		Samples:   samples,
		Cells:     cells,
		Targets:   evaluateTargets(cells, testScenarios, testServers),
	}
}

func TestReportMarkdown(t *testing.T) {
	r := testReport(cannedSamples())
	r.Appendices = []Appendix{{Name: "a.md", Content: "## MQTT broker\n\n| broker | msgs/s |\n|---|--:|\n| x | 1 |\n"}, {Name: "b.md", Content: "no newline at the end"}}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# frameloop benchmarks",
		"Test CPU, 2 logical cores", "6.1.0", "go1.26", "v2.9.7", "v1.6.8", "hard 20000", "cc (Test) 12.2.0", "`net.ipv4.tcp_rmem`: 4096 131072 33554432",
		"cd bench && go run ./cmd/suite --runs 3",
		"median over the runs", "cpu_ratio", "taskset -c 0", "GOMAXPROCS=1", "bench/cserver/echo.c",
		"### S1 — 100 connections × pipeline 1 × 64 B",
		"### S3 — 8 connections × pipeline 8 × 4000 B",
		"### S4 — 10000 idle connections",
		"### S5 — scale with connections",
		"#### S5-10000 — 10,000 connections all active, open loop at 100,000 msgs/s in all (≤ 16 in flight each), 64 B payloads",
		"### S6 — 100 connections × pipeline 32 × 64 B payloads, open loop at 50 % of the lowest S2 msgs/s of the same run, the same for every server",
		"| c | **0.150** |", // best S2 ratio in bold
		"| net | 9,100 |",   // S4 bytes per conn
		"| frameloop | 160 | 10,000 | 4.0 MiB | 5.5 MiB | 3,200 B |", // S4 with the kernel's share
		"| frameloop | 1000 | 1100 | 1.10 | 100 | 300 |",             // S5 summary
		"| net | 100,000 | 90,000 ⚠️ | 3000 |",                       // short of the rate
		"| frameloop | 100,000 | 100,000 | 1000 | 10 % | 25 | 100 | 200 | 20 | 20 % |",
		"| net | 100,000 | 350,000 | 400 | 14 % | 200 | 800 † | 1600 | 600 |", // S6: lag-bound
		"kernel: socket buffers while idle (`TCP: mem` above, an upper bound) | ≤ 0 B |",
		"## Memory at scale", "| `TCP` | 20,000 | 2,368 | 2368 |", "| **total** | | | **3200** |",
		"### frameloop at 1,000,000 connections",
		"| connection state `connState`: 112 B", "1,048,576 slots | 8.4 B | 8.0 MiB |",
		"| **frameloop's structures** | **168.4 B** | **160.6 MiB** |",
		"| **user space, as measured** (S4 RSS per idle connection) | **160 B** | **152.6 MiB** |",
		"| kernel: slab per socket (above) | 3200 B | 2.98 GiB |",
		"✅ met", "❌ missed",
		"frameloop 0.210 vs c 0.150 (1.40×)",
		"<!-- appended verbatim from bench/results/a.md -->\n\n## MQTT broker\n\n| broker | msgs/s |",
		"<!-- appended verbatim from bench/results/b.md -->\n\nno newline at the end\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if i, j := strings.Index(md, "a.md"), strings.Index(md, "b.md"); i > j || j < strings.Index(md, "## Every run") {
		t.Error("appendices not after the generated sections, in name order")
	}
	if strings.Contains(md, "CORRECTNESS FAILURES") || r.Failed() {
		t.Error("clean data reported as failed")
	}

	// Faults are loud.
	samples := cannedSamples()
	samples[6].Result.Lost = 2 // S1 net, run 1
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

func TestReadAppendices(t *testing.T) {
	dir := t.TempDir()
	if got, err := readAppendices(filepath.Join(dir, "none")); err != nil || len(got) != 0 {
		t.Errorf("missing directory: %v, %v", got, err)
	}
	for name, body := range map[string]string{"mqtt.md": "## MQTT\n", "a.md": "A\n", "notes.txt": "not markdown"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readAppendices(dir)
	if err != nil || len(got) != 2 || got[0].Name != "a.md" || got[1].Name != "mqtt.md" || got[1].Content != "## MQTT\n" {
		t.Errorf("got %+v, %v", got, err)
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
		o.FrameloopRoot != ".." || len(o.Servers) != 5 || len(o.Scenarios) != 8 || o.IdleConns != 10000 ||
		o.S5Rate != 100000 || o.LoadgenThreads != 1 {
		t.Errorf("defaults: %+v", o)
	}
	var ids []string
	for _, sc := range o.Scenarios {
		ids = append(ids, sc.ID)
	}
	if got := strings.Join(ids, ","); got != "S1,S2,S3,S4,S5-100,S5-1000,S5-5000,S6" {
		t.Errorf("default scenarios %s", got)
	}
	o, err = parseFlags([]string{"--servers", "net, gnet,net", "--scenarios", "s4,S2"}, io.Discard)
	if err != nil || strings.Join(o.Servers, ",") != "net,gnet" || len(o.Scenarios) != 2 || o.Scenarios[0].ID != "S2" {
		t.Errorf("lists (run in catalog order): %+v %v", o, err)
	}
	o, err = parseFlags([]string{"--scenarios", "S6,s5,S2", "--s5-conns", "50,500", "--s5-rate", "2000"}, io.Discard)
	ids = nil
	for _, sc := range o.Scenarios {
		ids = append(ids, sc.ID)
	}
	if err != nil || strings.Join(ids, ",") != "S2,S5-50,S5-500,S6" || o.Scenarios[2].Rate != 2000 || o.Scenarios[2].Conns != 500 {
		t.Errorf("S5 group, S6 after S2: %v %v", ids, err)
	}
	if o, err = parseFlags([]string{"--scenarios", "S5-1000"}, io.Discard); err != nil || len(o.Scenarios) != 1 || o.Scenarios[0].Conns != 1000 {
		t.Errorf("one S5 scenario: %+v %v", o.Scenarios, err)
	}
	if _, err := parseFlags([]string{"--scenarios", "S6"}, io.Discard); err == nil || !strings.Contains(err.Error(), "add S2") {
		t.Errorf("S6 without S2: %v", err)
	}
	for _, bad := range [][]string{{"--servers", "nginx"}, {"--scenarios", "S9"}, {"--runs", "0"}, {"extra"}, {"--servers", ","},
		{"--s5-conns", "ten"}, {"--s5-rate", "0"}, {"--loadgen-threads", "0"}, {"--scenarios", "S5-77"}} {
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
	code := m.Run()
	if cBuildDir != "" {
		os.RemoveAll(cBuildDir)
	}
	os.Exit(code)
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
	rate := fs.Float64("rate", 0, "")
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
	msgs := float64(10000 + *pid%1000)
	lag := ""
	if *rate > 0 {
		msgs = *rate
		lag = `,"send_lag_us":{"p50":1,"p99":9,"p999":12,"max":30}`
	}
	fmt.Printf(`{"frames":1000,"bytes":68000,"msgs_per_sec":%.0f,"mb_per_sec":1.5,"latency_us":{"p50":50,"p90":60,"p99":70,"p999":80,"p9999":90,"max":100},"mismatches":%d,"lost":0,"conn_errors":0,"loadgen_cpu_ns":1000000,"loadgen_cpu_ns_per_msg":1000,"server_cpu_ns":%d,"server_cpu_ns_per_msg":%d,"cpu_ratio":%.3f,"duration_s":0.2,"rate":%g%s}`+"\n",
		msgs, mismatches, 500000+*pid%1000, 500+*pid%100, float64(500+*pid%100)/1000, *rate, lag)
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

// requirePinning returns the CPU list for the generator: CPU 1, or CPU 0
// with the server on a machine of one CPU (the figures mean nothing then;
// these tests check the suite's plumbing, not speed).
func requirePinning(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the suite pins with taskset: Linux only")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Fatal("taskset is not installed (util-linux; .ci/run installs it)")
	}
	if testing.Short() {
		t.Skip("builds and runs the peers: skipped with -short")
	}
	if _, n := cpuInfo(); n < 2 {
		return "0"
	}
	return "1"
}

// TestSuiteEndToEnd runs the whole suite (build, pinning, readiness, stop
// checks, report, plots) against the real peers with the stand-in
// generator; frameloop's root is an empty directory, so it must be
// skipped with a clear reason.
func TestSuiteEndToEnd(t *testing.T) {
	lgCPUs := requirePinning(t)
	t.Setenv("SUITE_FAKE_LOADGEN", "ok")
	out := t.TempDir()
	servers := "frameloop,net,nbio,c"
	var stderr bytes.Buffer
	code := realMain([]string{
		"--loadgen-cpus", lgCPUs,
		"--servers", servers, "--scenarios", "S1,S2,S4,S5,S6",
		"--runs", "2", "--duration", "200ms", "--warmup", "100ms",
		"--idle-conns", "200", "--hold", "300ms", "--s5-conns", "2,4", "--s5-rate", "500",
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
	wants := []string{"### S1", "### S2", "### S4", "| net |", "| nbio |", "Servers not measured", "frameloop: go build",
		"➖ not evaluated", "2/2", plotCPURatio, "#### S5-4", "### S6", "| nbio | 500 | 500 |", "| c |"}
	// S6 offers every server half of the lowest S2 msgs/s of the same run:
	// the per-run table has scenario, server, run, cpu_ratio, offered,
	// msgs/s, ...
	rows := map[string][]string{}
	for _, line := range strings.Split(string(md), "\n") {
		if f := strings.Split(line, "|"); len(f) > 7 {
			for i := range f {
				f[i] = strings.TrimSpace(f[i])
			}
			rows[f[1]+" "+f[2]+" "+f[3]] = f
		}
	}
	number := func(s string) float64 {
		v, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
		if err != nil {
			t.Errorf("not a number: %q", s)
		}
		return v
	}
	for _, run := range []string{"1", "2"} {
		lowest := math.Inf(1)
		for key, f := range rows {
			if strings.HasPrefix(key, "S2 ") && strings.HasSuffix(key, " "+run) {
				lowest = min(lowest, number(f[6]))
			}
		}
		for _, srv := range []string{"net", "nbio"} {
			s2, s6 := rows["S2 "+srv+" "+run], rows["S6 "+srv+" "+run]
			if s2 == nil || s6 == nil {
				t.Errorf("no per-run rows for %s run %s", srv, run)
				continue
			}
			if want, got := math.Round(lowest/2), number(s6[5]); got != want {
				t.Errorf("S6 %s run %s offered %v, want half of the run's lowest S2 msgs/s, %v", srv, run, got, lowest)
			}
		}
	}
	for _, want := range wants {
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
	lgCPUs := requirePinning(t)
	t.Setenv("SUITE_FAKE_LOADGEN", "mismatch")
	out := t.TempDir()
	var stderr bytes.Buffer
	code := realMain([]string{
		"--servers", "gnet", "--scenarios", "S1", "--runs", "1", "--duration", "100ms", "--warmup", "0s",
		"--loadgen-cpus", lgCPUs, "--out", out, "--loadgen", os.Args[0],
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
