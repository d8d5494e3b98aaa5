package loadgen

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func checkClean(t *testing.T, r contract) {
	t.Helper()
	if r.Mismatches != 0 || r.Lost != 0 || r.ConnErrors != 0 || r.Errors != 0 {
		t.Errorf("errors against a correct server: mismatches %d lost %d conn_errors %d (%s)", r.Mismatches, r.Lost, r.ConnErrors, r.FirstError)
	}
}

func checkFigures(t *testing.T, r contract) {
	t.Helper()
	l := r.LatencyUs
	if r.Frames <= 0 || r.Bytes < 4*r.Frames || l.P50 < 1 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.P9999 || l.P9999 > l.Max {
		t.Errorf("figures out of order: frames %d bytes %d latency %+v", r.Frames, r.Bytes, l)
	}
	if want := float64(r.Frames) / r.DurationS; r.MsgsPerSec < want*0.99 || r.MsgsPerSec > want*1.01 {
		t.Errorf("msgs_per_sec %.1f, want frames/duration %.1f", r.MsgsPerSec, want)
	}
	if want := float64(r.Bytes) / r.DurationS / 1e6; r.MBPerSec < want*0.95-0.1 || r.MBPerSec > want*1.05+0.1 {
		t.Errorf("mb_per_sec %.2f, want %.2f", r.MBPerSec, want)
	}
	if r.LoadgenCPUNs <= 0 || r.LoadgenCPUNsPerMsg <= 0 {
		t.Errorf("generator CPU %d ns (%.1f/msg)", r.LoadgenCPUNs, r.LoadgenCPUNsPerMsg)
	}
	if r.FramesSent < r.Frames {
		t.Errorf("frames_sent %d < frames %d", r.FramesSent, r.Frames)
	}
}

func TestClosedLoop(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "8", "--pipeline", "4", "--size", "0:3000")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkClean(t, r)
	checkFigures(t, r)
	if r.Mode != "closed" || r.Conns != 8 || r.Pipeline != 4 || r.SizeMin != 0 || r.SizeMax != 3000 || r.Addr != s.addr || r.DurationS != 0.3 || r.WarmupS != 0.1 {
		t.Errorf("echoed settings: %+v", r)
	}
	if stderr != "" {
		t.Errorf("stderr: %q", stderr)
	}
	if r.Framing != "u32le" {
		t.Errorf("framing %q, want the default u32le", r.Framing)
	}
}

// Each format against an echo that decodes it and sends every frame back
// as it came: the generator writes frames the framing package reads, and
// checks every reply, header included. Up to 20000 payload bytes: varint
// lengths of 1, 2 and 3 bytes.
func TestClosedLoopFramings(t *testing.T) {
	for _, spec := range []string{"u32le", "u32be", "varint", "mqtt", "grpc", "u8", "length=2,order=le,offset=3"} {
		t.Run(spec, func(t *testing.T) {
			x := mustWire(t, spec)
			s := startServer(t, "tcp4", framedEcho(x.f))
			size := fmt.Sprintf("0:%d", min(x.maxLen, 20000))
			r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "4", "--pipeline", "4", "--size", size, "--framing", spec)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			checkClean(t, r)
			checkFigures(t, r)
			if r.Framing != spec || stderr != "" {
				t.Errorf("framing %q, stderr %q", r.Framing, stderr)
			}
			if r.Bytes < r.Frames*int64(x.off+1) {
				t.Errorf("%d bytes for %d frames: fewer than their headers", r.Bytes, r.Frames)
			}
		})
	}
}

// A damaged payload is counted in any format, and only as a mismatch.
func TestMismatchesCountedFramed(t *testing.T) {
	s := startServer(t, "tcp4", flipEvery10th("mqtt"))
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "4", "--pipeline", "4", "--framing", "mqtt", "--size", "100:300")...)
	if code != exitServerWrong {
		t.Fatalf("exit %d, want %d: %s", code, exitServerWrong, stderr)
	}
	if r.Lost != 0 || r.ConnErrors != 0 {
		t.Errorf("lost %d conn_errors %d (%s): a flipped byte is only a mismatch", r.Lost, r.ConnErrors, r.FirstError)
	}
	if frac := float64(r.Mismatches) / float64(r.FramesSent); frac < 0.08 || frac > 0.12 {
		t.Errorf("%d mismatches of %d frames sent; want one in 10", r.Mismatches, r.FramesSent)
	}
}

// A server speaking another format is caught, not measured.
func TestWrongFraming(t *testing.T) {
	s := startServer(t, "tcp4", framedEcho(mustFormat(t, "u32le")))
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "2", "--framing", "u32be")...)
	if code != exitServerWrong {
		t.Fatalf("exit %d, want %d: %s", code, exitServerWrong, stderr)
	}
	// A u32be length of 64 reads as a u32le 1 GiB, beyond the echo's
	// maximum: it hangs up, and nothing is measured.
	if r.Frames != 0 || r.Lost+r.ConnErrors+r.Mismatches == 0 || !strings.Contains(stderr, "WARNING") {
		t.Errorf("frames %d lost %d conn_errors %d mismatches %d, stderr %q", r.Frames, r.Lost, r.ConnErrors, r.Mismatches, stderr)
	}
}

func TestThreadsUnixAndIPv6(t *testing.T) {
	for _, network := range []string{"unix", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, network, echo)
			r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "6", "--threads", "2", "--pipeline", "8")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			checkClean(t, r)
			checkFigures(t, r)
		})
	}
}

func TestLargeFrames(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	// A longer window: under -race on a loaded machine a 1 MiB echo through
	// the net-package test server can take a good part of 300 ms.
	r, code, stderr := bench(t, "--addr", s.addr, "--conns", "2", "--pipeline", "3", "--size", "1048576",
		"--duration", "1s", "--warmup", "0s", "--grace", "1s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkClean(t, r)
	checkFigures(t, r)
	if r.Bytes != r.Frames*(4+1048576) {
		t.Errorf("bytes %d for %d frames of 1 MiB", r.Bytes, r.Frames)
	}
}

func TestServerCPU(t *testing.T) {
	s := startServer(t, "tcp4", echo) // in this process: its CPU is the test's
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--server-pid", itoa(os.Getpid()))...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if r.ServerPID != os.Getpid() || r.ServerCPUNs < 0 || r.ServerCPUNs > 10*int64(time.Second) {
		t.Errorf("server_pid %d server_cpu_ns %d", r.ServerPID, r.ServerCPUNs)
	}
	if r.ServerCPUNs > 0 && (r.ServerCPUNsPerMsg <= 0 || r.CPURatio <= 0) {
		t.Errorf("server_cpu_ns_per_msg %.1f cpu_ratio %.3f", r.ServerCPUNsPerMsg, r.CPURatio)
	}
}

func TestMismatchesCounted(t *testing.T) {
	s := startServer(t, "tcp4", flipEvery10th("u32le"))
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "4", "--pipeline", "4")...)
	if code != exitServerWrong {
		t.Fatalf("exit %d, want %d (the run completed, the server answered wrongly): %s", code, exitServerWrong, stderr)
	}
	oneLine(t, stderr)
	if r.Lost != 0 || r.ConnErrors != 0 {
		t.Errorf("lost %d conn_errors %d: a flipped byte is only a mismatch", r.Lost, r.ConnErrors)
	}
	if frac := float64(r.Mismatches) / float64(r.FramesSent); frac < 0.08 || frac > 0.12 {
		t.Errorf("%d mismatches of %d frames sent; want one in 10", r.Mismatches, r.FramesSent)
	}
	if r.Errors != r.Mismatches || !strings.Contains(stderr, "MISMATCHED") {
		t.Errorf("errors %d, stderr %q", r.Errors, stderr)
	}
	// People see it too.
	var stdout, errOut bytes.Buffer
	if code := Main(append(short, "--addr", s.addr, "--conns", "2"), &stdout, &errOut, nil); code != exitServerWrong {
		t.Errorf("table: exit %d, want %d", code, exitServerWrong)
	}
	if !strings.Contains(errOut.String(), "WARNING") || !strings.Contains(stdout.String(), "mismatches") || !strings.Contains(stdout.String(), "u32le framing") {
		t.Errorf("table %q, stderr %q", stdout.String(), errOut.String())
	}
}

func TestLostCounted(t *testing.T) {
	s := startServer(t, "tcp4", dropEvery10th)
	// Pipelined: a dropped reply is noticed when the next one comes.
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "4", "--pipeline", "4")...)
	if code != exitServerWrong {
		t.Fatalf("exit %d, want %d: %s", code, exitServerWrong, stderr)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, "LOST") {
		t.Errorf("stderr %q does not say LOST", stderr)
	}
	if r.Mismatches != 0 || r.ConnErrors != 0 {
		t.Errorf("mismatches %d conn_errors %d: a dropped reply is only lost", r.Mismatches, r.ConnErrors)
	}
	if frac := float64(r.Lost) / float64(r.FramesSent); frac < 0.08 || frac > 0.12 {
		t.Errorf("%d lost of %d frames sent; want one in 10", r.Lost, r.FramesSent)
	}
	// One in flight: each connection stalls on its 10th frame, lost at the end.
	r, code, stderr = bench(t, "--addr", s.addr, "--conns", "3", "--duration", "200ms", "--warmup", "0s", "--grace", "100ms")
	if code != exitServerWrong {
		t.Fatalf("exit %d, want %d: %s", code, exitServerWrong, stderr)
	}
	if r.Lost != 3 || r.FramesSent != 30 || r.Mismatches != 0 {
		t.Errorf("lost %d of %d sent, mismatches %d; want 3 of 30, none", r.Lost, r.FramesSent, r.Mismatches)
	}
}

func TestConnErrorsCounted(t *testing.T) {
	s := startServer(t, "tcp4", closeAfter5)
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "5")...)
	if code != exitServerWrong {
		t.Fatalf("exit %d, want %d: %s", code, exitServerWrong, stderr)
	}
	oneLine(t, stderr)
	if r.ConnErrors != 5 || r.Mismatches != 0 || r.FirstError == "" {
		t.Errorf("conn_errors %d mismatches %d first_error %q; want 5, 0, a reason", r.ConnErrors, r.Mismatches, r.FirstError)
	}
	if r.Lost > 5 {
		t.Errorf("lost %d: at most the one frame in flight per connection", r.Lost)
	}
}

func TestCannotConnect(t *testing.T) {
	// A port bound but not listening refuses connections, and no other
	// process can take it while the test holds it.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	_, code, stderr := bench(t, append(short, "--addr", addr, "--conns", "3")...)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, "connect "+addr) || !strings.Contains(stderr, "refused") {
		t.Errorf("stderr %q", stderr)
	}
	_, code, stderr = bench(t, append(short, "--addr", "unix:"+filepath.Join(t.TempDir(), "none.sock"))...)
	if code != 1 {
		t.Errorf("unix: exit %d, want 1 (%s)", code, stderr)
	}
}

// Open loop: frames go out at the requested rate, whatever the latency.
func TestOpenLoopRate(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	r, code, stderr := bench(t, "--addr", s.addr, "--rate", "2000", "--conns", "4", "--duration", "500ms", "--warmup", "100ms", "--grace", "300ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkClean(t, r)
	if r.Mode != "open" || r.Rate != 2000 {
		t.Errorf("mode %q rate %g", r.Mode, r.Rate)
	}
	if r.MsgsPerSec < 1600 || r.MsgsPerSec > 2400 {
		t.Errorf("%.0f msgs/s at --rate 2000", r.MsgsPerSec)
	}
	if r.FramesSent < 1000 || r.FramesSent > 1300 { // 600 ms at 2000/s
		t.Errorf("%d frames sent in 600 ms at 2000/s", r.FramesSent)
	}
	// The warmup's sixth of them is not measured.
	if frac := float64(r.Frames) / float64(r.FramesSent); frac < 0.7 || frac > 0.9 {
		t.Errorf("%d of %d frames measured; want about 5/6", r.Frames, r.FramesSent)
	}
	// An idle generator starts its frames on time: the lag is well below
	// the 2 ms between a connection's frames.
	if r.SendLagUs == nil {
		t.Fatal("open loop without send_lag_us")
	}
	if g := r.SendLagUs; g.P50 > 1000 || g.P99 > g.Max || g.P50 > g.P99 {
		t.Errorf("send lag %+v", *g)
	}
}

func TestClosedLoopHasNoSendLag(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	r, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "2")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if r.SendLagUs != nil {
		t.Errorf("closed loop reports send_lag_us %+v", *r.SendLagUs)
	}
}

// Open loop measures latency from the intended send time: a server pause
// delays every frame due during it, not only the ones in flight, and the
// percentiles show it. Closed loop, which waits for the server, hides it.
func TestOpenLoopCountsStalls(t *testing.T) {
	const stall = 150 * time.Millisecond
	args := []string{"--conns", "2", "--duration", "600ms", "--warmup", "0s", "--grace", "500ms"}
	s := startServer(t, "tcp4", stallingEcho(200*time.Millisecond, stall))
	r, code, stderr := bench(t, append(args, "--addr", s.addr, "--rate", "1000")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkClean(t, r)
	// About a quarter of the frames were due in the pause, waiting up to 150 ms.
	if r.LatencyUs.P90 < 40_000 || r.LatencyUs.Max < 100_000 {
		t.Errorf("open loop: p90 %.0f µs, max %.0f µs; want the pause to show", r.LatencyUs.P90, r.LatencyUs.Max)
	}
	s = startServer(t, "tcp4", stallingEcho(200*time.Millisecond, stall))
	r, code, stderr = bench(t, append(args, "--addr", s.addr)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if r.LatencyUs.P90 > 40_000 {
		t.Logf("closed loop: p90 %.0f µs (expected the pause to hide)", r.LatencyUs.P90)
	}
}

func TestPlot(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	dir := t.TempDir()
	for _, name := range []string{"lat.png", "lat.svg"} {
		file := filepath.Join(dir, name)
		_, code, stderr := bench(t, append(short, "--addr", s.addr, "--conns", "4", "--plot", file)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if name == "lat.png" && !bytes.HasPrefix(b, []byte("\x89PNG")) || name == "lat.svg" && !bytes.Contains(b[:min(len(b), 200)], []byte("<svg")) {
			t.Errorf("%s is not a %s (%d bytes)", name, filepath.Ext(name), len(b))
		}
	}
}

func TestIdle(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	start := time.Now()
	r, code, stderr := bench(t, "--addr", s.addr, "--idle", "50", "--hold", "200ms", "--server-pid", itoa(os.Getpid()), "--threads", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if el := time.Since(start); el < rssSettle {
		t.Errorf("took %v: the RSS must be read after the settling second", el)
	}
	checkClean(t, r)
	if r.Idle.Conns != 50 || r.Frames != 50 || r.Mode != "idle" {
		t.Errorf("idle.conns %d frames %d mode %q", r.Idle.Conns, r.Frames, r.Mode)
	}
	i := r.Idle
	if i.RSSBefore <= 0 || i.RSSAfter <= 0 || i.RSSPerConn != roundDiv(i.RSSAfter-i.RSSBefore, 50) {
		t.Errorf("rss before %d after %d per conn %d", i.RSSBefore, i.RSSAfter, i.RSSPerConn)
	}
	if i.RSSPerConn > 10<<20 || i.RSSPerConn < -(10<<20) {
		t.Errorf("rss per connection %d bytes: not sane", i.RSSPerConn)
	}
}

// Connections the server closes while they are held count as errors.
func TestIdleServerCloses(t *testing.T) {
	s := startServer(t, "tcp4", echoOnceThenClose(50*time.Millisecond))
	r, code, stderr := bench(t, "--addr", s.addr, "--idle", "10", "--hold", "400ms")
	if code != exitServerWrong {
		t.Fatalf("exit %d, want %d: %s", code, exitServerWrong, stderr)
	}
	if r.Idle.Conns != 10 || r.Frames != 10 || r.ConnErrors != 10 || r.Mismatches != 0 || r.Lost != 0 {
		t.Errorf("idle.conns %d frames %d conn_errors %d mismatches %d lost %d; want 10 echoed, then 10 closed",
			r.Idle.Conns, r.Frames, r.ConnErrors, r.Mismatches, r.Lost)
	}
	if !strings.Contains(r.FirstError, "closed") || !strings.Contains(stderr, "CONNECTION ERRORS") {
		t.Errorf("first_error %q, stderr %q", r.FirstError, stderr)
	}
}

func TestIdleCannotConnect(t *testing.T) {
	s := startServer(t, "tcp4", echo)
	s.stop()
	_, code, stderr := bench(t, "--addr", s.addr, "--idle", "10", "--hold", "100ms")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, stderr)
}

func TestFormatProgress(t *testing.T) {
	s := formatProgress(2500*time.Millisecond, "measuring", 123456, 42, 0)
	for _, want := range []string{"2.5s", "measuring", "123456 msgs/s", "p99 42 µs", "errors 0"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if s := formatProgress(0, "warmup", 0, 0, 3); !strings.Contains(s, "p99 -") || !strings.HasSuffix(s, "!") {
		t.Errorf("%q", s)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
