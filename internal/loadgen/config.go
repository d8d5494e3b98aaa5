package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/sock"
)

// Limits on flag values. They keep arithmetic in range and typos from
// asking for absurd runs; none is a limit of the design.
const (
	maxSize     = 1 << 20 // largest payload, as the server's default --max-message
	maxConns    = 1 << 20
	maxPipeline = 1 << 16
	maxThreads  = 256
	maxRate     = 1e9
	maxDuration = 24 * time.Hour
	maxGrace    = time.Minute
)

// Config is one bench run, as the flags describe it.
type Config struct {
	Addr      string
	Target    sock.Endpoint
	Conns     int
	Pipeline  int
	SizeMin   int
	SizeMax   int
	Duration  time.Duration
	Warmup    time.Duration
	Grace     time.Duration // after Duration, how long to wait for replies still in flight
	Rate      float64       // frames/s over all connections; 0: closed loop
	Threads   int
	JSON      bool
	Plot      string
	ServerPID int
	Idle      int // idle mode: connections to open and hold; 0: load mode
	Hold      time.Duration
	Framing   framing.Spec // the wire format; the zero Spec is u32le
}

// DefaultConfig is the configuration of "frameloop bench" with no flags.
func DefaultConfig() Config {
	return Config{
		Addr:     "127.0.0.1:5882",
		Conns:    50,
		Pipeline: 1,
		SizeMin:  64,
		SizeMax:  64,
		Duration: 10 * time.Second,
		Warmup:   time.Second,
		Grace:    time.Second,
		Threads:  1,
	}
}

// errHelp is returned by ParseArgs for -h/--help: print usage, exit 0.
var errHelp = errors.New("help requested")

// ParseArgs parses the bench flags (GNU style --name value or --name=value)
// and validates every value, so that a bad one is reported before anything
// connects. Errors are one line, naming the flag.
func ParseArgs(args []string) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, in one line
	fs.Usage = func() {}
	// Everything but --json is read as a string and parsed here, so that a bad
	// value gets a message that says what was wanted.
	addr := fs.String("addr", c.Addr, "")
	conns := fs.String("conns", "50", "")
	pipeline := fs.String("pipeline", "1", "")
	size := fs.String("size", "64", "")
	duration := fs.String("duration", "10s", "")
	warmup := fs.String("warmup", "1s", "")
	grace := fs.String("grace", "1s", "")
	rate := fs.String("rate", "0", "")
	threads := fs.String("threads", "1", "")
	fs.BoolVar(&c.JSON, "json", false, "")
	plot := fs.String("plot", "", "")
	pid := fs.String("server-pid", "0", "")
	idle := fs.String("idle", "0", "")
	hold := fs.String("hold", "0s", "")
	framingSpec := fs.String("framing", "u32le", "")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, errHelp
		}
		return c, flagError(err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags are --name value or --name=value)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var err error
	c.Addr = *addr
	if c.Target, err = parseTarget(*addr); err != nil {
		return c, fmt.Errorf("--addr: %v", err)
	}
	if c.Conns, err = intFlag("conns", *conns, 1, maxConns); err != nil {
		return c, err
	}
	if c.Pipeline, err = intFlag("pipeline", *pipeline, 1, maxPipeline); err != nil {
		return c, err
	}
	if c.SizeMin, c.SizeMax, err = parseSize(*size); err != nil {
		return c, err
	}
	if c.Duration, err = durationFlag("duration", *duration, time.Millisecond, maxDuration); err != nil {
		return c, err
	}
	if c.Warmup, err = durationFlag("warmup", *warmup, 0, maxDuration); err != nil {
		return c, err
	}
	if c.Grace, err = durationFlag("grace", *grace, 0, maxGrace); err != nil {
		return c, err
	}
	if c.Rate, err = parseRate(*rate); err != nil {
		return c, err
	}
	if c.Threads, err = intFlag("threads", *threads, 1, maxThreads); err != nil {
		return c, err
	}
	if c.Plot, err = parsePlot(*plot); err != nil {
		return c, err
	}
	if c.ServerPID, err = parsePID(*pid); err != nil {
		return c, err
	}
	if c.Idle, err = intFlag("idle", *idle, 0, maxConns); err != nil {
		return c, err
	}
	if c.Hold, err = durationFlag("hold", *hold, 0, maxDuration); err != nil {
		return c, err
	}

	if c.Framing, err = framing.ParseSpec(*framingSpec); err != nil {
		return c, fmt.Errorf("--framing %q: %v", *framingSpec, strings.TrimPrefix(err.Error(), "framing: "))
	}
	if _, err = c.wire(); err != nil {
		return c, err
	}

	if c.Idle > 0 {
		// Idle mode opens, checks and holds connections; the load flags have
		// no meaning there, and silently ignoring one would mislead.
		for _, name := range []string{"conns", "pipeline", "rate", "duration", "warmup", "grace", "plot"} {
			if set[name] {
				return c, fmt.Errorf("--%s does not apply to --idle (which opens --idle connections, echoes one frame on each and holds them for --hold)", name)
			}
		}
		if c.Threads > c.Idle {
			return c, fmt.Errorf("--threads %d is more than --idle %d: each thread needs a connection", c.Threads, c.Idle)
		}
	} else {
		if set["hold"] {
			return c, errors.New("--hold applies only to --idle N")
		}
		if c.Threads > c.Conns {
			return c, fmt.Errorf("--threads %d is more than --conns %d: each thread needs a connection", c.Threads, c.Conns)
		}
	}
	return c, nil
}

// flagError rewords the flag package's errors, which name flags with one
// dash, in the GNU style the command documents.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s", strings.TrimLeft(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s needs a value", strings.TrimLeft(name, "-"))
	}
	if strings.Contains(msg, "-json") { // a bool flag given a value it cannot parse
		return errors.New("--json takes no value (or --json=true/false)")
	}
	return errors.New(strings.ReplaceAll(msg, "\n", " "))
}

func parseTarget(s string) (sock.Endpoint, error) {
	ep, err := sock.ParseEndpoint(s)
	if err != nil {
		return ep, err
	}
	if ep.Network != "unix" && ep.Port == 0 {
		return ep, fmt.Errorf("address %q: port 0 cannot be connected to", s)
	}
	return ep, nil
}

func intFlag(name, s string, lo, hi int) (int, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < int64(lo) || v > int64(hi) {
		return 0, fmt.Errorf("--%s %q: want a whole number from %d to %d", name, s, lo, hi)
	}
	return int(v), nil
}

func durationFlag(name, s string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("--%s %q: want a duration such as 500ms, 10s or 2m", name, s)
	}
	if d < lo || d > hi {
		if lo == 0 {
			return 0, fmt.Errorf("--%s %s: want a duration from 0 to %s", name, s, hi)
		}
		return 0, fmt.Errorf("--%s %s: want a duration from %s to %s", name, s, lo, hi)
	}
	return d, nil
}

// parseSize reads N or MIN:MAX.
func parseSize(s string) (lo, hi int, err error) {
	bad := fmt.Errorf("--size %q: want N or MIN:MAX, payload bytes from 0 to %d", s, maxSize)
	a, b, isRange := strings.Cut(s, ":")
	num := func(t string) (int, bool) {
		v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		return int(v), err == nil && v >= 0 && v <= maxSize
	}
	var ok bool
	if lo, ok = num(a); !ok {
		return 0, 0, bad
	}
	hi = lo
	if isRange {
		if hi, ok = num(b); !ok {
			return 0, 0, bad
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("--size %q: MIN is larger than MAX", s)
		}
	}
	return lo, hi, nil
}

func parseRate(s string) (float64, error) {
	r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > maxRate {
		return 0, fmt.Errorf("--rate %q: want frames per second from 0 (closed loop) to %g", s, maxRate)
	}
	return r, nil
}

func parsePlot(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	switch strings.ToLower(filepath.Ext(s)) {
	case ".png", ".svg":
	default:
		return "", fmt.Errorf("--plot %q: want a file name ending in .png or .svg", s)
	}
	dir := filepath.Dir(s)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("--plot %q: directory %q does not exist", s, dir)
	}
	return s, nil
}

func parsePID(s string) (int, error) {
	pid, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || pid < 0 {
		return 0, fmt.Errorf("--server-pid %q: want a process id", s)
	}
	if pid == 0 {
		return 0, nil
	}
	if _, err := procCPU(pid); err != nil {
		return 0, fmt.Errorf("--server-pid %d: %v", pid, err)
	}
	return pid, nil
}
