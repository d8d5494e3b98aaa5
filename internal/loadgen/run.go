package loadgen

import (
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// fdReserve is descriptors a run needs beyond one per connection: pollers,
// timers, standard streams, the runtime's own.
const fdReserve = 64

// startDelay lets every worker reach its poller before the common start.
const startDelay = 2 * time.Millisecond

// Run performs the run cfg describes and returns its figures. An error means
// it could not run at all. If progress is not nil, a status line is redrawn
// on it once a second (it should be a terminal). Closing stop interrupts
// the run: it ends at once, and the result (Interrupted set) holds what was
// measured until then; frames in flight and connects not done are given up,
// not counted as lost or as errors. A nil stop never interrupts.
func Run(cfg Config, progress io.Writer, stop <-chan struct{}) (*Result, error) {
	if cfg.Idle > 0 {
		return runIdle(&cfg, stop)
	}
	var line *progressLine
	if progress != nil {
		line = newProgressLine(progress)
	}
	return runLoad(&cfg, line, stop)
}

// interrupter halts the workers, abandoning what is in flight, when stop
// is closed, and remembers when.
type interrupter struct {
	done chan struct{}
	wg   sync.WaitGroup
	at   atomic.Int64 // when stop was seen; 0 if it was not
}

func watchStop(stop <-chan struct{}, ws []*worker) *interrupter {
	in := &interrupter{done: make(chan struct{})}
	if stop == nil {
		return in
	}
	in.wg.Go(func() {
		select {
		case <-stop:
			in.at.Store(max(now(), 1))
			for _, w := range ws {
				w.halt(true)
			}
		case <-in.done:
		}
	})
	return in
}

// end stops watching; the workers are not touched after it returns.
func (in *interrupter) end() {
	close(in.done)
	in.wg.Wait()
}

// interrupted reports whether the run was interrupted, and when.
func (in *interrupter) interrupted() (int64, bool) {
	at := in.at.Load()
	return at, at != 0
}

// checkFiles raises the open-file limit and checks that n connections fit.
func checkFiles(n int) error {
	limit, err := raiseFileLimit()
	if err != nil {
		return err
	}
	if need := uint64(n) + fdReserve; need > limit {
		return fmt.Errorf("%d connections need about %d open files, but the limit is %d even after raising the soft limit to the hard one; raise the hard limit (ulimit -Hn, LimitNOFILE=) or use fewer connections", n, need, limit)
	}
	return nil
}

// startWorkers splits total connections over cfg.Threads workers.
func startWorkers(cfg *Config, total int, perConn uint64, progress bool) ([]*worker, error) {
	if err := checkFiles(total); err != nil {
		return nil, err
	}
	x, err := cfg.wire()
	if err != nil {
		return nil, err
	}
	d, err := newDialer(cfg.Target, total)
	if err != nil {
		return nil, err
	}
	// Each worker holds an OS thread and wants a P whenever it is not in a
	// syscall; with fewer Ps than workers they would take turns.
	if runtime.GOMAXPROCS(0) < cfg.Threads {
		runtime.GOMAXPROCS(cfg.Threads)
	}
	ws := make([]*worker, 0, cfg.Threads)
	for t := range cfg.Threads {
		lo, hi := t*total/cfg.Threads, (t+1)*total/cfg.Threads
		w, err := newWorker(cfg, x, d.clone(), lo, hi, perConn, progress)
		if err != nil {
			for _, w := range ws {
				w.closePoller()
			}
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// runLoad connects every connection, then runs warmup, measurement and the
// grace period on all workers against one timeline.
func runLoad(cfg *Config, progress *progressLine, stop <-chan struct{}) (*Result, error) {
	ws, err := startWorkers(cfg, cfg.Conns, 0, progress != nil)
	if err != nil {
		return nil, err
	}
	in := watchStop(stop, ws)
	defer func() {
		in.end()
		for _, w := range ws {
			w.closePoller()
		}
	}()

	ready := make(chan *worker, len(ws))
	finished := make(chan *worker, len(ws))
	plans := make([]chan plan, len(ws))
	errs := make([]error, len(ws))
	for i, w := range ws {
		plans[i] = make(chan plan, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs[i] = w.loop() // connect phase: no active plan
			ready <- w
			if pl, ok := <-plans[i]; ok && errs[i] == nil {
				w.pl = pl
				errs[i] = w.loop()
			}
			w.shutdown()
			finished <- w
		}()
	}
	var connected int64
	for range ws {
		connected += (<-ready).st.connected
	}
	if _, stopped := in.interrupted(); connected == 0 && !stopped {
		for _, ch := range plans {
			close(ch)
		}
		for range ws {
			<-finished
		}
		return nil, cannotConnect(cfg, ws, errs)
	}

	start := now() + int64(startDelay)
	pl := plan{active: true, start: start}
	pl.recordFrom = start + int64(cfg.Warmup)
	pl.sendUntil = pl.recordFrom + int64(cfg.Duration)
	pl.drainUntil = pl.sendUntil + int64(cfg.Grace)
	for _, ch := range plans {
		ch <- pl
	}
	if progress != nil {
		progress.start(ws, pl)
	}

	// CPU is sampled at the edges of the measured window, from this
	// goroutine, while the workers carry on. An interruption ends the
	// window early; before it opened, nothing is sampled.
	var cpu [2]int64
	var srv [2]int64
	var cpuErr, srvErr error
	samples := 0
	for i, at := range []int64{pl.recordFrom, pl.sendUntil} {
		if !sleepUntilOr(at, stop) && i == 0 {
			break
		}
		cpu[i], cpuErr = sampleOr(cpuErr, selfCPU)
		if cfg.ServerPID > 0 {
			srv[i], srvErr = sampleOr(srvErr, func() (int64, error) { return procCPU(cfg.ServerPID) })
		}
		samples++
	}
	for range ws {
		<-finished
	}
	if progress != nil {
		progress.stop()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("run failed: %v", err)
	}

	r := newResult(cfg, ws)
	if at, stopped := in.interrupted(); stopped {
		r.Interrupted = true
		ran := time.Duration(max(0, min(at, pl.sendUntil)-pl.recordFrom))
		r.setMeasured(ran.Round(time.Millisecond))
	}
	if samples < 2 {
		return r, nil // interrupted before the measured window opened
	}
	if cpuErr == nil {
		r.setLoadgenCPU(cpu[1] - cpu[0])
	} else {
		r.warn("generator CPU time unavailable: %v", cpuErr)
	}
	if cfg.ServerPID > 0 {
		if srvErr == nil {
			r.setServerCPU(srv[1] - srv[0])
		} else {
			r.warn("server CPU time unavailable: %v", srvErr)
		}
	}
	return r, nil
}

func sampleOr(prev error, f func() (int64, error)) (int64, error) {
	if prev != nil {
		return 0, prev
	}
	return f()
}

// sleepUntilOr sleeps until at, or until stop is closed: then it returns
// false. A nil stop is never closed.
func sleepUntilOr(at int64, stop <-chan struct{}) bool {
	d := at - now()
	if d <= 0 {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(time.Duration(d))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// cannotConnect is the error of a run where no connection opened.
func cannotConnect(cfg *Config, ws []*worker, errs []error) error {
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cannot connect to %s: %v", cfg.Addr, err)
	}
	for _, w := range ws {
		if w.st.firstErr != nil {
			return w.st.firstErr // already "connect ADDR: cause"
		}
	}
	return fmt.Errorf("cannot connect to %s", cfg.Addr)
}

// never is a plan time that does not come.
const never = math.MaxInt64
