package main

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/frameloop/frameloop"
)

// Hub broadcasts every frame a client sends to every other connected
// client. Clients live on different loops, so a broadcast is a Write from
// the sender's loop goroutine to connections owned by other loops — the
// cross-goroutine path of Conn.Write.
//
// Slow subscribers: a subscriber whose queue is full (Write returns
// ErrBackpressure) is disconnected, as NATS does with slow consumers,
// rather than skipped. Skipping would silently break the one promise a
// subscriber relies on — every message, once, in order — and it would
// never know; a disconnect is visible, and the client can reconnect and
// resynchronise. The queue bound (Config.MaxQueued) sets how far behind a
// subscriber may fall; the write timeout catches one that stops reading
// altogether.
type Hub struct {
	mu   sync.Mutex                        // serialises changes to subs
	subs atomic.Pointer[[]*frameloop.Conn] // read without locking on every message

	dropped atomic.Int64 // subscribers disconnected for falling behind
}

func NewHub() *Hub {
	h := &Hub{}
	h.subs.Store(&[]*frameloop.Conn{})
	return h
}

func (h *Hub) OnOpen(c *frameloop.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := append(slices.Clone(*h.subs.Load()), c)
	h.subs.Store(&next)
}

func (h *Hub) OnClose(c *frameloop.Conn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := slices.DeleteFunc(slices.Clone(*h.subs.Load()), func(s *frameloop.Conn) bool { return s == c })
	h.subs.Store(&next)
}

// OnFrame runs on the sender's loop. Frames from one sender are handled in
// order, and each Write appends to a subscriber's queue in call order, so
// every subscriber receives one sender's messages in the order sent.
func (h *Hub) OnFrame(from *frameloop.Conn, payload []byte) {
	for _, c := range *h.subs.Load() {
		if c == from {
			continue
		}
		if err := c.Write(payload); err == frameloop.ErrBackpressure {
			if c.Close() == nil {
				h.dropped.Add(1)
			}
		}
	}
}

// Subscribers is the number of connected clients.
func (h *Hub) Subscribers() int { return len(*h.subs.Load()) }

// Dropped is the number of subscribers disconnected for falling behind.
func (h *Hub) Dropped() int64 { return h.dropped.Load() }
