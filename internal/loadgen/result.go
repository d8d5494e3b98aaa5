package loadgen

import (
	"fmt"
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is a run's figures. Its JSON field names are a contract: the bench
// suite parses them. Fields may be added, never renamed or removed.
type Result struct {
	Addr       string  `json:"addr"`
	Conns      int     `json:"conns"`
	Pipeline   int     `json:"pipeline"`
	SizeMin    int     `json:"size_min"`
	SizeMax    int     `json:"size_max"`
	Rate       float64 `json:"rate"`
	Threads    int     `json:"threads"`
	WarmupS    float64 `json:"warmup_s"`
	DurationS  float64 `json:"duration_s"`
	Frames     int64   `json:"frames"` // replies verified in the measured window
	Bytes      int64   `json:"bytes"`  // their header and payload bytes
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"` // 1e6 bytes

	LatencyUs Latency `json:"latency_us"`
	// SendLagUs, open loop only, is how late frames were started after
	// their intended times: a generator that cannot keep up with --rate
	// shows here first (latency counts from the intended time, so the lag
	// is inside it). Frames also wait for a pipeline slot, which the
	// server's replies free.
	SendLagUs *SendLag `json:"send_lag_us,omitempty"`

	// Correctness, over the whole run, warmup included: a wrong reply is
	// wrong whenever it comes.
	Mismatches int64 `json:"mismatches"`
	Lost       int64 `json:"lost"`
	ConnErrors int64 `json:"conn_errors"`

	LoadgenCPUNs       int64   `json:"loadgen_cpu_ns"`
	LoadgenCPUNsPerMsg float64 `json:"loadgen_cpu_ns_per_msg"`
	ServerPID          int     `json:"server_pid"`
	ServerCPUNs        int64   `json:"server_cpu_ns"`
	ServerCPUNsPerMsg  float64 `json:"server_cpu_ns_per_msg"`
	CPURatio           float64 `json:"cpu_ratio"` // server CPU per message / generator CPU per message

	Idle IdleResult `json:"idle"`

	// Beyond the contract.
	Mode       string  `json:"mode"`   // "closed", "open" or "idle"
	Errors     int64   `json:"errors"` // mismatches + lost + conn_errors: not 0 means the server misbehaved
	FirstError string  `json:"first_error"`
	FramesSent int64   `json:"frames_sent"` // frames started, warmup and grace included
	GraceS     float64 `json:"grace_s"`
	Framing    string  `json:"framing"` // the wire format, as --framing spells it canonically
	// Interrupted: a signal ended the run early. duration_s is then the part
	// of the measured window that ran (0 if it was still warming up), the
	// rates are over that part, and the frames in flight were given up,
	// not counted as lost.
	Interrupted bool `json:"interrupted"`

	replies  int64 // verified replies at any time
	hist     *hdrhistogram.Histogram
	warnings []string
}

// Latency holds percentiles in microseconds.
type Latency struct {
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p999"`
	P9999 int64   `json:"p9999"`
	Max   int64   `json:"max"`
	Mean  float64 `json:"mean"`
}

// SendLag holds send-lag percentiles in microseconds.
type SendLag struct {
	P50  int64 `json:"p50"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p999"`
	Max  int64 `json:"max"`
}

// IdleResult is the idle mode's part.
type IdleResult struct {
	Conns      int   `json:"conns"`
	RSSBefore  int64 `json:"rss_before_bytes"`
	RSSAfter   int64 `json:"rss_after_bytes"`
	RSSPerConn int64 `json:"rss_per_conn_bytes"` // (after - before) / conns
	Echoed     int64 `json:"echoed"`             // connections whose frame came back intact
}

// newResult merges the workers' counts and histograms.
func newResult(cfg *Config, ws []*worker) *Result {
	r := &Result{
		Addr:      cfg.Addr,
		Conns:     cfg.Conns,
		Pipeline:  cfg.Pipeline,
		SizeMin:   cfg.SizeMin,
		SizeMax:   cfg.SizeMax,
		Rate:      cfg.Rate,
		Threads:   cfg.Threads,
		WarmupS:   cfg.Warmup.Seconds(),
		DurationS: cfg.Duration.Seconds(),
		GraceS:    cfg.Grace.Seconds(),
		ServerPID: cfg.ServerPID,
		Mode:      "closed",
		Framing:   cfg.Framing.String(),
		hist:      newHistogram(),
	}
	if cfg.Rate > 0 {
		r.Mode = "open"
	}
	var lag *hdrhistogram.Histogram
	if cfg.Rate > 0 && cfg.Idle == 0 {
		lag = newHistogram()
	}
	for _, w := range ws {
		if lag != nil && w.lag != nil {
			lag.Merge(w.lag)
		}
		s := &w.st
		r.Frames += s.frames
		r.Bytes += s.bytes
		r.replies += s.replies
		r.FramesSent += s.sent
		r.Mismatches += s.mismatches
		r.Lost += s.lost
		r.ConnErrors += s.connErrors
		if r.FirstError == "" && s.firstErr != nil {
			r.FirstError = s.firstErr.Error()
		}
		r.hist.Merge(w.hist)
	}
	r.Errors = r.Mismatches + r.Lost + r.ConnErrors
	r.setMeasured(cfg.Duration)
	h := r.hist
	r.LatencyUs = Latency{
		P50:   h.ValueAtQuantile(50),
		P90:   h.ValueAtQuantile(90),
		P99:   h.ValueAtQuantile(99),
		P999:  h.ValueAtQuantile(99.9),
		P9999: h.ValueAtQuantile(99.99),
		Max:   h.Max(),
		Mean:  round1(h.Mean()),
	}
	if h.TotalCount() == 0 {
		r.LatencyUs.Max = 0
	}
	if lag != nil {
		r.SendLagUs = &SendLag{P50: lag.ValueAtQuantile(50), P99: lag.ValueAtQuantile(99),
			P999: lag.ValueAtQuantile(99.9), Max: lag.Max()}
		if lag.TotalCount() == 0 {
			r.SendLagUs.Max = 0
		}
	}
	return r
}

// setMeasured sets the measured time and the rates over it.
func (r *Result) setMeasured(d time.Duration) {
	r.DurationS = d.Seconds()
	r.MsgsPerSec, r.MBPerSec = 0, 0
	if s := d.Seconds(); s > 0 {
		r.MsgsPerSec = round1(float64(r.Frames) / s)
		r.MBPerSec = round1(float64(r.Bytes) / s / 1e6)
	}
}

func (r *Result) setLoadgenCPU(ns int64) {
	r.LoadgenCPUNs = ns
	if r.Frames > 0 {
		r.LoadgenCPUNsPerMsg = round1(float64(ns) / float64(r.Frames))
	}
	r.setRatio()
}

func (r *Result) setServerCPU(ns int64) {
	r.ServerCPUNs = ns
	if r.Frames > 0 {
		r.ServerCPUNsPerMsg = round1(float64(ns) / float64(r.Frames))
	}
	r.setRatio()
}

func (r *Result) setRatio() {
	if r.ServerPID > 0 && r.LoadgenCPUNsPerMsg > 0 && r.ServerCPUNsPerMsg > 0 {
		r.CPURatio = math.Round(r.ServerCPUNsPerMsg/r.LoadgenCPUNsPerMsg*1000) / 1000
	}
}

func (r *Result) warn(format string, args ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf(format, args...))
}

func round1(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return math.Round(x*10) / 10
}
