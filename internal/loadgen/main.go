package loadgen

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/frameloop/frameloop/internal/framing"
)

// Exit statuses of Main.
const (
	exitOK          = 0   // the run completed and every reply was right
	exitFailed      = 1   // it could not run
	exitBadFlag     = 2   // bad flags
	exitServerWrong = 3   // the run completed, but replies were mismatched or lost, or connections failed
	exitInterrupted = 130 // a signal ended the run early (128 + SIGINT, as shells report it)
)

// Main is "frameloop bench": it parses args (without the subcommand's name),
// runs, prints the figures on stdout and returns the exit status. A value
// on interrupt (the command relays SIGINT and SIGTERM) ends the run early:
// Main says "interrupted" on stderr, prints the figures measured until
// then, and returns 130. A nil interrupt never comes.
func Main(args []string, stdout, stderr io.Writer, interrupt <-chan os.Signal) int {
	cfg, err := ParseArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "frameloop bench: %v\n", err)
		return exitBadFlag
	}
	var progress io.Writer // only for people watching: never into a pipe or a file
	if f, ok := stderr.(*os.File); ok && !cfg.JSON && isTerminal(int(f.Fd())) {
		progress = stderr
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	var relay sync.WaitGroup
	if interrupt != nil {
		relay.Go(func() {
			select {
			case <-interrupt:
				close(stop)
			case <-done:
			}
		})
	}
	r, err := Run(cfg, progress, stop)
	close(done)
	relay.Wait()
	if err != nil {
		fmt.Fprintf(stderr, "frameloop bench: %v\n", err)
		return exitFailed
	}
	if r.Interrupted {
		fmt.Fprintf(stderr, "frameloop bench: %s\n", interruptedLine(r, &cfg))
	}
	for _, w := range r.warnings {
		fmt.Fprintf(stderr, "frameloop bench: %s\n", w)
	}
	if cfg.JSON {
		err = writeJSON(stdout, r)
	} else {
		err = writeTable(stdout, r)
	}
	if err != nil {
		fmt.Fprintf(stderr, "frameloop bench: writing the result: %v\n", err)
		return exitFailed
	}
	if a := alarm(r); a != "" {
		fmt.Fprintln(stderr, a)
	}
	if cfg.Plot != "" && !(r.Interrupted && r.hist.TotalCount() == 0) {
		if err := writePlot(cfg.Plot, r.hist, "frameloop bench "+r.Addr+"\n"+describe(r)); err != nil {
			fmt.Fprintf(stderr, "frameloop bench: --plot %s: %v\n", cfg.Plot, err)
			return exitFailed
		}
	}
	switch {
	case r.Interrupted:
		return exitInterrupted
	case r.Errors > 0:
		return exitServerWrong
	}
	return exitOK
}

// interruptedLine says that the run was interrupted and what its figures
// cover.
func interruptedLine(r *Result, cfg *Config) string {
	switch {
	case r.Mode == "idle":
		return fmt.Sprintf("interrupted: the connections were held %s of %s", secs(r.DurationS), cfg.Hold)
	case r.DurationS == 0:
		return "interrupted during the warmup: nothing was measured"
	case r.DurationS < cfg.Duration.Seconds():
		return fmt.Sprintf("interrupted: the figures cover the first %s of the %s measured window", secs(r.DurationS), cfg.Duration)
	}
	return "interrupted while collecting the last replies: the figures cover the whole measured window"
}

var usage = strings.Replace(`usage: frameloop bench [flags]

Load generator for the frameloop echo protocol. Every reply is checked byte
for byte. Without --rate each connection keeps --pipeline frames in flight
(closed loop); with --rate frames go out at fixed intended times and latency
counts from those (open loop, corrected for coordinated omission); the send
lag, how late frames were started, shows whether the generator kept up.

  --addr ADDR        server address: host:port, [ipv6]:port or unix:/path (127.0.0.1:5882)
  --conns N          connections (50)
  --pipeline N       frames in flight per connection (1)
  --size N|MIN:MAX   payload bytes, uniform per frame, at most 1048576 (64)
  --framing SPEC     wire format of every frame (u32le): a preset, one of
PRESETS,
                     or key=value,... of length=1|2|3|4|8|varint, order=le|be (be),
                       offset=0..16 prefix bytes, adjust=N (payload = length + N),
                       varint-max=1..10 (5); --size must fit the length field
  --duration D       measured time (10s)
  --warmup D         time before measuring (1s)
  --grace D          time after the duration to collect replies in flight (1s)
  --rate R           frames/s over all connections, open loop (0: closed loop)
  --threads N        OS threads driving the connections (1)
  --json             print one JSON object on stdout, nothing else
  --plot FILE        latency by percentile on log axes, FILE.png or FILE.svg
  --server-pid P     also measure process P: CPU per message; RSS in idle mode
  --idle N           idle mode: open N connections, echo one frame on each,
  --hold D             hold them open for D, close (0s)

Frames are [prefix][length][payload] and the echo must return them
unchanged. Prefix bytes: 0x00 for grpc (not compressed), 0x30 for mqtt
(PUBLISH, QoS 0); for other formats with an offset, hashed from the
connection and sequence number like the payload.

SIGINT or SIGTERM ends a run early: it says "interrupted" on stderr, prints
the figures measured until then (JSON: "interrupted": true, duration_s the
part of the window that ran) and exits 130. A second signal exits at once.

Exit status: 0 when the run completed and every reply was right; 3 when it
completed but replies were mismatched or lost or connections failed (the
figures are printed, and one line on stderr says what went wrong); 1 when
it could not run; 2 on bad flags; 130 when interrupted.
`, "PRESETS", wrapWords(framing.Presets(), 23, 76), 1)

// wrapWords lays words out on lines of at most width columns, each indented
// by indent spaces.
func wrapWords(words []string, indent, width int) string {
	var b strings.Builder
	line := 0
	for _, w := range words {
		switch {
		case line == 0:
		case line+1+len(w) > width:
			b.WriteByte('\n')
			line = 0
		default:
			b.WriteByte(' ')
			line++
		}
		if line == 0 {
			b.WriteString(strings.Repeat(" ", indent))
			line = indent
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}
