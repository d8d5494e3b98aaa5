//go:build unix

package main

// The command line of `frameloop serve` from the outside: bad flags exit 2
// with one line, bind failures exit 1 with one line, good flags in either
// GNU form start the server. docs/behaviour.md §2.

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

// requireOneLine checks the shape every start-up failure must have: one
// line on stderr, no panic or stack trace, no dump of the flags.
func requireOneLine(t *testing.T, r runResult) {
	t.Helper()
	lines := r.stderrLines()
	if len(lines) != 1 {
		t.Fatalf("stderr has %d lines, want exactly 1:\n%s", len(lines), r.stderr)
	}
	for _, bad := range []string{"panic", "goroutine ", "  --addr", "--max-conns  "} {
		if strings.Contains(r.stderr, bad) {
			t.Fatalf("stderr contains %q:\n%s", bad, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Fatalf("stdout is not empty:\n%s", r.stdout)
	}
}

func TestServeBadFlagsExit2WithOneLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string // a fragment the error line must contain
	}{
		{"unknown flag", []string{"--bogus"}, "bogus"},
		{"unknown flag with value", []string{"--bogus=1"}, "bogus"},
		{"bad int", []string{"--max-conns", "x"}, "max-conns"},
		{"zero int", []string{"--max-conns", "0"}, "max-conns"},
		{"negative int", []string{"--max-conns=-5"}, "max-conns"},
		{"zero max-message", []string{"--max-message", "0"}, "max-message"},
		{"zero loops", []string{"--loops", "0"}, "loops"},
		{"duration without unit", []string{"--idle-timeout", "5"}, "idle-timeout"},
		{"negative duration", []string{"--idle-timeout", "-1s"}, "idle-timeout"},
		{"bad write-timeout", []string{"--write-timeout=soon"}, "write-timeout"},
		{"bad shutdown-timeout", []string{"--shutdown-timeout", "5"}, "shutdown-timeout"},
		{"bad backend", []string{"--backend", "iouring"}, "backend"},
		{"bad balance", []string{"--balance", "random"}, "balance"},
		{"bad log level", []string{"--log-level", "loud"}, "log-level"},
		{"bad log format", []string{"--log-format=xml"}, "log-format"},
		{"missing value", []string{"--max-conns"}, "max-conns"},
		{"addr nonsense", []string{"--addr", "nonsense"}, "nonsense"},
		{"addr port out of range", []string{"--addr", "127.0.0.1:99999"}, "99999"},
		{"addr empty unix path", []string{"--addr", "unix:"}, "unix"},
		{"unknown framing preset", []string{"--framing", "u33"}, "u33"},
		{"unknown framing key", []string{"--framing", "lenght=4"}, "lenght"},
		{"bad framing width", []string{"--framing", "length=5"}, "length"},
		{"framing varint-max with a fixed width", []string{"--framing", "length=4,varint-max=3"}, "varint-max"},
		{"empty framing", []string{"--framing="}, "framing"},
		{"framing offset too large", []string{"--framing", "offset=17"}, "offset"},
		{"huge timeout", []string{"--idle-timeout", "1000000h"}, "idle-timeout"},
		{"bad input memory", []string{"--max-input-memory", "8XiB"}, "max-input-memory"},
		{"input memory below one frame", []string{"--max-input-memory", "1MiB"}, "max-input-memory"},
		{"allow-shared-port without reuseport", []string{"--allow-shared-port"}, "allow-shared-port"},
		{"allow-shared-port with handoff", []string{"--balance", "handoff", "--allow-shared-port"}, "reuseport"},
		{"stray argument", []string{"stray"}, "stray"},
		{"stray argument after flags", []string{"--loops", "1", "--addr", "127.0.0.1:0", "extra"}, "extra"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runFrameloop(t, exitWait, append([]string{"serve"}, tc.args...)...)
			if r.code != 2 {
				t.Fatalf("frameloop serve %s: exit %d, want 2; stderr:\n%s", strings.Join(tc.args, " "), r.code, r.stderr)
			}
			requireOneLine(t, r)
			if !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("the error line does not mention %q: %s", tc.want, r.stderr)
			}
		})
	}
}

func TestSubcommandsExitStatus(t *testing.T) {
	t.Parallel()
	t.Run("no subcommand exits 2", func(t *testing.T) {
		t.Parallel()
		r := runFrameloop(t, exitWait)
		if r.code != 2 {
			t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
		}
		requireOneLine(t, r)
		if !strings.Contains(r.stderr, "usage") {
			t.Fatalf("stderr does not show the usage: %s", r.stderr)
		}
	})
	t.Run("unknown subcommand exits 2", func(t *testing.T) {
		t.Parallel()
		r := runFrameloop(t, exitWait, "frobnicate", "--addr", "127.0.0.1:0")
		if r.code != 2 {
			t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
		}
		requireOneLine(t, r)
		if !strings.Contains(r.stderr, "frobnicate") {
			t.Fatalf("stderr does not name the command: %s", r.stderr)
		}
	})
	for _, help := range []string{"--help", "-h"} {
		t.Run("serve "+help+" exits 0 and lists the flags", func(t *testing.T) {
			t.Parallel()
			r := runFrameloop(t, exitWait, "serve", help)
			if r.code != 0 {
				t.Fatalf("exit %d, want 0; stderr:\n%s", r.code, r.stderr)
			}
			if r.stderr != "" {
				t.Fatalf("stderr is not empty: %s", r.stderr)
			}
			for _, f := range []string{"--addr", "--max-conns", "--max-message", "--idle-timeout", "--write-timeout",
				"--shutdown-timeout", "--loops", "--backend", "--balance", "--metrics-addr", "--proxy-protocol",
				"--log-level", "--log-format", "--tls-cert", "--tls-key", "--tls-client-ca", "--tls-handshake-timeout",
				"--tls-min-version", "--tls-alpn"} {
				if !strings.Contains(r.stdout, f) {
					t.Errorf("help does not list %s:\n%s", f, r.stdout)
				}
			}
		})
	}
}

// Both GNU spellings set the flag: the listening line reports the values.
func TestServeFlagFormsBothAccepted(t *testing.T) {
	t.Parallel()
	forms := map[string][]string{
		"--name=value": {"--addr=127.0.0.1:0", "--backend=poll", "--loops=1", "--max-conns=7", "--idle-timeout=2s", "--log-level=info"},
		"--name value": {"--addr", "127.0.0.1:0", "--backend", "poll", "--loops", "1", "--max-conns", "7", "--idle-timeout", "2s", "--log-level", "info"},
		"mixed":        {"--addr", "127.0.0.1:0", "--backend=poll", "--loops", "1", "--max-conns=7"},
	}
	for name, args := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, args...)
			rec, _ := d.waitLog(0, msgIs("listening"))
			if rec["backend"] != "poll" || rec["loops"] != "1" || rec["max_conns"] != "7" {
				t.Fatalf("listening line reports backend=%s loops=%s max_conns=%s, want poll, 1, 7", rec["backend"], rec["loops"], rec["max_conns"])
			}
			testkit.Echo(t, d.dial(t), []byte("forms"), ioWait)
			d.stop()
		})
	}
}

// The flags reach the configuration whichever form is used (in-process:
// some values, like the timeouts, are not visible from outside).
func TestParseServeFlagsForms(t *testing.T) {
	o, err := parseServeFlags([]string{"--balance", "reuseport", "--allow-shared-port"}, io.Discard)
	if err != nil || !o.allowSharedPort || o.cfg.Balance != "reuseport" {
		t.Fatalf("--balance reuseport --allow-shared-port: %+v, %v", o, err)
	}
	if o, err := parseServeFlags(nil, io.Discard); err != nil || o.allowSharedPort {
		t.Fatalf("no flags: allowSharedPort %v, %v", o.allowSharedPort, err)
	}
	for _, args := range [][]string{
		{"--addr=unix:/tmp/x.sock", "--max-conns=9", "--max-message=1000", "--idle-timeout=1500ms", "--write-timeout=0",
			"--shutdown-timeout=3s", "--loops=3", "--backend=poll", "--balance=handoff", "--metrics-addr=127.0.0.1:9",
			"--proxy-protocol", "--log-level=debug", "--log-format=json"},
		{"--addr", "unix:/tmp/x.sock", "--max-conns", "9", "--max-message", "1000", "--idle-timeout", "1500ms", "--write-timeout", "0",
			"--shutdown-timeout", "3s", "--loops", "3", "--backend", "poll", "--balance", "handoff", "--metrics-addr", "127.0.0.1:9",
			"--proxy-protocol", "--log-level", "debug", "--log-format", "json"},
	} {
		o, err := parseServeFlags(args, io.Discard)
		if err != nil {
			t.Fatalf("parseServeFlags(%q): %v", args, err)
		}
		c := o.cfg
		if c.Addr != "unix:/tmp/x.sock" || c.MaxConns != 9 || c.MaxMessage != 1000 || c.IdleTimeout != 1500*time.Millisecond ||
			c.WriteTimeout != 0 || c.Loops != 3 || c.Backend != "poll" || c.Balance != "handoff" || !c.ProxyProtocol ||
			o.shutdownTimeout != 3*time.Second || o.metricsAddr != "127.0.0.1:9" || o.logLevel != "debug" || o.logFormat != "json" {
			t.Fatalf("parseServeFlags(%q) = %+v, cfg %+v", args, o, c)
		}
	}
}

func TestServeBindFailureExits1WithOneLine(t *testing.T) {
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() }) // after the parallel subtests
	inUse := held.Addr().String()
	cases := []struct {
		name string
		args []string
	}{
		{"address in use, one loop", []string{"--addr", inUse, "--loops", "1"}},
		{"address in use, reuseport loops", []string{"--addr", inUse, "--loops", "2", "--balance", "reuseport"}},
		{"address in use, handoff", []string{"--addr", inUse, "--loops", "2", "--balance", "handoff"}},
		{"non-local address", []string{"--addr", "192.0.2.1:0"}},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := runFrameloop(t, exitWait, append([]string{"serve"}, tc.args...)...)
				if r.code != 1 {
					t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
				}
				requireOneLine(t, r)
				if !strings.Contains(r.stderr, "bind") {
					t.Fatalf("the error line does not say bind: %s", r.stderr)
				}
			})
		}
	})
	// The listener we hold still works: the daemon took nothing from it.
	c, err := net.DialTimeout("tcp", inUse, ioWait)
	if err != nil {
		t.Fatalf("the held listener no longer accepts: %v", err)
	}
	c.Close()
}

func TestServeMetricsAddrInUseExits1(t *testing.T) {
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() }) // after the parallel subtests
	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		r := runFrameloop(t, exitWait, "serve", "--addr", "127.0.0.1:0", "--metrics-addr", held.Addr().String())
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
		}
		requireOneLine(t, r)
		if !strings.Contains(r.stderr, "metrics") {
			t.Fatalf("the error line does not say metrics: %s", r.stderr)
		}
	})
	t.Run("unix socket is not left behind", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(shortTempDir(t), "s.sock")
		r := runFrameloop(t, exitWait, "serve", "--addr", "unix:"+path, "--metrics-addr", held.Addr().String())
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
		}
		requireOneLine(t, r)
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Fatalf("socket file %s left behind after the failed start (stat: %v)", path, err)
		}
	})
}

// --help names every value a choice flag accepts, on that flag's line:
// this platform's backends, the balance modes, log levels and formats, and
// the framing presets.
func TestServeHelpListsAllowedValues(t *testing.T) {
	t.Parallel()
	r := runFrameloop(t, exitWait, "serve", "--help")
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	requireHelpValues(t, r.stdout, map[string][]string{
		"--backend":    poller.Backends(),
		"--balance":    {"handoff", "reuseport"},
		"--log-level":  {"debug", "info", "warn", "error"},
		"--log-format": {"text", "json"},
		"--framing":    frameloop.FramingPresets(),
	})
}
