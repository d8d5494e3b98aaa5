//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets the test binary be the generator the orchestrator starts.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "gen" {
		os.Exit(genMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func TestPublishPacketIsVerified(t *testing.T) {
	payload := make([]byte, 64)
	p := publishPacket(nil, 41, 12345, payload)
	if want := 2 + 2 + len(topic) + 64; len(p) != want || p[0] != 0x30 || p[1] != byte(want-2) {
		t.Fatalf("packet % x", p)
	}
	if seq, ts, ok := checkPublish(p, 41, 64); !ok || seq != 41 || ts != 12345 {
		t.Fatalf("checkPublish: %d %d %v", seq, ts, ok)
	}
	if _, _, ok := checkPublish(p, 42, 64); ok {
		t.Error("message 41 accepted when 42 was due")
	}
	for _, i := range []int{0, 5, len(p) - 1} { // first byte, topic, padding
		bad := bytes.Clone(p)
		bad[i] ^= 1
		if _, _, ok := checkPublish(bad, 41, 64); ok {
			t.Errorf("a packet with byte %d flipped was accepted", i)
		}
	}
}

// One short run of everything against both brokers: the broker builds,
// both brokers start, the generator connects, verifies and reports.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the broker and runs mosquitto: skipped with -short")
	}
	for _, tool := range []string{"taskset", "mosquitto"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: install util-linux and mosquitto, as .ci/run does", tool)
		}
	}
	var out, errs bytes.Buffer
	code := run([]string{"--runs", "1", "--subs", "20", "--duration", "300ms", "--warmup", "100ms",
		"--idle", "50", "--hold", "100ms", "--frameloop-root", "../../.."}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, errs.String(), out.String())
	}
	for _, want := range []string{"| frameloop | ", "| mosquitto | ", " 0 / 0 | 1 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
