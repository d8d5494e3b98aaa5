//go:build unix

package main

// --log-format and --log-level: JSON lines, and the per-connection debug
// lines (one when a connection opens, one with its reason when it closes).

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/frameloop/frameloop/internal/testkit"
)

func TestDaemonJSONLogs(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug",
			"--max-message", "100", "--metrics-addr", "127.0.0.1:0")...)
		a, b := d.dial(t), d.dial(t)
		testkit.Echo(t, a, []byte("json"), ioWait)
		testkit.Echo(t, b, []byte("json"), ioWait)
		if err := testkit.WriteAll(a, testkit.Header(200), ioWait); err != nil { // oversize: logs a warning
			t.Fatal(err)
		}
		if _, err := testkit.WaitClosed(a, ioWait); err != nil {
			t.Fatal(err)
		}
		a.Close()
		b.Close()
		if _, ok := d.waitLog(ioWait, msgIs("connection closed")); !ok {
			t.Fatal("no connection-closed line")
		}
		d.stop()

		lines := d.logs.lines()
		if len(lines) < 6 {
			t.Fatalf("only %d lines logged:\n%s", len(lines), d.logs.String())
		}
		listening := 0
		for _, l := range lines {
			var rec map[string]any
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("stderr line is not JSON (%v): %s", err, l)
			}
			for _, k := range []string{"time", "level", "msg"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("JSON line without %q: %s", k, l)
				}
			}
			if rec["msg"] == "listening" {
				listening++
				if addr, _ := rec["addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
					t.Errorf("listening line has addr %v", rec["addr"])
				}
			}
		}
		if listening != 1 {
			t.Errorf("%d listening lines, want 1", listening)
		}
		if d.stdout.String() != "" {
			t.Errorf("the daemon wrote to stdout: %s", d.stdout.String())
		}
	})
}

func TestDaemonDebugLogsEachConnection(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--log-level", "debug", "--max-message", "100")...)
		peer, over, kept := d.dial(t), d.dial(t), d.dial(t)
		testkit.Echo(t, peer, []byte("a"), ioWait)
		testkit.Echo(t, over, []byte("b"), ioWait)
		testkit.Echo(t, kept, []byte("c"), ioWait)
		peer.Close()
		if err := testkit.WriteAll(over, testkit.Header(101), ioWait); err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.WaitClosed(over, ioWait); err != nil {
			t.Fatal(err)
		}
		over.Close()

		closedWith := func(c net.Conn, reason string) {
			t.Helper()
			remote := c.LocalAddr().String()
			rec, ok := d.waitLog(ioWait, func(r logRecord) bool { return r["msg"] == "connection closed" && r["remote"] == remote })
			if !ok {
				t.Fatalf("no connection-closed line for %s", remote)
			}
			if rec["reason"] != reason {
				t.Fatalf("connection %s closed with reason %q, want %q", remote, rec["reason"], reason)
			}
		}
		closedWith(peer, "peer_closed")
		closedWith(over, "oversize")
		d.stop()
		closedWith(kept, "shutdown")

		for _, c := range []net.Conn{peer, over, kept} {
			remote := c.LocalAddr().String()
			opened := d.countLogs(func(r logRecord) bool { return r["msg"] == "connection opened" && r["remote"] == remote })
			closed := d.countLogs(func(r logRecord) bool { return r["msg"] == "connection closed" && r["remote"] == remote })
			if opened != 1 || closed != 1 {
				t.Errorf("connection %s: %d opened and %d closed lines, want 1 and 1", remote, opened, closed)
			}
		}
		if n := d.countLogs(msgIs("connection opened")); n != 3 {
			t.Errorf("%d connection-opened lines, want 3", n)
		}
	})
}

func TestDaemonInfoLevelLogsNoConnections(t *testing.T) {
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--loops", "1")
	c := d.dial(t)
	testkit.Echo(t, c, []byte("quiet"), ioWait)
	c.Close()
	d.stop()
	for _, l := range d.logs.lines() {
		if r := parseLogLine(l); r["level"] == "DEBUG" || strings.HasPrefix(r["msg"], "connection ") {
			t.Errorf("per-connection line at the default level: %s", l)
		}
	}
}
