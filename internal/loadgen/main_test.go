package loadgen

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// contract is the JSON the bench suite parses; every field must be present.
type contract struct {
	Addr       string  `json:"addr"`
	Conns      int     `json:"conns"`
	Pipeline   int     `json:"pipeline"`
	SizeMin    int     `json:"size_min"`
	SizeMax    int     `json:"size_max"`
	Rate       float64 `json:"rate"`
	Threads    int     `json:"threads"`
	WarmupS    float64 `json:"warmup_s"`
	DurationS  float64 `json:"duration_s"`
	Frames     int64   `json:"frames"`
	Bytes      int64   `json:"bytes"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
	LatencyUs  struct {
		P50   float64 `json:"p50"`
		P90   float64 `json:"p90"`
		P99   float64 `json:"p99"`
		P999  float64 `json:"p999"`
		P9999 float64 `json:"p9999"`
		Max   float64 `json:"max"`
	} `json:"latency_us"`
	Mismatches         int64   `json:"mismatches"`
	Lost               int64   `json:"lost"`
	ConnErrors         int64   `json:"conn_errors"`
	LoadgenCPUNs       int64   `json:"loadgen_cpu_ns"`
	LoadgenCPUNsPerMsg float64 `json:"loadgen_cpu_ns_per_msg"`
	ServerPID          int     `json:"server_pid"`
	ServerCPUNs        int64   `json:"server_cpu_ns"`
	ServerCPUNsPerMsg  float64 `json:"server_cpu_ns_per_msg"`
	CPURatio           float64 `json:"cpu_ratio"`
	Idle               struct {
		Conns      int   `json:"conns"`
		RSSBefore  int64 `json:"rss_before_bytes"`
		RSSAfter   int64 `json:"rss_after_bytes"`
		RSSPerConn int64 `json:"rss_per_conn_bytes"`
	} `json:"idle"`

	// Extras this package adds.
	Mode        string `json:"mode"`
	Errors      int64  `json:"errors"`
	FirstError  string `json:"first_error"`
	FramesSent  int64  `json:"frames_sent"`
	Framing     string `json:"framing"`
	Interrupted bool   `json:"interrupted"`
	SendLagUs   *struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p999"`
		Max  float64 `json:"max"`
	} `json:"send_lag_us"`
}

var contractKeys = []string{"addr", "conns", "pipeline", "size_min", "size_max", "rate", "threads",
	"warmup_s", "duration_s", "frames", "bytes", "msgs_per_sec", "mb_per_sec", "latency_us",
	"mismatches", "lost", "conn_errors", "loadgen_cpu_ns", "loadgen_cpu_ns_per_msg",
	"server_pid", "server_cpu_ns", "server_cpu_ns_per_msg", "cpu_ratio", "idle"}

var latencyKeys = []string{"p50", "p90", "p99", "p999", "p9999", "max"}
var idleKeys = []string{"conns", "rss_before_bytes", "rss_after_bytes", "rss_per_conn_bytes"}

// short is the timing of test runs: brief and bounded.
var short = []string{"--duration", "300ms", "--warmup", "100ms", "--grace", "300ms"}

// bench runs Main with --json and returns the parsed result, the exit
// status and stderr. It fails the test if stdout is not one JSON object
// holding every contract field, when the run completed (exit 0, or 3 for a
// server that answered wrongly) or was interrupted (130); otherwise stdout
// must be empty.
func bench(t *testing.T, args ...string) (contract, int, string) {
	t.Helper()
	return benchInterrupted(t, nil, args...)
}

// benchInterrupted is bench with an interrupt channel.
func benchInterrupted(t *testing.T, interrupt <-chan os.Signal, args ...string) (contract, int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(append(args, "--json"), &stdout, &stderr, interrupt)
	var r contract
	if code != exitOK && code != exitServerWrong && code != exitInterrupted {
		if stdout.Len() != 0 {
			t.Errorf("exit %d with output on stdout: %q", code, stdout.String())
		}
		return r, code, stderr.String()
	}
	out := stdout.Bytes()
	if bytes.Count(out, []byte("\n")) != 1 || !bytes.HasSuffix(out, []byte("}\n")) {
		t.Fatalf("stdout is not one JSON line: %q", out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("stdout is not JSON: %v: %s", err, out)
	}
	for _, k := range contractKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	for parent, keys := range map[string][]string{"latency_us": latencyKeys, "idle": idleKeys} {
		sub, _ := m[parent].(map[string]any)
		for _, k := range keys {
			if _, ok := sub[k]; !ok {
				t.Errorf("JSON lacks %s.%s", parent, k)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("JSON does not fit the contract: %v", err)
	}
	return r, code, stderr.String()
}

// oneLine fails unless s is exactly one non-empty line.
func oneLine(t *testing.T, s string) {
	t.Helper()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 || len(s) < 2 {
		t.Errorf("want one line on stderr, got %q", s)
	}
}
