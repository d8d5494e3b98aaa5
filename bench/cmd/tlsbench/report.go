//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func med(rs []Result, f func(Result) float64) float64 {
	xs := make([]float64, 0, len(rs))
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	return median(xs)
}

// machine describes where the figures were measured.
func machine(o options) []string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	var nofile syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	mods := "unknown"
	if out, err := exec.Command("go", "list", "-m", "-f", "{{.Path}} {{.Version}}", "github.com/lesismal/nbio", "github.com/lesismal/llib").Output(); err == nil {
		mods = strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", ", ")
	}
	commit := "unknown"
	if out, err := exec.Command("git", "-C", o.root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", o.root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			commit += " (with uncommitted changes)"
		}
	}
	return []string{
		fmt.Sprintf("CPU: %s, %d CPUs; kernel %s; %s", model, runtime.NumCPU(), kernel, runtime.Version()),
		fmt.Sprintf("frameloop at commit %s; peers: %s", commit, mods),
		fmt.Sprintf("RLIMIT_NOFILE hard limit %d (each process raises its soft limit to it)", nofile.Max),
	}
}

// report writes the Markdown section.
func report(w io.Writer, o options, results map[string]map[string][]Result, failures []string, start, end time.Time) {
	fmt.Fprintln(w, "## TLS 1.3: frameloop beside net + crypto/tls and nbio")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Measured by `bench/cmd/tlsbench` from %s to %s UTC.\n\n", start.UTC().Format("2006-01-02 15:04"), end.UTC().Format("15:04"))
	for _, l := range machine(o) {
		fmt.Fprintf(w, "- %s\n", l)
	}
	fmt.Fprintf(w, "- command: `cd bench && go run ./cmd/tlsbench %s`\n", strings.Join(o.args, " "))
	fmt.Fprintln(w)
	fmt.Fprintf(w, `**Method.** Each server in turn, a fresh process per measurement on a free loopback port, pinned with
`+"`taskset -c %s`"+`, `+"`GOMAXPROCS=1`"+`, one loop; TLS 1.3 only, with a self-signed ECDSA P-256 certificate made
at run time: frameloop `+"`serve --loops 1 --max-conns 20000 --idle-timeout 0 --tls-cert … --tls-key … --tls-min-version 1.3`"+`
(crypto/tls on the event loop, handshakes on its bounded pool); **net**: `+"`peer --impl net`"+` with `+"`tls.Server`"+` on
each accepted connection, a goroutine and 64 KiB bufio reader and writer per connection; **nbio**: `+"`peer --impl nbio`"+`
with nbio's fork of crypto/tls (github.com/lesismal/llib), handshake and records on the poller. gnet has no TLS
and is left out. The generator (`+"`tlsbench gen`"+`, pinned with `+"`taskset -c %s`"+`, `+"`GOMAXPROCS=1`"+`) is Go's crypto/tls
client, TLS 1.3, crypto/tls's default key exchange groups, one goroutine per connection: a closed loop in which each
connection keeps P frames of %d B in flight and, when replies arrive, sends as many new frames in one write; every reply
is checked byte for byte and in order (sequence number, connection id, content). Warm-up %v, then %v measured.
**Server CPU** is the time its threads spent on a CPU over the measured window (sum of `+"`/proc/PID/task/*/schedstat`"+`,
nanoseconds); `+"`utime+stime`"+` from `+"`/proc/PID/stat`"+` agrees to its 10 ms tick (see every run's figures on the console).
**Generator CPU** is its `+"`getrusage(RUSAGE_SELF)`"+` over the same window. **cpu_ratio** = server CPU per message ÷
generator CPU per message. %d runs, the order of the servers rotating from run to run; the figures are medians.
**Idle-TLS** follows the suite's S4: %d connections are opened, echoed and closed, and 0.5 s later the server's VmRSS
is the baseline; then %d connections are opened, at most %d handshakes in flight, each completing its handshake
(`+"`HandshakeContext`"+`) and echoing one frame; 1 s after the last one the VmRSS is read again, and the connections are
held %v in all. Reported: (RSS after − baseline) ÷ connections, how long the opening took, and the server's CPU
time over it per connection (handshake + one echo + accept).

`, o.serverCPUs, o.genCPUs, o.size, o.warmup, o.duration, o.runs, 100, o.idle, o.hsParallel, o.hold)

	load := false
	for _, sc := range o.scenarios {
		if sc.conns > 0 {
			load = true
		}
	}
	if load {
		fmt.Fprintln(w, "| scenario | server | msgs/s | server CPU ns/msg | generator CPU ns/msg | cpu_ratio | p50 µs | p99 µs | p99.9 µs | mismatched / lost / errors | runs |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|")
		for _, sc := range o.scenarios {
			if sc.conns == 0 {
				continue
			}
			for _, srv := range o.servers {
				rs := results[sc.name][srv]
				if len(rs) == 0 {
					fmt.Fprintf(w, "| %s (%d × P%d) | %s | — | — | — | — | — | — | — | failed | 0 |\n", sc.name, sc.conns, sc.pipeline, srv)
					continue
				}
				var bad [3]int64
				for _, r := range rs {
					bad[0], bad[1], bad[2] = bad[0]+r.Mismatched, bad[1]+r.Lost, bad[2]+r.Errors
				}
				fmt.Fprintf(w, "| %s (%d × P%d) | %s | %.0f | %.0f | %.0f | **%.3f** | %.0f | %.0f | %.0f | %d / %d / %d | %d |\n",
					sc.name, sc.conns, sc.pipeline, srv,
					med(rs, Result.rate), med(rs, Result.serverNs), med(rs, Result.genNs), med(rs, Result.ratio),
					med(rs, func(r Result) float64 { return r.P50us }), med(rs, func(r Result) float64 { return r.P99us }),
					med(rs, func(r Result) float64 { return r.P999us }), bad[0], bad[1], bad[2], len(rs))
			}
		}
		fmt.Fprintln(w)
	}
	if idle := results["Idle-TLS"]; idle != nil {
		fmt.Fprintf(w, "| Idle-TLS | server | connections | RSS B/conn | opening took s | handshakes/s | server CPU µs/conn opened | TLS | errors | runs |\n")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|---|--:|--:|")
		for _, srv := range o.servers {
			rs := idle[srv]
			if len(rs) == 0 {
				fmt.Fprintf(w, "| Idle-TLS | %s | — | — | — | — | — | — | failed | 0 |\n", srv)
				continue
			}
			var bad int64
			for _, r := range rs {
				bad += r.Errors + r.Mismatched
			}
			fmt.Fprintf(w, "| Idle-TLS | %s | %d | **%.0f** | %.2f | %.0f | %.0f | %s, %s, %s | %d | %d |\n", srv, rs[0].Conns,
				med(rs, Result.rssPerConn), med(rs, func(r Result) float64 { return r.HandshakeSecs }), med(rs, Result.hsRate),
				med(rs, Result.hsCPUus), rs[0].Version, rs[0].Group, rs[0].Cipher, bad, len(rs))
		}
		fmt.Fprintln(w)
	}

	targets(w, o, results)

	if len(failures) > 0 {
		fmt.Fprintln(w, "**FAILED measurements** (left out of the medians):")
		fmt.Fprintln(w)
		for _, f := range failures {
			fmt.Fprintf(w, "- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "<details><summary>Every run</summary>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | server | run | figures |")
	fmt.Fprintln(w, "|---|---|--:|---|")
	for _, sc := range o.scenarios {
		for _, srv := range o.servers {
			for i, r := range results[sc.name][srv] {
				fmt.Fprintf(w, "| %s | %s | %d | %s |\n", sc.name, srv, i+1, r.line())
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
	fmt.Fprintln(w)
}

// targets writes issue 12's targets for frameloop against net + crypto/tls.
func targets(w io.Writer, o options, results map[string]map[string][]Result) {
	type row struct{ target, figures, verdict string }
	var rows []row
	verdict := func(ok bool, n int) string {
		if n < 3 {
			return "not evaluated (fewer than 3 runs)"
		}
		if ok {
			return "✅ met"
		}
		return "❌ missed"
	}
	runs := func(rs ...[]Result) int {
		n := o.runs
		for _, r := range rs {
			n = min(n, len(r))
		}
		return n
	}
	if idle := results["Idle-TLS"]; idle != nil && len(idle["frameloop"]) > 0 && len(idle["net"]) > 0 {
		f, n := med(idle["frameloop"], Result.rssPerConn), med(idle["net"], Result.rssPerConn)
		rows = append(rows, row{"idle TLS connection memory ≤ ¼ of net + crypto/tls's",
			fmt.Sprintf("frameloop %.0f B/conn vs net %.0f B/conn: %.2f×", f, n, f/n), verdict(f <= n/4, runs(idle["frameloop"], idle["net"]))})
	}
	for _, sc := range o.scenarios {
		rs := results[sc.name]
		if sc.conns == 0 || rs == nil || len(rs["frameloop"]) == 0 || len(rs["net"]) == 0 {
			continue
		}
		fns, nns := med(rs["frameloop"], Result.serverNs), med(rs["net"], Result.serverNs)
		fr, nr := med(rs["frameloop"], Result.ratio), med(rs["net"], Result.ratio)
		rows = append(rows, row{sc.name + ": server CPU per message ≤ net + crypto/tls's",
			fmt.Sprintf("frameloop %.0f ns/msg vs net %.0f ns/msg: %.2f×", fns, nns, fns/nns), verdict(fns <= nns, runs(rs["frameloop"], rs["net"]))})
		rows = append(rows, row{sc.name + ": cpu_ratio ≤ net + crypto/tls's",
			fmt.Sprintf("frameloop %.3f vs net %.3f", fr, nr), verdict(fr <= nr, runs(rs["frameloop"], rs["net"]))})
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "Targets (issue 12), from the medians:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | figures | |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s |\n", r.target, r.figures, r.verdict)
	}
	fmt.Fprintln(w)
}
