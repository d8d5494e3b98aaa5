//go:build unix

package main

// Two daemons with --balance reuseport on one explicit port: the second
// refuses to start unless --allow-shared-port says the sharing is meant.

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// startOnFreePort starts a daemon on an explicit port that was free a
// moment before; another process may take it meanwhile, so it tries again
// with another port if the daemon cannot bind.
func startOnFreePort(t *testing.T, args ...string) *daemon {
	t.Helper()
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // never connected: nothing lingers on the port
		d := launchDaemon(t, nil, nil, with(args, "--addr", addr)...)
		if _, ok := d.waitLog(startWait, msgIs("listening")); !ok && d.hasExited() && try < 3 {
			t.Logf("port %s was taken before the daemon bound it: %s", addr, d.logs.String())
			continue
		}
		d.awaitListening()
		if d.addr != addr {
			t.Fatalf("the daemon listens on %s, want %s", d.addr, addr)
		}
		return d
	}
}

func TestDaemonReuseportRefusesAPortAnotherInstanceHolds(t *testing.T) {
	t.Parallel()
	reuse := []string{"--balance", "reuseport", "--loops", "2", "--metrics-addr", "127.0.0.1:0"}
	first := startOnFreePort(t, reuse...)
	addr := first.addr

	// A second instance on the same port: one line, exit 1, before it binds.
	r := runFrameloop(t, exitWait, with([]string{"serve"}, with(reuse, "--addr", addr)...)...)
	if r.code != 1 {
		t.Fatalf("second instance: exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	requireOneLine(t, r)
	want := "frameloop serve: " + addr + " is already in use (another instance with --balance reuseport?); pass --allow-shared-port to share it on purpose\n"
	if r.stderr != want {
		t.Fatalf("second instance says:\n%s\nwant:\n%s", r.stderr, want)
	}
	// In handoff mode the listener does not share: the bind itself fails,
	// in one line too.
	r = runFrameloop(t, exitWait, "serve", "--addr", addr, "--loops", "2", "--balance", "handoff")
	if r.code != 1 {
		t.Fatalf("handoff instance: exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	requireOneLine(t, r)
	if want := "frameloop serve: bind " + addr + ": address already in use\n"; r.stderr != want {
		t.Fatalf("handoff instance says:\n%s\nwant:\n%s", r.stderr, want)
	}
	// The first one took no harm.
	testkit.Echo(t, first.dial(t), []byte("still here"), ioWait)

	// On purpose: both run, and the kernel gives each a share.
	second := startDaemon(t, with(reuse, "--addr", addr, "--allow-shared-port")...)
	before := map[*daemon]float64{}
	for _, d := range []*daemon{first, second} {
		m, err := d.scrapeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		before[d] = m["frameloop_connections_accepted_total"]
	}
	const conns = 64
	for i := range conns {
		c := testkit.Dial(t, "tcp", addr, ioWait)
		testkit.Echo(t, c, []byte(fmt.Sprint("shared ", i)), ioWait)
		c.Close()
	}
	total := 0.0
	for i, d := range []*daemon{first, second} {
		m, err := d.scrapeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		n := m["frameloop_connections_accepted_total"] - before[d]
		if n == 0 {
			t.Errorf("instance %d accepted none of %d connections: it does not serve", i+1, conns)
		}
		total += n
	}
	if total != conns {
		t.Errorf("the two instances accepted %v connections, want %d", total, conns)
	}
	second.stop()
	first.stop()
}

// A daemon stopped with clients connected leaves connections in TIME_WAIT
// on its port (it closed them first); the next instance on that port is
// not taken for a second one and starts.
func TestDaemonReuseportRestartsOnItsOwnPort(t *testing.T) {
	t.Parallel()
	reuse := []string{"--balance", "reuseport", "--loops", "2"}
	first := startOnFreePort(t, reuse...)
	var clients []net.Conn
	for i := range 10 {
		c := first.dial(t)
		testkit.Echo(t, c, []byte{byte(i)}, ioWait)
		clients = append(clients, c)
	}
	first.stop()
	for _, c := range clients {
		if _, err := testkit.WaitClosed(c, ioWait); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	next := startDaemon(t, with(reuse, "--addr", first.addr)...)
	testkit.Echo(t, next.dial(t), []byte("restarted"), ioWait)
	next.stop()
}

// sharedPortInUse, in this process: a listener that would share is found,
// one that would not is left to the bind's own error, a free port and
// port 0 are free, and the probes leave no descriptor behind.
func TestSharedPortInUse(t *testing.T) {
	reusePort := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	sharing, err := reusePort.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sharing.Close()
	plain, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()

	cfg := func(addr, balance string, loops int) frameloop.Config {
		c := frameloop.DefaultConfig()
		c.Addr, c.Balance, c.Loops = addr, balance, loops
		return c
	}
	fds := openFiles(t)
	for range 50 {
		for _, tc := range []struct {
			name string
			cfg  frameloop.Config
			want bool
		}{
			{"SO_REUSEPORT listener", cfg(sharing.Addr().String(), "reuseport", 2), true},
			{"SO_REUSEPORT listener, one loop", cfg(sharing.Addr().String(), "reuseport", 1), false},
			{"SO_REUSEPORT listener, handoff", cfg(sharing.Addr().String(), "handoff", 2), false},
			{"plain listener", cfg(plain.Addr().String(), "reuseport", 2), false},
			{"free port", cfg(freeAddr, "reuseport", 2), false},
			{"port 0", cfg("127.0.0.1:0", "reuseport", 2), false},
			{"unix socket", cfg("unix:/nonexistent/s.sock", "reuseport", 2), false},
		} {
			addr, got := sharedPortInUse(tc.cfg)
			if got != tc.want || got && addr != tc.cfg.Addr {
				t.Fatalf("%s: sharedPortInUse = %q, %v; want %v", tc.name, addr, got, tc.want)
			}
		}
	}
	if after := openFiles(t); after != fds {
		t.Errorf("%d open descriptors before the probes, %d after", fds, after)
	}
	// Nothing holds the free port: a listener without SO_REUSEADDR binds it.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	ap, _ := net.ResolveTCPAddr("tcp4", freeAddr)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: ap.Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Errorf("the probed free port cannot be bound: %v", err)
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/dev/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
