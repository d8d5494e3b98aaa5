package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// writeJSON prints r as one JSON object on one line.
func writeJSON(out io.Writer, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

// writeTable prints r as an aligned table for people.
func writeTable(out io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{name}, args...)...)
	}

	fmt.Fprintf(tw, "frameloop bench %s: %s\n", r.Addr, describe(r))
	if r.Interrupted {
		row("interrupted", "by a signal: the figures cover the part that ran")
	}
	if r.Mode == "idle" {
		row("connections", "%d opened, %d echoed, held %s", r.Idle.Conns, r.Idle.Echoed, secs(r.DurationS))
		if r.ServerPID > 0 && r.Idle.RSSBefore > 0 {
			row("server RSS", "%s before, %s after", mib(r.Idle.RSSBefore), mib(r.Idle.RSSAfter))
			row("per connection", "%d bytes", r.Idle.RSSPerConn)
		}
		row("echo latency", "p50 %d µs, p99 %d µs, max %d µs", r.LatencyUs.P50, r.LatencyUs.P99, r.LatencyUs.Max)
	} else {
		row("measured", "%s after %s warmup", secs(r.DurationS), secs(r.WarmupS))
		row("frames", "%d (%d sent in all)", r.Frames, r.FramesSent)
		row("msgs/s", "%.1f", r.MsgsPerSec)
		row("MB/s", "%.1f", r.MBPerSec)
		l := r.LatencyUs
		row("latency p50", "%d µs", l.P50)
		row("latency p90", "%d µs", l.P90)
		row("latency p99", "%d µs", l.P99)
		row("latency p99.9", "%d µs", l.P999)
		row("latency p99.99", "%d µs", l.P9999)
		row("latency max", "%d µs", l.Max)
		if g := r.SendLagUs; g != nil {
			row("send lag", "p50 %d µs, p99 %d µs, p99.9 %d µs, max %d µs (started after the intended time)", g.P50, g.P99, g.P999, g.Max)
		}
	}
	row("mismatches", "%d", r.Mismatches)
	row("lost", "%d", r.Lost)
	row("conn errors", "%d", r.ConnErrors)
	if r.Mode != "idle" {
		row("generator CPU", "%s (%.1f ns/msg)", time.Duration(r.LoadgenCPUNs).Round(time.Millisecond), r.LoadgenCPUNsPerMsg)
		if r.ServerPID > 0 {
			row("server CPU", "%s (%.1f ns/msg, pid %d)", time.Duration(r.ServerCPUNs).Round(time.Millisecond), r.ServerCPUNsPerMsg, r.ServerPID)
			row("CPU ratio", "%.3f (server / generator, per message)", r.CPURatio)
		}
	}
	if r.FirstError != "" {
		row("first error", "%s", r.FirstError)
	}
	return tw.Flush()
}

// alarm is the line that tells, whatever else is printed, that the server
// answered wrongly; empty when it did not.
func alarm(r *Result) string {
	if r.Errors == 0 {
		return ""
	}
	var parts []string
	if r.Mismatches > 0 {
		parts = append(parts, fmt.Sprintf("%d MISMATCHED", r.Mismatches))
	}
	if r.Lost > 0 {
		parts = append(parts, fmt.Sprintf("%d LOST", r.Lost))
	}
	if r.ConnErrors > 0 {
		parts = append(parts, fmt.Sprintf("%d CONNECTION ERRORS", r.ConnErrors))
	}
	s := "frameloop bench: WARNING: " + strings.Join(parts, ", ")
	if r.FirstError != "" {
		s += " (first: " + r.FirstError + ")"
	}
	return s
}

func describe(r *Result) string {
	size := fmt.Sprintf("%d B", r.SizeMin)
	if r.SizeMax != r.SizeMin {
		size = fmt.Sprintf("%d..%d B", r.SizeMin, r.SizeMax)
	}
	size += ", " + r.Framing + " framing"
	threads := plural(r.Threads, "thread")
	switch r.Mode {
	case "idle":
		return fmt.Sprintf("idle, %s, %s, %s", plural(r.Idle.Conns, "connection"), size, threads)
	case "open":
		return fmt.Sprintf("open loop at %g frames/s, %s, up to %d in flight each, %s, %s", r.Rate, plural(r.Conns, "connection"), r.Pipeline, size, threads)
	}
	return fmt.Sprintf("closed loop, %s, %d in flight each, %s, %s", plural(r.Conns, "connection"), r.Pipeline, size, threads)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func secs(s float64) string { return time.Duration(s * 1e9).String() }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
