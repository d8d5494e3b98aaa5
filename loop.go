package frameloop

import (
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frameloop/frameloop/internal/bufpool"
	"github.com/frameloop/frameloop/internal/deadline"
	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
)

const (
	readBufferSize = 64 << 10
	eventsPerWait  = 1024
	// flushRounds bounds how often one pass re-flushes connections made
	// dirty by the pass itself (a resumed connection decoding its buffered
	// frames), so that one busy connection cannot hold the loop; what is
	// left makes the next wait return at once.
	flushRounds = 8
)

// Requests other goroutines post to a loop, as bits of loop.requests.
const (
	reqShutdown uint32 = 1 << iota // stop accepting, drain connections, exit
	reqForce                       // close every connection now and exit
	reqAccept                      // a slot freed: accept again if paused at the cap
	reqHandoff                     // connections wait in handoffs
	reqMemory                      // input memory freed: retry connections waiting for it
	reqTLS                         // TLS handshakes reported, or a handshake slot freed
)

// loop is one event loop: a poller, the connections it watches, their
// deadline lists, and the queues through which other goroutines reach it.
// Everything not guarded by outMu belongs to the loop's goroutine.
type loop struct {
	id     int
	srv    *Server
	cfg    *config
	h      Handler
	log    *slog.Logger
	p      poller.Poller
	epoch  time.Time
	now    int64 // nanoseconds since epoch, read once per pass
	events []poller.Event

	conns  []*connState // indexed by descriptor
	free   []*connState // closed states, reused before allocating
	nconns int
	gens   uint32 // the last generation issued: see nextGen
	// cur is the connection whose handler callback is running, so that
	// a panic in it closes that connection only (see contain).
	cur *Conn

	// Copies of the configuration the hot path reads, next to the loop's
	// other fields rather than behind a pointer.
	maxQueued, highWater, lowWater int64
	format, outFormat              *framing.Format
	// curRaw is the frame being delivered, for Conn.Frame (while cur is
	// its connection and OnFrame runs).
	curRaw []byte

	rbuf []byte // every read lands here first; shared by all connections
	// The echo's direct path (echo.go): direct is the connection whose
	// frames are being decoded from rbuf with nothing queued; span, the
	// frames EchoHandler replied with, still in rbuf, for spanOf.
	direct, spanOf *connState
	span           []byte
	vec            [][]byte
	wv             sock.Vectored

	// idleLists[0] is Config.IdleTimeout's; the others hold the
	// connections with their own (idle.go).
	idleLists            []*deadline.List
	quiet, write, linger deadline.List
	handshake            deadline.List // TLS handshakes not complete

	acceptor sock.Acceptor
	accept   func(lfd int) (int, sock.Addr, error) // acceptor.Accept; tests replace it
	ln       listener
	draining bool

	// TLS (tls.go), by descriptor; nil without Config.TLS. hsWait lists
	// the connections waiting for a handshake slot; plain receives what
	// Decrypt produces.
	tls       []*tlsConn
	hsWait    []connRef
	hsWaiting atomic.Bool
	plain     []byte

	// memWait lists, oldest first, the connections paused until the input
	// budget has room (inbuf.go); memWaiting counts the live ones.
	memWait    []connRef
	memWaiting atomic.Int32

	proxyWarn  rateLimit
	sizeWarn   rateLimit
	acceptWarn rateLimit

	requests atomic.Uint32
	sleeping atomic.Bool // in, or about to enter, a Wait that only a wakeup ends
	load     atomic.Int64
	// stopped is set, under outMu, once the loop has stopped: nothing
	// handed to it after that would ever be adopted.
	stopped bool

	// outMu guards the output queues of this loop's connections and the
	// queues below; Conn.Write and Conn.Close take it from any goroutine.
	outMu    sync.Mutex
	dirty    []connRef // connections with output or a close request to handle
	handoffs []handoff // connections accepted by another loop for this one
	shared   sharedStats
	slots    []*slot // free reply slots (reply.go)
	// tlsEvents are the TLS connections whose handshake goroutine has
	// something for the loop (tls.go); tlsEventsSpare is their next slice.
	tlsEvents, tlsEventsSpare []*tlsConn
	wrappers                  []*bufpool.Buf // empty buffer wrappers for reply placeholders

	flushing []connRef // the dirty batch being handled; loop-only
	stats    loopStats // loop-only; published into shared before each wait
}

// connRef names a connection by state and generation, so that a reference
// queued before the connection closed is recognised as stale.
type connRef struct {
	st  *connState
	gen uint32
}

type handoff struct {
	fd   int
	addr sock.Addr
}

func newLoop(s *Server, id int, p poller.Poller) *loop {
	l := &loop{
		id:     id,
		srv:    s,
		cfg:    s.cfg,
		h:      s.h,
		log:    s.cfg.Logger.With("loop", id),
		p:      p,
		epoch:  s.epoch,
		events: make([]poller.Event, eventsPerWait),
		rbuf:   make([]byte, readBufferSize),
		vec:    make([][]byte, 0, sock.IovMax),
		ln:     listener{fd: -1},

		maxQueued: int64(s.cfg.MaxQueued),
		highWater: int64(s.cfg.HighWater),
		lowWater:  int64(s.cfg.LowWater),
		format:    s.cfg.format,
		outFormat: s.cfg.outFormat,
	}
	l.accept = l.acceptor.Accept
	if s.cfg.TLS != nil {
		l.plain = make([]byte, readBufferSize)
		l.tls = make([]*tlsConn, 0)
	}
	l.idleLists = []*deadline.List{new(deadline.List)}
	l.idleLists[0].Init(s.cfg.IdleTimeout)
	l.quiet.Init(drainQuiet)
	l.handshake.Init(s.cfg.TLSHandshakeTimeout)
	l.write.Init(s.cfg.WriteTimeout)
	l.linger.Init(lingerPoll)
	l.proxyWarn.every = warnEvery
	l.sizeWarn.every = warnEvery
	l.acceptWarn.every = warnEvery
	return l
}

func (l *loop) clock() int64 { return int64(time.Since(l.epoch)) }

// run is the loop's goroutine. It returns when the loop has drained after
// a shutdown request, or on a poller failure.
func (l *loop) run() error {
	// One OS thread per loop: the loop's syscalls never queue behind other
	// goroutines' work on a shared thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.now = l.clock()
	for {
		n, err := l.p.Wait(l.events, l.prepareWait())
		l.sleeping.Store(false)
		if err != nil {
			l.log.Error("event loop failed", "err", err)
			l.teardown()
			return err
		}
		l.now = l.clock()
		// Requests first: once a shutdown is asked for, not one more
		// connection is accepted, even if the listener is among the events.
		l.serveRequests()
		for i := range n {
			l.dispatch(l.events[i])
		}
		l.flushDirty()
		l.expire()
		if l.draining && l.nconns == 0 && l.tryStop() {
			l.teardown()
			return nil
		}
	}
}

// nextGen issues a generation for a connection being opened. One counter
// per loop, not one per state: a recycled state must never again carry a
// tag that a stale event or handle of another incarnation could hold.
// 0 (a free state) and the listener's tag are never issued.
func (l *loop) nextGen() uint32 {
	l.gens++
	if l.gens == 0 || l.gens == listenerTag {
		l.gens = 1
	}
	return l.gens
}

// prepareWait publishes the loop's figures and returns how long the next
// Wait may block. It says "sleeping" under outMu, after checking the
// queues that outMu guards, so a writer either sees the loop busy (and it
// will find the writer's entry) or sees it sleeping and wakes it.
func (l *loop) prepareWait() int {
	l.outMu.Lock()
	l.publishLocked()
	busy := len(l.dirty) > 0 || len(l.handoffs) > 0
	if !busy {
		l.sleeping.Store(true)
	}
	l.outMu.Unlock()
	if busy || l.requests.Load() != 0 {
		return 0
	}
	return l.timeoutMs()
}

// publishLocked makes the loop's counters visible to Stats; outMu must be
// held.
func (l *loop) publishLocked() {
	l.stats.acceptPaused = l.ln.atCap || l.ln.retryAt != 0
	l.shared.loop = l.stats
}

// timeoutMs is the time to the earliest deadline, rounded up to whole
// milliseconds, or -1 when nothing is due.
func (l *loop) timeoutMs() int {
	next := int64(math.MaxInt64)
	for _, list := range [...]*deadline.List{&l.quiet, &l.write, &l.linger, &l.handshake} {
		if at, ok := list.Next(); ok && at < next {
			next = at
		}
	}
	for _, list := range l.idleLists {
		if at, ok := list.Next(); ok && at < next {
			next = at
		}
	}
	if l.ln.retryAt != 0 && l.ln.retryAt < next {
		next = l.ln.retryAt
	}
	if next == math.MaxInt64 {
		return -1
	}
	d := next - l.clock()
	if d <= 0 {
		return 0
	}
	return int(min((d+int64(time.Millisecond)-1)/int64(time.Millisecond), math.MaxInt32))
}

// wake makes the loop leave its Wait, if it is in one (or about to be).
// Wakeups coalesce: only the first caller after the loop went to sleep
// pays for the system call.
func (l *loop) wake() {
	if l.sleeping.Swap(false) {
		if err := l.p.Wake(); err != nil {
			l.log.Error("waking the event loop failed", "err", err)
		}
	}
}

// post sets request bits and wakes the loop.
func (l *loop) post(req uint32) {
	l.requests.Or(req)
	l.wake()
}

// markDirtyLocked queues st for the next flush; outMu must be held. It
// returns true when the caller should wake the loop.
func (l *loop) markDirtyLocked(st *connState) bool {
	if st.has(ctlDirty) {
		return false
	}
	st.setCtl(ctlDirty)
	l.dirty = append(l.dirty, connRef{st, st.gen})
	return true
}

func (l *loop) markDirty(st *connState) {
	l.outMu.Lock()
	l.markDirtyLocked(st)
	l.outMu.Unlock()
}

func (l *loop) dispatch(ev poller.Event) {
	// One deferred recover per event, that is per read batch, not per
	// frame: it costs nothing measurable on the hot path.
	defer l.contain()
	fd := int(ev.Fd)
	if fd == l.ln.fd && ev.Tag == listenerTag {
		l.acceptReady()
		return
	}
	if fd < 0 || fd >= len(l.conns) {
		return
	}
	st := l.conns[fd]
	// The generation check drops events meant for a connection that has
	// since closed and whose descriptor or state was given to another.
	if st == nil || st.gen != ev.Tag {
		return
	}
	gen := st.gen
	if ev.Ready&poller.Invalid != 0 {
		l.closeNow(st, ReasonError, errInvalidDescriptor)
		return
	}
	if ev.Ready&poller.Writable != 0 && st.waitWrite {
		l.flush(st, true)
		if st.gen != gen {
			return
		}
	}
	if ev.Ready&(poller.Readable|poller.Hangup) == 0 {
		return
	}
	if st.interest&poller.Read != 0 {
		l.readable(st)
		return
	}
	if ev.Ready&poller.Hangup != 0 {
		// Not reading, so reading cannot tell what broke: the connection is
		// dead in both directions. Let the pending output find the error.
		l.flush(st, true)
		if st.gen == gen {
			l.closeNow(st, ReasonReset, sock.SocketError(int(st.fd)))
		}
	}
}

// serveRequests handles what other goroutines posted.
func (l *loop) serveRequests() {
	req := l.requests.Swap(0)
	if req == 0 {
		return
	}
	if req&reqHandoff != 0 {
		l.adoptHandoffs()
	}
	if req&reqForce != 0 {
		l.beginShutdown()
		l.closeAll()
		return
	}
	if req&reqShutdown != 0 {
		l.beginShutdown()
	}
	if req&reqAccept != 0 {
		l.resumeAfterCap()
	}
	if req&reqMemory != 0 {
		l.retryMemoryWaiters()
	}
	if req&reqTLS != 0 {
		l.serveTLS()
	}
}

// closeAll closes every connection at once, for a forced shutdown.
func (l *loop) closeAll() {
	for _, st := range l.conns {
		if st != nil {
			l.guard(st, closeForShutdown)
		}
	}
}

func closeForShutdown(l *loop, st *connState) { l.closeNow(st, ReasonShutdown, ErrServerClosed) }

// flushDirty writes out every connection that was written to, or asked to
// close, since the last pass.
func (l *loop) flushDirty() {
	for range flushRounds {
		l.outMu.Lock()
		if len(l.dirty) == 0 {
			l.outMu.Unlock()
			return
		}
		l.flushing, l.dirty = l.dirty, l.flushing[:0]
		for i, r := range l.flushing {
			// An entry is stale if its connection closed since, or was
			// flushed already, right after the read that wrote to it.
			if r.st.gen != r.gen || !r.st.has(ctlDirty) {
				l.flushing[i].st = nil
			}
		}
		l.outMu.Unlock()
		for _, r := range l.flushing {
			if r.st != nil && r.st.gen == r.gen && r.st.phase != phaseFree {
				l.guard(r.st, flushQueued)
			}
		}
	}
}

func flushQueued(l *loop, st *connState) { l.flush(st, false) }

// expire closes the connections whose deadlines have passed and retries a
// paused accept. Only due entries are looked at: the lists are sorted.
func (l *loop) expire() {
	lists := [...]struct {
		list    *deadline.List
		expired func(*loop, *connState)
	}{
		{&l.quiet, (*loop).quietExpired},
		{&l.write, (*loop).writeExpired},
		{&l.linger, (*loop).lingerExpired},
		{&l.handshake, (*loop).handshakeExpired},
	}
	for _, x := range lists {
		l.expireList(x.list, x.expired)
	}
	for _, list := range l.idleLists {
		l.expireList(list, (*loop).idleExpired)
	}
	if l.ln.retryAt != 0 && l.now >= l.ln.retryAt {
		l.ln.retryAt = 0
		l.resumeAfterBackoff()
	}
}

// expireList hands the entries of list whose deadline has passed to
// expired; only those are looked at: the list is sorted.
func (l *loop) expireList(list *deadline.List, expired func(*loop, *connState)) {
	for e := list.PopExpired(l.now); e != nil; e = list.PopExpired(l.now) {
		st := stateOf(e)
		st.timerList = timerNone
		l.guard(st, expired)
	}
}

func (l *loop) idleExpired(st *connState) {
	if l.tls != nil && st.phase == phaseOpen {
		// TLS ends with close_notify: a client must be able to tell the
		// server's close from a truncation. The graceful way sends it.
		l.startClosing(st, ReasonIdleTimeout)
		return
	}
	l.closeNow(st, ReasonIdleTimeout, ErrIdleTimeout)
}

func (l *loop) writeExpired(st *connState) {
	// A socket reports writable only once about a third of its send
	// buffer has drained, so a slow reader can make progress that the
	// loop never hears of. Before calling it stuck, offer the socket
	// more: if the kernel takes anything, the peer is reading.
	gen, before := st.gen, l.stats.bytesOut
	l.flush(st, true)
	if st.gen == gen && l.stats.bytesOut == before {
		l.closeNow(st, ReasonWriteTimeout, ErrWriteTimeout)
	}
}

// teardown releases what the loop still holds once it stops, and marks it
// stopped so that no connection is handed to it any more.
func (l *loop) teardown() {
	l.closeAll()
	l.closeListener()
	l.outMu.Lock()
	l.stopped = true
	pending := l.handoffs
	l.handoffs = nil
	l.outMu.Unlock()
	for _, h := range pending {
		sock.Close(h.fd)
		l.load.Add(-1)
		l.srv.adm.release()
	}
	l.outMu.Lock()
	l.publishLocked()
	l.outMu.Unlock()
	l.p.Close()
}
