package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/frameloop/frameloop"
)

// The load generator is tested in internal/loadgen; these check the
// subcommand's wiring: exit statuses, one-line errors, JSON on stdout.

func TestBenchBadFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runBench([]string{"--conns", "0"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if s := stderr.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "--conns") || stdout.Len() != 0 {
		t.Errorf("stdout %q, stderr %q: want one line naming the flag", stdout.String(), s)
	}
}

func TestBenchBadFraming(t *testing.T) {
	for _, args := range [][]string{{"--framing", "u33"}, {"--framing", "u8", "--size", "300"}} {
		var stdout, stderr bytes.Buffer
		if code := runBench(args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if s := stderr.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "--framing") || stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, stderr %q: want one line naming the flag", args, stdout.String(), s)
		}
	}
}

func TestBenchAgainstEcho(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()

	var stdout, stderr bytes.Buffer
	code := runBench([]string{"--addr", ln.Addr().String(), "--conns", "4", "--pipeline", "2",
		"--duration", "300ms", "--warmup", "100ms", "--json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var r struct {
		Frames     int64 `json:"frames"`
		Mismatches int64 `json:"mismatches"`
		Lost       int64 `json:"lost"`
		ConnErrors int64 `json:"conn_errors"`
		LatencyUs  struct {
			P99 float64 `json:"p99"`
		} `json:"latency_us"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("stdout is not the JSON result: %v: %q", err, stdout.String())
	}
	if r.Frames == 0 || r.LatencyUs.P99 <= 0 || r.Mismatches+r.Lost+r.ConnErrors != 0 {
		t.Errorf("%+v", r)
	}
}

// bench --help names every framing preset and both plot formats.
func TestBenchHelpListsAllowedValues(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runBench([]string{"--help"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	requireHelpValues(t, stdout.String(), map[string][]string{
		"--framing": frameloop.FramingPresets(),
		"--plot":    {"png", "svg"},
	})
}

// requireHelpValues checks that the help line of each flag (from the flag
// to the next line that starts another flag) names each value as a word.
func requireHelpValues(t *testing.T, help string, want map[string][]string) {
	t.Helper()
	for name, values := range want {
		var text []string
		in := false
		for line := range strings.SplitSeq(help, "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "--") {
				in = strings.HasPrefix(trimmed, name+" ") || trimmed == name
			}
			if in {
				text = append(text, line)
			}
		}
		if len(text) == 0 {
			t.Errorf("help has no line for %s:\n%s", name, help)
			continue
		}
		words := map[string]bool{}
		for _, w := range strings.FieldsFunc(strings.Join(text, " "), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_'
		}) {
			words[w] = true
		}
		for _, v := range values {
			if !words[v] {
				t.Errorf("help for %s does not name %q: %s", name, v, strings.Join(text, "\n"))
			}
		}
	}
}
