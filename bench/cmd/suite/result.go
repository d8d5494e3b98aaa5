package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Latency holds the load generator's latency percentiles, in microseconds.
type Latency struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	P9999 float64 `json:"p9999"`
	Max   float64 `json:"max"`
}

// Idle holds the load generator's idle-connection (S4) figures.
type Idle struct {
	Conns          float64 `json:"conns"`
	RSSBeforeBytes float64 `json:"rss_before_bytes"`
	RSSAfterBytes  float64 `json:"rss_after_bytes"`
	RSSPerConn     float64 `json:"rss_per_conn_bytes"`
}

// Result is one `frameloop bench --json` report: the fields the suite relies
// on. Numbers are decoded as float64 whatever their JSON spelling.
type Result struct {
	Frames             float64 `json:"frames"`
	Bytes              float64 `json:"bytes"`
	MsgsPerSec         float64 `json:"msgs_per_sec"`
	MBPerSec           float64 `json:"mb_per_sec"`
	Latency            Latency `json:"latency_us"`
	Mismatches         float64 `json:"mismatches"`
	Lost               float64 `json:"lost"`
	ConnErrors         float64 `json:"conn_errors"`
	LoadgenCPUNs       float64 `json:"loadgen_cpu_ns"`
	LoadgenCPUNsPerMsg float64 `json:"loadgen_cpu_ns_per_msg"`
	ServerCPUNs        float64 `json:"server_cpu_ns"`
	ServerCPUNsPerMsg  float64 `json:"server_cpu_ns_per_msg"`
	CPURatio           float64 `json:"cpu_ratio"`
	Idle               *Idle   `json:"idle,omitempty"`
	FirstError         string  `json:"first_error,omitempty"` // optional: the generator's first fault
	// Optional: the measured time, the open loop's rate and how late its
	// frames were started (a generator that could not keep up shows there).
	DurationS float64  `json:"duration_s"`
	Rate      float64  `json:"rate"`
	SendLagUs *SendLag `json:"send_lag_us,omitempty"`

	// Kernel is not the generator's: the suite samples the kernel's socket
	// memory itself while an idle run holds its connections.
	Kernel *KernelMem `json:"-"`
}

// SendLag is how late the generator started frames after their intended
// times (open loop), in microseconds.
type SendLag struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Faults is the number of mismatched, lost and errored messages/connections.
func (r Result) Faults() float64 { return r.Mismatches + r.Lost + r.ConnErrors }

// Fields each kind of run must report (dotted paths into the JSON object).
var (
	loadFields = []string{
		"msgs_per_sec", "mb_per_sec",
		"latency_us.p50", "latency_us.p99", "latency_us.p999",
		"mismatches", "lost", "conn_errors",
		"loadgen_cpu_ns_per_msg", "server_cpu_ns_per_msg",
	}
	idleFields = []string{"idle.conns", "idle.rss_per_conn_bytes"}
)

// parseResult decodes the load generator's standard output. It accepts the
// JSON object alone or, to be lenient with a generator that also prints
// other lines to stdout, the last line that holds a JSON object. idle says
// which kind of run it was, to check that the fields it needs are there.
func parseResult(out []byte, idle bool) (Result, error) {
	obj, err := findJSONObject(out)
	if err != nil {
		return Result{}, err
	}
	var raw map[string]any
	if err := json.Unmarshal(obj, &raw); err != nil {
		return Result{}, fmt.Errorf("load generator JSON: %v", err)
	}
	need := loadFields
	if idle {
		need = idleFields
	}
	var missing []string
	for _, f := range need {
		v, ok := lookup(raw, f)
		if !ok {
			missing = append(missing, f)
			continue
		}
		if _, isNum := v.(float64); !isNum {
			return Result{}, fmt.Errorf("load generator JSON: field %s is %T, want a number", f, v)
		}
	}
	if len(missing) > 0 {
		return Result{}, fmt.Errorf("load generator JSON lacks %s", strings.Join(missing, ", "))
	}
	var r Result
	if err := json.Unmarshal(obj, &r); err != nil {
		return Result{}, fmt.Errorf("load generator JSON: %v", err)
	}
	if idle && (r.Idle == nil || r.Idle.Conns <= 0) {
		return Result{}, errors.New("load generator reported no idle connections held")
	}
	if !idle {
		// A generator may emit a zeroed idle object in every report: only
		// idle runs carry one here, so that results are classified by kind.
		r.Idle = nil
		if _, ok := lookup(raw, "cpu_ratio"); !ok || r.CPURatio == 0 {
			// Derive it if the generator left it out.
			if r.LoadgenCPUNsPerMsg > 0 {
				r.CPURatio = r.ServerCPUNsPerMsg / r.LoadgenCPUNsPerMsg
			}
		}
		for _, v := range []float64{r.MsgsPerSec, r.CPURatio, r.ServerCPUNsPerMsg} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return Result{}, fmt.Errorf("load generator JSON: implausible figures (msgs/s %v, cpu_ratio %v, server ns/msg %v)",
					r.MsgsPerSec, r.CPURatio, r.ServerCPUNsPerMsg)
			}
		}
	}
	return r, nil
}

func findJSONObject(out []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(out)
	if len(trimmed) == 0 {
		return nil, errors.New("load generator printed nothing on stdout")
	}
	if json.Valid(trimmed) && trimmed[0] == '{' {
		return trimmed, nil
	}
	lines := bytes.Split(trimmed, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) > 0 && l[0] == '{' && json.Valid(l) {
			return l, nil
		}
	}
	first := string(lines[0])
	if len(first) > 120 {
		first = first[:120] + "…"
	}
	return nil, fmt.Errorf("load generator printed no JSON object on stdout (first line: %q)", first)
}

func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}
