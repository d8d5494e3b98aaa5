package loadgen

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/frameloop/frameloop/internal/poller"
	"golang.org/x/sys/unix"
)

const (
	readBufSize   = 256 << 10 // one read takes in many pipelined replies, or a big one's good part
	writeBufSize  = 64 << 10
	eventsPerWait = 1024
	// connectWindow bounds the connects a worker has in progress, so that
	// opening many connections does not overflow the server's SYN backlog.
	connectWindow  = 512
	connectTimeout = 10 * time.Second
	retryDelay     = time.Millisecond // between connects to a full Unix-socket backlog
	maxWaitMs      = 100              // a worker re-checks its clock at least this often
	// spinWindow: a deadline nearer than this is waited for by polling
	// without blocking, not by sleeping on the timer. Sleeping costs a
	// timer reprogramming to arm and a wakeup to end, together tens of
	// microseconds on a virtual machine whose timer writes trap to the
	// hypervisor (a 10 µs timerfd sleep measured 30 µs per cycle on the
	// 2-vCPU machine of BENCHMARKS.md); an open loop at 100,000 frames/s
	// has a frame due every 10 µs, and would spend its time arming timers
	// and send late.
	spinWindow = 50 * time.Microsecond
	timerTag   = math.MaxUint32 // the poller tag of the worker's timer

	histMin = 1          // µs
	histMax = 60_000_000 // µs: 60 s
	histSig = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSig) }

// plan is the run's timeline, on the package clock. Sending starts at
// start; replies received in [recordFrom, sendUntil) are measured; no frame
// is started from sendUntil on; replies still in flight are awaited until
// drainUntil.
type plan struct {
	active     bool // false: connect only
	start      int64
	recordFrom int64
	sendUntil  int64
	drainUntil int64
}

// stats are a worker's counts; they are read by others only after it ends.
type stats struct {
	frames, bytes int64 // replies verified in the measured window
	replies       int64 // replies verified at any time
	sent          int64 // frames started
	mismatches    int64
	lost          int64
	connErrors    int64
	connected     int64
	resolved      int64 // idle mode: connections answered or failed
	firstErr      error
}

// published is what a worker shows while it runs: it stores these once per
// pass, and the progress line and the idle mode read them.
type published struct {
	replies  atomic.Int64
	errors   atomic.Int64
	resolved atomic.Int64
	p99      atomic.Int64
}

// worker drives a share of the connections from one OS thread: one poller,
// one read buffer, one write buffer, no goroutine per connection.
type worker struct {
	p     poller.Poller
	tm    *timer // nil where there is no timerfd
	dial  *dialer
	addr  string
	sizes sizes
	wire  wire

	conns  []conn
	events []poller.Event
	rbuf   []byte
	wbuf   []byte
	queue  []uint32 // connections to flush at the end of this pass
	retry  []uint32 // Unix connects refused with EAGAIN, to try again

	toOpen     int // conns[toOpen:] are not opened yet
	oldest     int // no connection before it is still connecting
	connecting int // connects in progress, retries included

	pl         plan
	begun      bool // pl.start has passed
	now        int64
	inflight   int64 // frames started and neither answered nor given up, all connections
	pipeline   uint64
	perConn    uint64 // frames per connection; 0: no limit (idle mode sends 1)
	openLoop   bool
	nsPerFrame float64
	totalConns uint64

	schedIdx int    // open loop: the connection of the next due frame...
	schedK   uint64 // ...its sequence number...
	schedAt  int64  // ...and its intended time

	hist     *hdrhistogram.Histogram
	lag      *hdrhistogram.Histogram // open loop: how late frames were started
	st       stats
	pub      published
	progress bool
	nextSnap int64
	stop     atomic.Bool
	// abandon, set before stop, says the run was interrupted: frames in
	// flight and connects not done then are given up, not counted as the
	// server's failures. abandoned is its value as shutdown saw it.
	abandon   atomic.Bool
	abandoned bool
}

// newWorker builds a worker for the connections with global ids [lo, hi).
func newWorker(cfg *Config, x wire, d *dialer, lo, hi int, perConn uint64, progress bool) (*worker, error) {
	p, err := poller.New(poller.Default())
	if err != nil {
		return nil, err
	}
	w := &worker{
		p:          p,
		dial:       d,
		addr:       cfg.Addr,
		sizes:      newSizes(cfg.SizeMin, cfg.SizeMax),
		wire:       x,
		conns:      make([]conn, hi-lo),
		events:     make([]poller.Event, eventsPerWait),
		rbuf:       make([]byte, readBufSize),
		wbuf:       make([]byte, writeBufSize),
		pipeline:   uint64(cfg.Pipeline),
		perConn:    perConn,
		openLoop:   cfg.Rate > 0,
		totalConns: uint64(cfg.Conns),
		hist:       newHistogram(),
		progress:   progress,
	}
	if w.openLoop {
		w.nsPerFrame = 1e9 / cfg.Rate
		w.lag = newHistogram()
	}
	if w.tm, err = newTimer(); err == nil {
		if err = p.Add(w.tm.fd, timerTag, poller.Read); err != nil {
			w.tm.close()
			p.Close()
			return nil, err
		}
	} else {
		w.tm = nil // fall back on millisecond poll timeouts
	}
	ring := 1 << bits.Len(uint(cfg.Pipeline-1)) // next power of two >= pipeline
	origins := make([]int64, ring*len(w.conns))
	for i := range w.conns {
		c := &w.conns[i]
		c.fd = -1
		c.id = uint32(lo + i)
		c.index = uint32(i)
		c.origins = origins[i*ring : (i+1)*ring : (i+1)*ring]
		c.mask = uint64(ring - 1)
	}
	return w, nil
}

// loop runs passes until the plan is over, the worker is stopped, or (with
// no active plan) every connection is open or has failed.
func (w *worker) loop() error {
	for {
		w.now = now()
		if w.stop.Load() {
			return nil
		}
		w.openMore()
		if !w.pl.active {
			if w.toOpen == len(w.conns) && w.connecting == 0 {
				return nil
			}
		} else {
			if !w.begun && w.now >= w.pl.start {
				w.begin()
			}
			if w.openLoop && w.begun {
				w.schedule()
			}
			if w.now >= w.pl.drainUntil || (w.now >= w.pl.sendUntil && w.inflight == 0) {
				return nil
			}
		}
		w.flushQueue()
		w.publish()
		timeout, err := w.arm(w.nextDeadline())
		if err != nil {
			return err
		}
		n, err := w.p.Wait(w.events, timeout)
		if err != nil {
			return err
		}
		for i := range n {
			w.handle(w.events[i])
		}
	}
}

func (w *worker) handle(ev poller.Event) {
	if ev.Tag == timerTag {
		w.tm.fired()
		return
	}
	c := &w.conns[ev.Tag]
	switch c.state {
	case stateConnecting:
		w.onConnectDone(c)
	case stateOpen:
		if ev.Ready&poller.Invalid != 0 {
			w.fail(c, errors.New("descriptor closed under the poller"))
			return
		}
		if ev.Ready&(poller.Readable|poller.Hangup) != 0 {
			w.onReadable(c)
		}
		if ev.Ready&poller.Writable != 0 {
			w.queueWrite(c)
		}
	}
}

// begin starts sending: every open connection gets its first frames.
func (w *worker) begin() {
	w.begun = true
	if w.openLoop {
		w.schedAt = w.intended(w.conns[0].id, 0)
		return
	}
	for i := range w.conns {
		w.queueWrite(&w.conns[i])
	}
}

// nextDeadline is the next time the worker must act without an event, or 0.
func (w *worker) nextDeadline() int64 {
	d := int64(math.MaxInt64)
	if w.connecting > 0 {
		d = min(d, w.conns[w.oldest].connectBy)
	}
	if len(w.retry) > 0 {
		d = min(d, w.now+int64(retryDelay))
	}
	if w.pl.active {
		if !w.begun {
			d = min(d, w.pl.start)
		} else {
			if w.openLoop && w.schedAt < w.pl.sendUntil {
				d = min(d, w.schedAt)
			}
			if w.now < w.pl.sendUntil {
				d = min(d, w.pl.sendUntil)
			}
			d = min(d, w.pl.drainUntil)
		}
	}
	if w.progress {
		d = min(d, w.nextSnap)
	}
	if d == math.MaxInt64 {
		return 0
	}
	return d
}

// arm sets the timer for deadline and returns the poll timeout to use.
func (w *worker) arm(deadline int64) (int, error) {
	if deadline == 0 {
		if w.tm != nil {
			if err := w.tm.set(0, w.now); err != nil {
				return 0, err
			}
		}
		return maxWaitMs, nil
	}
	if deadline-w.now < int64(spinWindow) {
		return 0, nil
	}
	if w.tm != nil {
		if err := w.tm.set(deadline, w.now); err != nil {
			return 0, err
		}
		return maxWaitMs, nil
	}
	ms := (deadline - w.now + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	return int(min(ms, maxWaitMs)), nil
}

// publish shows the worker's progress to other goroutines.
func (w *worker) publish() {
	w.pub.replies.Store(w.st.replies)
	w.pub.errors.Store(w.st.mismatches + w.st.lost + w.st.connErrors)
	w.pub.resolved.Store(w.st.resolved)
	if w.progress && w.now >= w.nextSnap {
		// Once a second: a percentile walks the whole histogram.
		w.pub.p99.Store(w.hist.ValueAtQuantile(99))
		w.nextSnap = w.now + int64(time.Second)
	}
}

// openMore starts connects up to the window, retries Unix connects refused
// for a full backlog, and gives up on connects past their deadline.
func (w *worker) openMore() {
	for w.toOpen < len(w.conns) && w.connecting < connectWindow {
		c := &w.conns[w.toOpen]
		w.toOpen++
		w.startConnect(c)
	}
	if len(w.retry) > 0 {
		keep := w.retry[:0]
		for _, i := range w.retry {
			c := &w.conns[i]
			if c.state != stateRetry {
				continue
			}
			if w.now >= c.connectBy {
				w.connectFailed(c, errors.New("timed out (the listen backlog stayed full)"))
				continue
			}
			if w.connect(c) == stateRetry {
				keep = append(keep, i)
			}
		}
		w.retry = keep
	}
	// Connects are started in order with the same timeout, so the oldest one
	// still in progress has the earliest deadline.
	for w.oldest < w.toOpen {
		c := &w.conns[w.oldest]
		if c.state == stateConnecting && w.now >= c.connectBy {
			w.connectFailed(c, errors.New("timed out"))
		}
		if c.state == stateConnecting || c.state == stateRetry {
			break
		}
		w.oldest++
	}
}

func (w *worker) startConnect(c *conn) {
	fd, err := w.dial.socket(c.id)
	if err != nil {
		w.connecting++
		w.connectFailed(c, err)
		return
	}
	c.fd = fd
	c.connectBy = w.now + int64(connectTimeout)
	w.connecting++
	if w.connect(c) == stateRetry {
		w.retry = append(w.retry, c.index)
	}
}

// connect calls connect(2) on c's socket and moves c to the state that follows.
func (w *worker) connect(c *conn) connState {
	switch err := unix.Connect(c.fd, w.dial.target); err {
	case nil: // Unix sockets connect at once
		w.opened(c, false)
	case unix.EINPROGRESS, unix.EINTR: // TCP: wait for writability
		if err := w.p.Add(c.fd, c.index, poller.Write); err != nil {
			w.connectFailed(c, err)
			break
		}
		c.interest = poller.Write
		c.state = stateConnecting
	case unix.EAGAIN: // a Unix socket's backlog is full
		c.state = stateRetry
	default:
		w.connectFailed(c, err)
	}
	return c.state
}

func (w *worker) onConnectDone(c *conn) {
	errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = unix.Errno(errno)
	}
	if err != nil {
		w.connectFailed(c, err)
		return
	}
	w.opened(c, true)
}

// opened makes c an open connection, watched for reads.
func (w *worker) opened(c *conn, registered bool) {
	var err error
	if registered {
		err = w.p.Modify(c.fd, c.index, c.interest, poller.Read)
	} else {
		err = w.p.Add(c.fd, c.index, poller.Read)
	}
	if err != nil {
		w.connectFailed(c, err)
		return
	}
	w.connecting--
	c.interest = poller.Read
	c.state = stateOpen
	w.st.connected++
	if w.begun {
		w.queueWrite(c)
	}
}

func (w *worker) connectFailed(c *conn, err error) {
	w.connecting--
	w.st.connErrors++
	if w.st.firstErr == nil {
		w.st.firstErr = fmt.Errorf("connect %s: %w", w.addr, err)
	}
	w.close(c)
}

// fail ends an open connection on an error: its frames in flight are lost.
func (w *worker) fail(c *conn, err error) {
	if c.state != stateOpen {
		return
	}
	w.st.connErrors++
	if w.st.firstErr == nil {
		w.st.firstErr = err
	}
	w.close(c)
}

// close closes c's socket; frames it had in flight are counted lost,
// unless the run was interrupted.
func (w *worker) close(c *conn) {
	if c.state == stateOpen {
		inflight := int64(c.started() - c.expected)
		if !w.abandoned {
			w.st.lost += inflight
		}
		w.inflight -= inflight
		c.expected = c.started()
	}
	if c.fd >= 0 {
		if c.state == stateOpen || c.state == stateConnecting {
			w.p.Remove(c.fd, c.interest)
		}
		unix.Close(c.fd)
		c.fd = -1
	}
	c.state = stateClosed
	c.interest = 0
	if w.perConn > 0 && !c.done {
		c.done = true
		w.st.resolved++
	}
}

// shutdown closes every connection. Connections that never got open count
// as connection errors, unless the run was interrupted. The poller stays
// open until closePoller, so that another goroutine may still Wake it
// meanwhile.
func (w *worker) shutdown() {
	w.abandoned = w.abandon.Load()
	for i := range w.conns {
		c := &w.conns[i]
		switch c.state {
		case stateNew, stateConnecting, stateRetry:
			if !w.abandoned {
				w.st.connErrors++
				if w.st.firstErr == nil {
					w.st.firstErr = fmt.Errorf("connect %s: not done when the run ended", w.addr)
				}
			}
		}
		if c.state != stateClosed {
			w.close(c)
		}
	}
	w.connecting = 0
	if w.tm != nil {
		w.tm.close()
	}
	w.publish()
}

// halt makes the worker's loop return at its next pass, from any
// goroutine. With abandon, the run was interrupted (see worker.abandon).
func (w *worker) halt(abandon bool) {
	if abandon {
		w.abandon.Store(true)
	}
	w.stop.Store(true)
	w.p.Wake()
}

// closePoller releases the poller once the worker's goroutine has ended.
func (w *worker) closePoller() { w.p.Close() }
