//go:build linux

package main

// Descriptor exhaustion (docs/behaviour.md §8): under a 64-descriptor limit the
// daemon pauses accepting without spinning, keeps serving its connections,
// logs the pause once, and accepts the waiting clients once descriptors
// free up.

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

// cpuTicks is a process's user plus system CPU time, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat: %q", pid, s)
	}
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat: %q", pid, s)
	}
	return utime + stime, nil
}

func TestDaemonDescriptorExhaustion(t *testing.T) {
	prlimit := testkit.RequireTool(t, "prlimit", "util-linux")
	backends := poller.Backends()
	if testing.Short() {
		backends = backends[:1]
	}
	for _, backend := range backends {
		// One at a time: the test measures the daemon's CPU time.
		t.Run(backend, func(t *testing.T) {
			d := launchDaemon(t, []string{prlimit, "--nofile=64:64", "--"}, nil,
				"--addr", "127.0.0.1:0", "--loops", "1", "--max-conns", "1000", "--backend", backend)
			d.awaitListening()
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.pid())); strings.TrimSpace(string(comm)) != "frameloop" {
				t.Fatalf("pid %d is %q, not the daemon: CPU time would be measured on the wrong process", d.pid(), comm)
			}
			acceptFailed := func(r logRecord) bool { return strings.HasPrefix(r["msg"], "accept failed") }

			// Connect until a connection gets no echo: the daemon is out of
			// descriptors and the connection waits in the backlog.
			var served, waiting []net.Conn
			for len(waiting) == 0 {
				if len(served) > 64 {
					t.Fatalf("%d connections served under a 64-descriptor limit", len(served))
				}
				c := d.dial(t)
				err := testkit.EchoErr(c, []byte(fmt.Sprintf("served %d", len(served))), 500*time.Millisecond)
				switch {
				case err == nil:
					served = append(served, c)
				case testkit.IsTimeout(err):
					waiting = append(waiting, c)
				default:
					t.Fatalf("connection %d: %v", len(served), err)
				}
			}
			if len(served) < 40 {
				t.Fatalf("only %d connections served before the limit; want most of 64 descriptors", len(served))
			}
			for i := range 4 {
				c := d.dial(t)
				if err := testkit.WriteFrame(c, []byte(fmt.Sprintf("waiting %d", i+1)), ioWait); err != nil {
					t.Fatal(err)
				}
				waiting = append(waiting, c)
			}
			rec, ok := d.waitLog(2*time.Second, acceptFailed)
			if !ok {
				t.Fatal("no \"accept failed\" line while connections wait")
			}
			if !strings.Contains(rec["err"], "too many open files") {
				t.Errorf("accept failed with %q, want too many open files", rec["err"])
			}

			// At the limit, with connections waiting, the daemon idles.
			before, err := cpuTicks(d.pid())
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			after, err := cpuTicks(d.pid())
			if err != nil {
				t.Fatal(err)
			}
			if used := after - before; used >= 20 { // ticks are 10 ms (USER_HZ 100)
				t.Fatalf("the daemon used %d ms of CPU in 1 s at the descriptor limit: a busy loop", used*10)
			} else {
				t.Logf("%d connections served; CPU at the limit: %d ms in 1 s", len(served), used*10)
			}

			// Existing connections are still served; the waiting still wait.
			for i, c := range served {
				if err := testkit.EchoErr(c, []byte(fmt.Sprintf("still served %d", i)), ioWait); err != nil {
					t.Fatalf("served connection %d at the limit: %v", i, err)
				}
			}
			testkit.ExpectNothing(t, waiting[0], 100*time.Millisecond)
			if n := d.countLogs(acceptFailed); n != 1 {
				t.Fatalf("%d \"accept failed\" lines for one episode, want 1", n)
			}

			// Free ten descriptors: the waiting connections (fewer than ten)
			// are accepted within the longest backoff, one second.
			freed := time.Now()
			for _, c := range served[:10] {
				c.Close()
			}
			served = served[10:]
			want := []string{"served " + strconv.Itoa(len(served)+10)}
			for i := range 4 {
				want = append(want, fmt.Sprintf("waiting %d", i+1))
			}
			for i, c := range waiting {
				c.SetReadDeadline(freed.Add(5 * time.Second))
				got, err := testkit.ReadFrame(c, 0, testkit.MaxFrame)
				if err != nil || string(got) != want[i] {
					t.Fatalf("waiting connection %d after descriptors freed: %q, %v", i, got, err)
				}
			}
			t.Logf("waiting connections served %v after ten closed", time.Since(freed))
			for i, c := range append(served, waiting...) {
				if err := testkit.EchoErr(c, []byte("after"), ioWait); err != nil {
					t.Fatalf("connection %d after recovery: %v", i, err)
				}
			}
			if _, ok := d.waitLog(time.Second, msgIs("accepting again")); !ok {
				t.Error("no \"accepting again\" line after recovery")
			}
			if n := d.countLogs(acceptFailed); n != 1 {
				t.Errorf("%d \"accept failed\" lines, want 1 (one episode)", n)
			}
			d.stop()
		})
	}
}
