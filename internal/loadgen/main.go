package loadgen

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/frameloop/frameloop/internal/framing"
)

// Exit statuses of Main.
const (
	exitOK      = 0 // the run completed (mismatches are reported, not fatal)
	exitFailed  = 1 // it could not run
	exitBadFlag = 2
)

// Main is "frameloop bench": it parses args (without the subcommand's name),
// runs, prints the figures on stdout and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
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
	r, err := Run(cfg, progress)
	if err != nil {
		fmt.Fprintf(stderr, "frameloop bench: %v\n", err)
		return exitFailed
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
	if cfg.Plot != "" {
		if err := writePlot(cfg.Plot, r.hist, "frameloop bench "+r.Addr+"\n"+describe(r)); err != nil {
			fmt.Fprintf(stderr, "frameloop bench: --plot %s: %v\n", cfg.Plot, err)
			return exitFailed
		}
	}
	return exitOK
}

var usage = strings.Replace(`usage: frameloop bench [flags]

Load generator for the frameloop echo protocol. Every reply is checked byte
for byte. Without --rate each connection keeps --pipeline frames in flight
(closed loop); with --rate frames go out at fixed intended times and latency
counts from those (open loop, corrected for coordinated omission).

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
  --plot FILE        latency by percentile, FILE.png or FILE.svg
  --server-pid P     also measure process P: CPU per message; RSS in idle mode
  --idle N           idle mode: open N connections, echo one frame on each,
  --hold D             hold them open for D, close (0s)

Frames are [prefix][length][payload] and the echo must return them
unchanged. Prefix bytes: 0x00 for grpc (not compressed), 0x30 for mqtt
(PUBLISH, QoS 0); for other formats with an offset, hashed from the
connection and sequence number like the payload.

Exit status: 0 when the run completed (even with mismatches, which are
reported), 1 when it could not run, 2 on bad flags.
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
