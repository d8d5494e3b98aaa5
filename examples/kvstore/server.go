package main

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frameloop/frameloop"
)

// The protocol: one command per frame, one reply per command, in order.
//
//	SET key value   -> OK
//	GET key         -> VALUE value | NIL
//	DEL key         -> OK | NIL
//	SLOWGET key     -> VALUE value | NIL, after the configured work time
//	anything else   -> ERR unknown command
//
// GET, SET and DEL are answered at once, on the loop. SLOWGET stands for
// a request that needs real work (a disk, another service): it goes to a
// worker pool, and its reply to a slot reserved in the connection's
// output order, so that a GET pipelined after a SLOWGET is still answered
// after it.

// server is the frameloop handler.
type server struct {
	store   *store
	jobs    chan job
	slow    time.Duration
	perConn int64 // slow requests one connection may have in flight
	workers sync.WaitGroup
	most    atomic.Int64 // the most slow requests one connection had in flight
}

// session is a connection's state: its slow requests in flight, and
// whether its reading is paused for them. The two change together, under
// mu: a worker deciding to resume must not undo a pause the loop decided
// after it looked.
type session struct {
	mu       sync.Mutex
	inFlight int64
	paused   bool
}

// job is a slow request on its way to a worker, with the answer as of
// its arrival: a SET pipelined after it must not change it.
type job struct {
	c      *frameloop.Conn
	reply  frameloop.Reply
	answer []byte
}

// newServer starts workers that do the slow work. The job queue can hold
// perConn jobs of every connection the server may have, so handing a job
// over never blocks the loop: a connection with perConn requests in
// flight is paused until one finishes.
func newServer(workers, maxConns, perConn int, slow time.Duration) *server {
	s := &server{
		store:   newStore(),
		jobs:    make(chan job, maxConns*perConn),
		slow:    slow,
		perConn: int64(perConn),
	}
	for range workers {
		s.workers.Go(s.work)
	}
	return s
}

// stop ends the workers, once the server has stopped.
func (s *server) stop() {
	close(s.jobs)
	s.workers.Wait()
}

func (s *server) OnOpen(c *frameloop.Conn) { c.SetValue(&session{}) }

func (s *server) OnClose(*frameloop.Conn, error) {}

func (s *server) OnFrame(c *frameloop.Conn, frame []byte) {
	cmd, rest, _ := bytes.Cut(frame, []byte(" "))
	switch string(cmd) {
	case "GET":
		c.Write(s.lookup(rest))
	case "SET":
		key, value, _ := bytes.Cut(rest, []byte(" "))
		s.store.set(key, value)
		c.Write([]byte("OK"))
	case "DEL":
		if s.store.del(rest) {
			c.Write([]byte("OK"))
		} else {
			c.Write([]byte("NIL"))
		}
	case "SLOWGET":
		s.slowGet(c, rest)
	default:
		c.Write([]byte("ERR unknown command"))
	}
}

func (s *server) lookup(key []byte) []byte {
	if v, ok := s.store.get(key); ok {
		return append([]byte("VALUE "), v...)
	}
	return []byte("NIL")
}

// slowGet reserves the reply's place and hands the work to the pool.
func (s *server) slowGet(c *frameloop.Conn, key []byte) {
	r, err := c.Reserve()
	if err != nil {
		// The output is full (ErrBackpressure): this client is far
		// behind in reading its replies. Dropping one reply would break
		// the order every later one relies on: close instead.
		c.Close()
		return
	}
	sess := c.Value().(*session)
	sess.mu.Lock()
	sess.inFlight++
	if sess.inFlight >= s.perConn && !sess.paused {
		sess.paused = true
		c.PauseReading() // no more from this client until a worker is done
	}
	n := sess.inFlight
	sess.mu.Unlock()
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	select {
	case s.jobs <- job{c: c, reply: r, answer: s.lookup(key)}:
	default:
		// Every connection's share of the queue is full (connections
		// that closed may still have jobs queued): say so, in order.
		r.Write([]byte("ERR busy"))
		s.done(c)
	}
}

func (s *server) work() {
	for j := range s.jobs {
		if j.c.Context().Err() == nil { // the client is still there
			time.Sleep(s.slow)
			j.reply.Write(j.answer)
		} else {
			j.reply.Cancel()
		}
		s.done(j.c)
	}
}

// done notes a slow request finished, and lets its client go on.
func (s *server) done(c *frameloop.Conn) {
	sess := c.Value().(*session)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.inFlight--
	if sess.paused && sess.inFlight < s.perConn {
		sess.paused = false
		c.ResumeReading()
	}
}
