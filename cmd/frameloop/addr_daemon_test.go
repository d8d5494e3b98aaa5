//go:build unix

package main

// Listen addresses other than IPv4: IPv6 loopback and Unix sockets,
// including a stale socket file (replaced) and a live one (refused).

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/frameloop/frameloop/internal/testkit"
)

func TestDaemonIPv6Loopback(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("this test needs the IPv6 loopback, ::1: %v", err)
	}
	ln.Close()
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "[::1]:0")...)
		if !strings.HasPrefix(d.addr, "[::1]:") {
			t.Fatalf("listening on %q, want [::1]:PORT", d.addr)
		}
		c := d.dial(t)
		testkit.Echo(t, c, []byte("over IPv6"), ioWait)
		testkit.Echo(t, c, testkit.Pattern(70_000, 1), ioWait)
		if rec, _ := d.waitLog(0, msgIs("listening")); rec["addr"] != d.addr {
			t.Fatalf("listening line addr %q", rec["addr"])
		}
		t.Run("python client", func(t *testing.T) { runPythonClient(t, d.addr) })
		d.stop()
	})
}

func TestDaemonUnixSocket(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		path := filepath.Join(shortTempDir(t), "s.sock")
		d := startDaemon(t, with(args, "--addr", "unix:"+path)...)
		if d.network != "unix" || d.addr != path {
			t.Fatalf("listening on %s %q, want unix %q", d.network, d.addr, path)
		}
		a, b := d.dial(t), d.dial(t)
		testkit.Echo(t, a, []byte("over a unix socket"), ioWait)
		testkit.Echo(t, b, testkit.Pattern(100_000, 2), ioWait)
		testkit.Echo(t, a, nil, ioWait)
		t.Run("python client", func(t *testing.T) { runPythonClient(t, "unix:"+path) })
		d.stop()
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Fatalf("socket file still there after SIGTERM (stat: %v)", err)
		}
	})
}

func TestDaemonUnixStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("test setup: no stale socket file at %s (%v)", path, err)
	}
	d := startDaemon(t, "--addr", "unix:"+path, "--loops", "1")
	testkit.Echo(t, d.dial(t), []byte("the stale socket was replaced"), ioWait)
	d.stop()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file still there after SIGTERM (stat: %v)", err)
	}
}

func TestDaemonUnixLiveSocketExits1(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := runFrameloop(t, exitWait, "serve", "--addr", "unix:"+path)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	requireOneLine(t, r)
	if !strings.Contains(r.stderr, path) {
		t.Fatalf("the error line does not name the socket: %s", r.stderr)
	}
	// The live socket is untouched: its file is there and it still accepts.
	c, err := net.DialTimeout("unix", path, ioWait)
	if err != nil {
		t.Fatalf("the live socket no longer accepts after the failed start: %v", err)
	}
	c.Close()
}

func TestDaemonUnixPathNotASocketExits1(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "file")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runFrameloop(t, exitWait, "serve", "--addr", "unix:"+path)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	requireOneLine(t, r)
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Fatalf("the file at the path was changed: %q, %v", b, err)
	}
}
