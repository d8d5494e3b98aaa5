//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestMain lets the test binary be the generator the orchestrator starts.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "gen" {
		os.Exit(genMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestPayloadIsChecked(t *testing.T) {
	f := appendFrame(nil, 64, 7, 41)
	if len(f) != 68 || f[0] != 64 || f[1] != 0 {
		t.Fatalf("frame % x", f)
	}
	for _, other := range [][]byte{appendFrame(nil, 64, 7, 42), appendFrame(nil, 64, 8, 41)} {
		if bytes.Equal(f, other) {
			t.Error("frames of another sequence number or connection are identical")
		}
	}
	if !bytes.Equal(f, appendFrame(nil, 64, 7, 41)) {
		t.Error("the same frame built twice differs")
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--servers", "frameloop,gnet"}, "gnet has no TLS"},
		{[]string{"--servers", "net,net"}, "twice"},
		{[]string{"--scenarios", "S3"}, "unknown scenario"},
		{[]string{"--scenarios", "S1-TLS,s1-tls"}, "twice"},
		{[]string{"--runs", "0"}, "--runs"},
		{[]string{"--size", "8"}, "--size"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--idle-conns", "0"}, "--idle-conns"},
		{[]string{"--handshake-parallel", "0"}, "--handshake-parallel"},
		{[]string{"extra"}, "unexpected"},
		{[]string{"--nope"}, "not defined"},
	} {
		var out, errs bytes.Buffer
		if code := run(tc.args, &out, &errs); code != 2 || !strings.Contains(errs.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errs.String(), tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%q: wrote a report: %q", tc.args, out.String())
		}
	}
}

// One short run of every scenario against every server: frameloop and the
// peer build, start with TLS, the generator handshakes, verifies every
// reply and reports, and the report has every row and no failure.
func TestSmoke(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Fatal("taskset is not installed: install util-linux, as .ci/run does")
	}
	args := []string{"--runs", "1", "--duration", "1s", "--warmup", "200ms", "--idle-conns", "200", "--hold", "200ms",
		"--frameloop-root", "../../.."}
	if runtime.NumCPU() < 2 {
		args = append(args, "--gen-cpus", "0") // one CPU: the generator shares the server's
	}
	var out, errs bytes.Buffer
	code := run(args, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, errs.String(), out.String())
	}
	for _, want := range []string{
		"## TLS 1.3", "| S1-TLS (100 × P1) | frameloop | ", "| S1-TLS (100 × P1) | net | ", "| S1-TLS (100 × P1) | nbio | ",
		"| S2-TLS (100 × P32) | nbio | ", "| Idle-TLS | frameloop | 200 |", "| Idle-TLS | net | 200 |", "| Idle-TLS | nbio | 200 |",
		"TLS 1.3, ", "| 0 / 0 / 0 | 1 |", "not evaluated",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "FAILED") {
		t.Errorf("report has failures:\n%s", out.String())
	}
}
