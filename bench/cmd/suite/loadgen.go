package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// loadgenSpec is one invocation of `frameloop bench`.
type loadgenSpec struct {
	bin       string // the binary that has the bench subcommand
	cpus      string // taskset CPU list
	threads   int    // --threads; 0 means 1
	addr      string
	serverPID int
	sc        Scenario
	rate      float64 // open loop: --rate; 0: closed loop
	duration  time.Duration
	warmup    time.Duration
	idleConns int
	hold      time.Duration
	framing   string // --framing, "" for the default
}

// errUsage marks a load generator that rejected its command line: running
// it again with other servers cannot go better, so the suite stops.
var errUsage = errors.New("load generator rejected its command line")

// args is the generator's command line, after the binary.
func (s loadgenSpec) args() []string {
	a := []string{"bench", "--json", "--threads", strconv.Itoa(max(s.threads, 1)), "--server-pid", strconv.Itoa(s.serverPID), "--addr", s.addr}
	if s.framing != "" {
		a = append(a, "--framing", s.framing)
	}
	if s.sc.Idle {
		return append(a, "--idle", strconv.Itoa(s.idleConns), "--hold", s.hold.String())
	}
	if s.rate > 0 {
		a = append(a, "--rate", strconv.FormatFloat(s.rate, 'f', -1, 64))
	}
	return append(a,
		"--conns", strconv.Itoa(s.sc.Conns),
		"--pipeline", strconv.Itoa(s.sc.Pipeline),
		"--size", strconv.Itoa(s.sc.Size),
		"--duration", s.duration.String(),
		"--warmup", s.warmup.String())
}

// timeout bounds one invocation generously: the measured time plus room
// for connecting, draining and reporting.
func (s loadgenSpec) timeout() time.Duration {
	if s.sc.Idle {
		return s.hold + 2*time.Minute
	}
	return s.warmup + s.duration + time.Minute
}

// runLoadgen runs the generator pinned to its CPUs and parses its JSON.
func runLoadgen(ctx context.Context, s loadgenSpec) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	argv := append([]string{"-c", s.cpus, s.bin}, s.args()...)
	cmd := exec.CommandContext(ctx, "taskset", argv...)
	cmd.SysProcAttr = childAttrs()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &ringLog{max: 20}
	cmd.Stdout, cmd.Stderr = &limitedBuffer{b: &stdout, max: 4 << 20}, stderr
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("starting load generator: %v", err)
	}
	trackChild(cmd.Process.Pid, "loadgen")
	err := cmd.Wait()
	untrackChild(cmd.Process.Pid)
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Result{}, fmt.Errorf("load generator did not finish within %s: %s", s.timeout(), stderr.last(2))
		}
		return Result{}, ctx.Err()
	}
	if err != nil {
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.ExitCode() == 2:
			return Result{}, fmt.Errorf("%w (exit status 2): %s", errUsage, stderr.last(3))
		case errors.As(err, &ee) && ee.ExitCode() == 3:
			// The run went through but the server answered wrongly: the
			// figures and the fault counts are in the JSON, which the
			// report shows (and the suite then exits non-zero).
		default:
			return Result{}, fmt.Errorf("load generator failed (%v): %s", err, stderr.last(3))
		}
	}
	r, err := parseResult(stdout.Bytes(), s.sc.Idle)
	if err != nil {
		if msg := stderr.last(2); msg != "" {
			err = fmt.Errorf("%v (stderr: %s)", err, msg)
		}
		return Result{}, err
	}
	return r, nil
}

// limitedBuffer keeps at most max bytes (a runaway generator cannot eat the
// suite's memory); the rest is dropped.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}
