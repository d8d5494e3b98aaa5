//go:build linux

// Command mqttbench compares frameloop's MQTT broker (examples/mqttbroker)
// with mosquitto on fan-out: one publisher, many subscribers of one topic,
// QoS 0, every delivered payload verified; and on the memory an idle
// subscribed client costs. See bench/README.md.
//
//	cd bench && go run ./cmd/mqttbench
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "gen" {
		os.Exit(genMain(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// genMain is the generator, run by the orchestrator under taskset.
func genMain(args []string) int {
	fs := flag.NewFlagSet("mqttbench gen", flag.ContinueOnError)
	var c genConfig
	fs.StringVar(&c.Addr, "addr", "", "broker address")
	fs.IntVar(&c.BrokerPid, "broker-pid", 0, "the broker's process id, for its CPU time and RSS")
	fs.IntVar(&c.Subs, "subs", 1000, "subscribers")
	fs.IntVar(&c.Size, "size", 64, "payload bytes (at least 16)")
	fs.IntVar(&c.Window, "window", 16, "messages in flight")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "")
	fs.IntVar(&c.Idle, "idle", 0, "idle mode: clients to connect and subscribe")
	fs.DurationVar(&c.Hold, "hold", 3*time.Second, "idle mode: how long to hold them")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var r Result
	var err error
	if c.Idle > 0 {
		r, err = runIdle(c)
	} else {
		r, err = runFanout(c)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqttbench gen:", err)
		return 3
	}
	return 0
}

type options struct {
	brokers                  []string
	runs, subs, size, window int
	idle                     int
	warmup, duration, hold   time.Duration
	serverCPUs, genCPUs      string
	root                     string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mqttbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	brokers := fs.String("brokers", "frameloop,mosquitto", "brokers to compare")
	fs.IntVar(&o.runs, "runs", 3, "runs; figures are medians over them")
	fs.IntVar(&o.subs, "subs", 1000, "fan-out: subscribers of the one topic")
	fs.IntVar(&o.size, "size", 64, "payload bytes (at least 16)")
	fs.IntVar(&o.window, "window", 16, "messages published and not yet delivered to every subscriber")
	fs.IntVar(&o.idle, "idle", 10000, "idle clients, each subscribed to its own topic (0: skip)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measurement")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&o.hold, "hold", 3*time.Second, "how long the idle clients are held")
	fs.StringVar(&o.serverCPUs, "server-cpus", "0", "taskset CPU list for the broker")
	fs.StringVar(&o.genCPUs, "gen-cpus", "1", "taskset CPU list for the generator")
	fs.StringVar(&o.root, "frameloop-root", "..", "the frameloop module, whose ./examples/mqttbroker is built")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.brokers = strings.Split(*brokers, ",")
	if o.size < 16 || o.window < 1 || o.subs < 1 || o.runs < 1 {
		fmt.Fprintln(stderr, "mqttbench: --size must be at least 16, --window, --subs and --runs at least 1")
		return 2
	}
	tmp, err := os.MkdirTemp("", "mqttbench")
	if err != nil {
		fmt.Fprintln(stderr, "mqttbench:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "mqttbroker")
	build := exec.Command("go", "build", "-o", bin, "./examples/mqttbroker")
	build.Dir = o.root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(stderr, "mqttbench: building the broker: %v\n%s", err, out)
		return 1
	}
	self, _ := os.Executable()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)

	results := map[string][]Result{}
	idle := map[string][]Result{}
	failed := false
	for r := range o.runs {
		order := slices.Clone(o.brokers)
		if r%2 == 1 {
			slices.Reverse(order) // drift of the machine falls on both
		}
		for _, b := range order {
			for _, mode := range []string{"fanout", "idle"} {
				if mode == "idle" && o.idle == 0 {
					continue
				}
				res, err := measure(o, b, mode, bin, self, tmp, sig)
				if err != nil {
					failed = true
					fmt.Fprintf(stderr, "mqttbench: run %d, %s, %s: %v\n", r+1, b, mode, err)
				}
				if mode == "fanout" {
					fmt.Fprintf(stderr, "run %d %-9s fan-out: %.0f deliveries/s, %.0f ns broker CPU/delivery, %.1f deliveries/read, p50 %.0f µs, p99 %.0f µs, lost %d, bad %d\n",
						r+1, b, float64(res.Delivered)/res.Seconds, float64(res.BrokerCPUns)/float64(res.Delivered),
						float64(res.Delivered)/float64(max(res.Reads, 1)), res.P50us, res.P99us, res.Lost, res.Mismatched+res.Dupes)
					results[b] = append(results[b], res)
				} else {
					fmt.Fprintf(stderr, "run %d %-9s idle: %d clients, RSS %d → %d bytes: %.0f B/client\n",
						r+1, b, res.Clients, res.RSSBefore, res.RSSAfter, float64(res.RSSAfter-res.RSSBefore)/float64(max(res.Clients, 1)))
					idle[b] = append(idle[b], res)
				}
			}
		}
	}
	report(stdout, o, results, idle)
	if failed {
		return 1
	}
	return 0
}

// measure starts the broker pinned, runs the generator pinned on the
// other core, and stops the broker.
func measure(o options, broker, mode, bin, self, tmp string, sig chan os.Signal) (Result, error) {
	port, err := freePort()
	if err != nil {
		return Result{}, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var argv []string
	env := os.Environ()
	switch broker {
	case "frameloop":
		argv = []string{bin, "--addr", addr, "--loops", "1", "--max-conns", "20000", "--backend", "epoll"}
		env = append(env, "GOMAXPROCS=1")
	case "mosquitto":
		conf := filepath.Join(tmp, "mosquitto.conf")
		os.WriteFile(conf, fmt.Appendf(nil, mosquittoConf, port), 0o644)
		argv = []string{"mosquitto", "-c", conf}
	default:
		return Result{}, fmt.Errorf("unknown broker %q", broker)
	}
	var logs bytes.Buffer
	srv := exec.Command("taskset", append([]string{"-c", o.serverCPUs}, argv...)...)
	srv.Env, srv.Stdout, srv.Stderr = env, &logs, &logs
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return Result{}, err
	}
	defer stop(srv)
	if err := waitListening(addr, 10*time.Second); err != nil {
		return Result{}, fmt.Errorf("%v (broker output: %q)", err, logs.String())
	}
	gargs := []string{"-c", o.genCPUs, self, "gen", "--addr", addr, "--broker-pid", fmt.Sprint(srv.Process.Pid),
		"--subs", fmt.Sprint(o.subs), "--size", fmt.Sprint(o.size), "--window", fmt.Sprint(o.window),
		"--warmup", o.warmup.String(), "--duration", o.duration.String(), "--hold", o.hold.String()}
	if mode == "idle" {
		gargs = append(gargs, "--idle", fmt.Sprint(o.idle))
	}
	var out, gerr bytes.Buffer
	gen := exec.Command("taskset", gargs...)
	gen.Env, gen.Stdout, gen.Stderr = append(os.Environ(), "GOMAXPROCS=1"), &out, &gerr
	gen.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := gen.Start(); err != nil {
		return Result{}, err
	}
	done := make(chan error, 1)
	go func() { done <- gen.Wait() }()
	select {
	case err = <-done:
	case s := <-sig:
		gen.Process.Kill()
		<-done
		stop(srv)
		fmt.Fprintln(os.Stderr, "mqttbench: interrupted by", s)
		os.Exit(130)
	}
	var r Result
	if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil {
		return r, fmt.Errorf("generator: %v: %s (broker output: %.500q)", err, strings.TrimSpace(gerr.String()), logs.String())
	}
	return r, nil
}

// mosquittoConf is a minimal configuration: one listener, no persistence,
// no limit that would drop a QoS 0 message, Nagle off as frameloop has it.
const mosquittoConf = `listener %d 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_connections -1
set_tcp_nodelay true
log_type error
`

func stop(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the broker did not listen within " + timeout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func med(rs []Result, f func(Result) float64) float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	return median(xs)
}

// report prints the medians as a Markdown table.
func report(w io.Writer, o options, results, idle map[string][]Result) {
	fmt.Fprintf(w, "Fan-out: 1 publisher → %d subscribers of one topic, %d B QoS 0 payloads, window %d, %v measured after %v, %d runs (medians).\n\n",
		o.subs, o.size, o.window, o.duration, o.warmup, o.runs)
	fmt.Fprintln(w, "| broker | deliveries/s | broker CPU ns/delivery | generator CPU ns/delivery | deliveries per read | p50 µs | p99 µs | p99.9 µs | idle: RSS B/client | lost / bad | runs |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|")
	for _, b := range o.brokers {
		rs := results[b]
		var lost, bad int64
		for _, r := range rs {
			lost, bad = lost+r.Lost, bad+r.Mismatched+r.Dupes
		}
		idleRSS := "—"
		if len(idle[b]) > 0 {
			idleRSS = fmt.Sprintf("%.0f", med(idle[b], func(r Result) float64 { return float64(r.RSSAfter-r.RSSBefore) / float64(max(r.Clients, 1)) }))
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.0f | %.1f | %.0f | %.0f | %.0f | %s | %d / %d | %d |\n", b,
			med(rs, func(r Result) float64 { return float64(r.Delivered) / r.Seconds }),
			med(rs, func(r Result) float64 { return float64(r.BrokerCPUns) / float64(r.Delivered) }),
			med(rs, func(r Result) float64 { return float64(r.GenCPUns) / float64(r.Delivered) }),
			med(rs, func(r Result) float64 { return float64(r.Delivered) / float64(max(r.Reads, 1)) }),
			med(rs, func(r Result) float64 { return r.P50us }),
			med(rs, func(r Result) float64 { return r.P99us }),
			med(rs, func(r Result) float64 { return r.P999us }),
			idleRSS, lost, bad, len(rs))
	}
}
