package frameloop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
	"github.com/frameloop/frameloop/internal/tlslayer"
)

// Server serves a Handler over length-prefixed frames.
type Server struct {
	cfg   *config
	h     Handler
	epoch time.Time
	adm   admission
	inmem inputBudget
	// handshakes holds a token per TLS handshake running (tls.go);
	// handshaking counts them for Stats.
	handshakes  chan struct{}
	handshaking atomic.Int64

	mu     sync.Mutex
	state  serverState
	lnFds  []int
	bound  sock.Endpoint
	loops  []*loop
	served chan struct{} // closed when Serve's loops have all returned
	// handoff: one loop accepts for all. Set before the loops start.
	handoff bool
	// listening counts the loops whose listener is still open, so that
	// Shutdown can tell when no connection can be accepted any more.
	listening sync.WaitGroup
}

type serverState uint8

const (
	stateNew serverState = iota
	stateListening
	stateServing
	stateClosed
)

// New returns a server for h configured by cfg. It validates cfg; it does
// not bind anything yet.
func New(h Handler, cfg Config) (*Server, error) {
	if h == nil {
		return nil, errNoHandler
	}
	rc, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: rc, h: h, epoch: time.Now(), served: make(chan struct{})}
	s.adm.max = int64(rc.MaxConns)
	s.adm.resume = s.resumeAccepting
	s.inmem.limit = max(rc.MaxInputMemory, 0)
	s.handshakes = make(chan struct{}, rc.MaxHandshakes)
	return s, nil
}

// Listen binds the listening socket(s), so that Addr is known before Serve.
// Serve calls it if it has not been called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateClosed {
		return ErrServerClosed
	}
	if s.state != stateNew {
		return errors.New("frameloop: Listen called twice")
	}
	ep := s.cfg.endpoint
	n, reuse := 1, false
	if s.cfg.Balance == "reuseport" && s.cfg.Loops > 1 {
		n, reuse = s.cfg.Loops, true
	}
	for i := range n {
		fd, err := sock.Listen(ep, reuse)
		if err != nil {
			s.closeListenersLocked()
			return err
		}
		s.lnFds = append(s.lnFds, fd)
		if i == 0 {
			// Resolve port 0 so the other listeners bind the same port.
			if ep, err = sock.LocalEndpoint(fd, ep.Network); err != nil {
				s.closeListenersLocked()
				return err
			}
		}
	}
	s.bound = ep
	s.state = stateListening
	return nil
}

func (s *Server) closeListenersLocked() {
	for _, fd := range s.lnFds {
		sock.Close(fd)
	}
	s.lnFds = nil
	if s.bound.Network == "unix" {
		os.Remove(s.bound.Path)
	}
}

// Addr is the address the server listens on (nil before Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.state == stateNew:
		return nil
	case s.bound.Network == "unix":
		return &net.UnixAddr{Net: "unix", Name: s.bound.Path}
	}
	return net.TCPAddrFromAddrPort(netipAddrPort(s.bound))
}

// ListenAndServe is Listen followed by Serve.
func (s *Server) ListenAndServe() error { return s.Serve() }

// Serve runs the event loops until Shutdown and returns ErrServerClosed,
// or the error that stopped a loop.
func (s *Server) Serve() error {
	s.mu.Lock()
	state := s.state
	s.mu.Unlock()
	if state == stateNew {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.state != stateListening {
		s.mu.Unlock()
		if s.state == stateClosed {
			return ErrServerClosed
		}
		return errors.New("frameloop: Serve called twice")
	}
	loops, err := s.buildLoops()
	if err != nil {
		s.closeListenersLocked()
		s.state = stateClosed
		s.mu.Unlock()
		return err
	}
	s.loops = loops
	s.inmem.loops = loops
	s.handoff = len(loops) > 1 && len(s.lnFds) == 1
	s.lnFds = nil // owned by the loops now
	s.state = stateServing
	s.mu.Unlock()

	s.cfg.Logger.Info("listening", "addr", s.bound.String(), "backend", s.cfg.Backend,
		"loops", len(loops), "balance", s.cfg.Balance, "max_conns", s.cfg.MaxConns,
		"framing", s.cfg.format.Spec().String())

	errs := make(chan error, len(loops))
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(func() {
			if err := l.run(); err != nil {
				errs <- err
				// One loop failing takes the server down rather than leaving
				// a share of connections unserved.
				for _, other := range loops {
					other.post(reqForce)
				}
			}
		})
	}
	wg.Wait()
	if s.bound.Network == "unix" {
		os.Remove(s.bound.Path)
	}
	close(s.served)
	select {
	case err := <-errs:
		return err
	default:
		return ErrServerClosed
	}
}

func (s *Server) buildLoops() ([]*loop, error) {
	loops := make([]*loop, 0, s.cfg.Loops)
	fail := func(err error) ([]*loop, error) {
		for _, l := range loops {
			l.p.Close()
		}
		return nil, err
	}
	for i := range s.cfg.Loops {
		p, err := poller.New(s.cfg.Backend)
		if err != nil {
			return fail(err)
		}
		l := newLoop(s, i, p)
		loops = append(loops, l)
		if i < len(s.lnFds) {
			if err := p.Add(s.lnFds[i], listenerTag, poller.Read); err != nil {
				return fail(fmt.Errorf("watching the listener: %w", err))
			}
			l.ln.fd, l.ln.watched = s.lnFds[i], true
			s.listening.Add(1)
		}
	}
	return loops, nil
}

// place gives an accepted connection to a loop: the accepting one when
// every loop has its own listener, otherwise the least loaded one. A loop
// that has already stopped (it drained before the accepting loop saw the
// shutdown) would never adopt it: the accepting loop keeps it then.
func (s *Server) place(from *loop, fd int, addr sock.Addr) {
	if s.handoff {
		if target := s.leastLoaded(); target != from {
			target.outMu.Lock()
			if !target.stopped {
				target.load.Add(1)
				target.handoffs = append(target.handoffs, handoff{fd, addr})
				target.outMu.Unlock()
				target.post(reqHandoff)
				return
			}
			target.outMu.Unlock()
		}
	}
	from.load.Add(1)
	from.open(fd, addr)
}

func (s *Server) leastLoaded() *loop {
	best := s.loops[0]
	for _, l := range s.loops[1:] {
		if l.load.Load() < best.load.Load() {
			best = l
		}
	}
	return best
}

// resumeAccepting tells every loop that a slot is free again.
func (s *Server) resumeAccepting() {
	for _, l := range s.loops {
		l.post(reqAccept)
	}
}

// Shutdown stops the server gracefully: it stops accepting (closing the
// listener), handles the frames already received, sends their replies, and
// closes each connection once it has nothing left to send; idle
// connections close at once. If ctx ends first, the remaining connections
// are closed at once and ctx's error is returned. Serve then returns
// ErrServerClosed.
//
// Shutdown may be called more than once, from several goroutines: every
// call waits for the drain (or its own ctx) the same way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	prev := s.state
	s.state = stateClosed
	loops := s.loops
	switch {
	case prev == stateClosed && loops != nil:
		s.mu.Unlock()
		return s.awaitDrain(ctx, loops)
	case prev != stateServing:
		s.closeListenersLocked()
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	if s.bound.Network == "unix" {
		// New clients are refused at once rather than left in a backlog.
		os.Remove(s.bound.Path)
	}
	for _, l := range loops {
		l.post(reqShutdown)
	}
	stopped := make(chan struct{})
	go func() {
		s.listening.Wait()
		close(stopped)
	}()
	// Every listener closes before its loop can finish draining, so
	// stopped comes before served.
	select {
	case <-stopped:
		s.cfg.Logger.Info("shutting down", "accepting", false, "connections", s.adm.open.Load())
	case <-ctx.Done():
	}
	return s.awaitDrain(ctx, loops)
}

// awaitDrain waits until Serve's loops have all returned; if ctx ends
// first, it closes the remaining connections at once and returns ctx's
// error.
func (s *Server) awaitDrain(ctx context.Context, loops []*loop) error {
	select {
	case <-s.served:
		return nil
	case <-ctx.Done():
	}
	for _, l := range loops {
		l.post(reqForce)
	}
	<-s.served
	return ctx.Err()
}

// Stats returns the server's counters, summed over its loops.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	var st Stats
	// The loops publish once per pass, each at its own moment: summing
	// their counts of open connections could add one loop's stale count to
	// another's fresh one. The admission count is exact at all times.
	st.Connections = int(s.adm.open.Load())
	st.Closed = make(map[CloseReason]uint64, numReasons)
	for _, l := range loops {
		l.outMu.Lock()
		sh := l.shared
		l.outMu.Unlock()
		st.Accepted += sh.loop.accepted
		for i, n := range sh.loop.closed {
			if n > 0 {
				st.Closed[CloseReason(i)] += n
			}
		}
		st.FramesIn += sh.loop.framesIn
		st.FramesOut += sh.framesOut + sh.loop.framesOut
		st.BytesIn += sh.loop.bytesIn
		st.BytesOut += sh.loop.bytesOut
		st.ReadPauses += sh.loop.readPauses
		st.Backpressure += sh.backpressured
		st.AcceptPaused = st.AcceptPaused || sh.loop.acceptPaused
		st.Panics += sh.loop.panics
		st.MemoryPauses += sh.loop.memPauses
		st.TLSHandshakes += sh.loop.tlsOK
		for r, n := range sh.loop.tlsFailed {
			if n > 0 {
				if st.TLSHandshakeFailures == nil {
					st.TLSHandshakeFailures = map[string]uint64{}
				}
				st.TLSHandshakeFailures[tlslayer.Reason(r).String()] += n
			}
		}
		for i, n := range sh.loop.tlsLatency.counts {
			st.TLSHandshakeLatency[i] += n
		}
		st.TLSHandshakeLatencySum += time.Duration(sh.loop.tlsLatency.sum)
	}
	st.TLSHandshaking = int(s.handshaking.Load())
	st.InputMemory = s.inmem.used.Load()
	return st
}

func netipAddrPort(ep sock.Endpoint) netip.AddrPort {
	return netip.AddrPortFrom(ep.IP, uint16(ep.Port))
}
