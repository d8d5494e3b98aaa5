package main

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/examples/mqttbroker/mqtt"
)

// Broker is an MQTT 3.1.1 broker for QoS 0 and 1 as a frameloop Handler.
// The framing (mqtt preset) delivers each packet whole: the fixed header's
// first byte is the frame's prefix, the Remaining Length its length field.
//
// Callbacks of one connection run on its loop; a PUBLISH is written from
// the publisher's loop to subscribers on any loop. Shared state — the
// subscription index, the client ids, the retained messages — is under mu,
// read-locked to match a PUBLISH; the writes happen outside it.
type Broker struct {
	mu       sync.RWMutex // read-locked to match a PUBLISH, locked to change anything
	subs     mqtt.Index[*session]
	clients  map[string]*session
	retained map[string]mqtt.Publish // by topic, copied

	autoID                                             atomic.Uint64
	published, delivered, slow, violations, subscribes atomic.Int64
}

// session is a connected client's state, the Conn's Value from CONNECT on.
type session struct {
	c    *frameloop.Conn
	id   string
	will *mqtt.Publish // copied; touched on c's loop only

	// Packet ids of QoS 1 deliveries, taken by publishers on any loop.
	mu       sync.Mutex
	next     uint16
	inflight *[1 << 10]uint64 // bit set of ids awaiting PUBACK, allocated on first use
}

type target struct {
	s   *session
	qos byte
}

func NewBroker() *Broker {
	return &Broker{clients: make(map[string]*session), retained: make(map[string]mqtt.Publish)}
}

// BrokerStats are the broker's own figures, beside frameloop's Server.Stats.
type BrokerStats struct {
	Clients    int   // sessions connected now
	Subscribes int64 // SUBSCRIBE packets answered
	Published  int64 // PUBLISH packets received
	Delivered  int64 // PUBLISH packets queued to subscribers
	Slow       int64 // subscribers disconnected for a full queue or id space
	Violations int64 // connections closed for a protocol violation
}

func (b *Broker) Stats() BrokerStats {
	b.mu.RLock()
	n := len(b.clients)
	b.mu.RUnlock()
	return BrokerStats{n, b.subscribes.Load(), b.published.Load(), b.delivered.Load(), b.slow.Load(), b.violations.Load()}
}

func (b *Broker) OnOpen(c *frameloop.Conn) {}

func (b *Broker) OnFrame(c *frameloop.Conn, body []byte) {
	p, err := mqtt.Decode(c.Frame().Prefix[0], body)
	s, _ := c.Value().(*session)
	switch {
	case s == nil && (err == mqtt.ErrVersion || err == mqtt.ErrClientID):
		code := mqtt.RefusedVersion // [MQTT-3.1.2-2]
		if err == mqtt.ErrClientID {
			code = mqtt.RefusedIdentifier // [MQTT-3.1.3-8]
		}
		out{c}.send(mqtt.AppendConnackBody(nil, false, code))
		b.violation(c)
		return
	case err != nil, // malformed (4.8)
		(s == nil) != (p.Type == mqtt.TypeConnect),       // not CONNECT first, or a second [MQTT-3.1.0-1,2]
		p.Type == mqtt.TypePublish && p.Publish.QoS == 2, // QoS 2 is not supported: see README
		p.Type == mqtt.TypePubrec || p.Type == mqtt.TypePubrel || p.Type == mqtt.TypePubcomp:
		b.violation(c)
		return
	}
	var scratch [8]byte
	switch p.Type {
	case mqtt.TypeConnect:
		b.connect(c, p.Connect)
	case mqtt.TypePublish:
		b.published.Add(1)
		b.publish(p.Publish)
		if p.Publish.QoS == 1 { // after the fan-out: a PUBACK means every subscriber has it queued
			out{c}.send(mqtt.AppendPubackBody(scratch[:0], p.Publish.PacketID))
		}
	case mqtt.TypePuback:
		s.release(p.PacketID)
	case mqtt.TypeSubscribe:
		b.subscribe(s, p)
	case mqtt.TypeUnsubscribe:
		b.mu.Lock()
		for f := range p.Filters.All() {
			b.subs.Unsubscribe(string(f), s)
		}
		b.mu.Unlock()
		out{c}.send(mqtt.AppendUnsubackBody(scratch[:0], p.PacketID))
	case mqtt.TypePingreq:
		out{c}.send(mqtt.AppendPingrespBody(scratch[:0]))
	case mqtt.TypeDisconnect:
		s.will = nil // [MQTT-3.14.4-3]
		c.Close()
	}
}

func (b *Broker) OnClose(c *frameloop.Conn, err error) {
	s, _ := c.Value().(*session)
	if s == nil {
		return
	}
	// Clean session: the session ends with the connection, its QoS 1
	// messages awaiting PUBACK with it (3.1.2.4).
	b.mu.Lock()
	if b.clients[s.id] == s {
		delete(b.clients, s.id)
	}
	b.subs.RemoveAll(s)
	b.mu.Unlock()
	if s.will != nil && frameloop.ReasonOf(err) != frameloop.ReasonShutdown { // 3.1.2.5
		b.publish(*s.will)
	}
}

func (b *Broker) violation(c *frameloop.Conn) {
	if c.Close() == nil {
		b.violations.Add(1)
	}
}

func (b *Broker) connect(c *frameloop.Conn, p mqtt.Connect) {
	s := &session{c: c, id: string(p.ClientID)}
	if s.id == "" { // clean session: the server names the client (3.1.3.1)
		s.id = "auto-" + strconv.FormatUint(b.autoID.Add(1), 10)
	}
	if p.Will {
		w := copied(mqtt.Publish{QoS: min(p.WillQoS, 1), Retain: p.WillRetain, Topic: p.WillTopic, Payload: p.WillMessage})
		s.will = &w
	}
	c.SetValue(s)
	b.mu.Lock()
	old := b.clients[s.id]
	b.clients[s.id] = s
	b.mu.Unlock()
	if old != nil {
		old.c.Close() // the new connection takes over [MQTT-3.1.4-2]
	}
	// Keep-alive: silent for 1.5 times it, the client is gone (3.1.2.10).
	c.SetIdleTimeout(time.Duration(p.KeepAlive) * 1500 * time.Millisecond)
	// Sessions are not kept: session present is always 0 (see README).
	out{c}.send(mqtt.AppendConnackBody(nil, false, mqtt.Accepted))
}

// copied returns p with its own topic and payload, to keep.
func copied(p mqtt.Publish) mqtt.Publish {
	p.PacketID, p.Dup = 0, false
	p.Topic, p.Payload = append([]byte(nil), p.Topic...), append([]byte(nil), p.Payload...)
	return p
}

func (b *Broker) subscribe(s *session, p mqtt.Packet) {
	var codes []byte
	var found []target
	var retained []mqtt.Publish
	b.mu.Lock()
	for f, qos := range p.Filters.All() {
		granted := min(qos, 1) // QoS 2 is granted as 1 (3.9.3)
		codes = append(codes, granted)
		b.subs.Subscribe(string(f), s, granted)
		if len(b.retained) == 0 {
			continue
		}
		// Retained messages matching the new filter (3.3.1.3), collected
		// under the same lock as a publish's match: each message once.
		var one mqtt.Index[*session]
		one.Subscribe(string(f), s, granted)
		for topic, r := range b.retained {
			one.Match([]byte(topic), func(s *session, q byte) {
				retained, found = append(retained, r), append(found, target{s, min(q, r.QoS)})
			})
		}
	}
	b.mu.Unlock()
	b.subscribes.Add(1)
	out{s.c}.send(mqtt.AppendSubackBody(nil, p.PacketID, codes))
	for i, r := range retained { // RETAIN set: for a new subscription [MQTT-3.3.1-8]
		b.deliver(found[i:i+1], r)
	}
}

// scratch is a publish's matches: the map the index fills, the list
// written to after the lock is released.
type scratch struct {
	hits map[*session]byte
	ts   []target
}

var scratches = sync.Pool{New: func() any { return &scratch{hits: make(map[*session]byte)} }}

// publish delivers p to every matching subscription, at most at the
// subscription's QoS (3.8.4), and keeps it if it is retained. Publishers on
// different loops match concurrently, under the read lock.
func (b *Broker) publish(p mqtt.Publish) {
	sc := scratches.Get().(*scratch)
	if p.Retain {
		b.mu.Lock()
		if len(p.Payload) == 0 {
			delete(b.retained, string(p.Topic)) // [MQTT-3.3.1-10,11]
		} else {
			b.retained[string(p.Topic)] = copied(p)
		}
		b.subs.MatchInto(p.Topic, sc.hits)
		b.mu.Unlock()
	} else {
		b.mu.RLock()
		b.subs.MatchInto(p.Topic, sc.hits)
		b.mu.RUnlock()
	}
	for s, qos := range sc.hits {
		sc.ts = append(sc.ts, target{s, min(qos, p.QoS)})
	}
	clear(sc.hits)
	p.Retain = false // to established subscriptions [MQTT-3.3.1-9]
	b.deliver(sc.ts, p)
	clear(sc.ts)
	sc.ts = sc.ts[:0]
	scratches.Put(sc)
}

var packets = sync.Pool{New: func() any { return new([2][]byte) }}

// deliver writes p to each target: encoded once per QoS, the packet id
// patched in place per QoS 1 subscriber (WriteRaw copies). A subscriber
// whose queue is full is disconnected, as NATS does with slow consumers:
// skipping it would silently break "every message, in order", and
// waiting would slow the publisher and everyone else.
func (b *Broker) deliver(ts []target, p mqtt.Publish) {
	bufs := packets.Get().(*[2][]byte)
	var enc [2]mqtt.PublishPacket
	for _, t := range ts {
		if enc[t.qos].Bytes == nil {
			p.QoS = t.qos
			enc[t.qos] = mqtt.NewPublishPacket(bufs[t.qos], p)
			bufs[t.qos] = enc[t.qos].Bytes
		}
		if t.qos == 1 {
			id, ok := t.s.take()
			if !ok { // 65535 deliveries unacknowledged: as slow as a full queue
				b.disconnectSlow(t.s)
				continue
			}
			enc[1].SetPacketID(id)
		}
		switch err := t.s.c.WriteRaw(enc[t.qos].Bytes); err {
		case nil:
			b.delivered.Add(1)
		case frameloop.ErrBackpressure:
			b.disconnectSlow(t.s)
		}
	}
	packets.Put(bufs)
}

func (b *Broker) disconnectSlow(s *session) {
	if s.c.Close() == nil {
		b.slow.Add(1)
	}
}

// take returns an unused packet id for a QoS 1 delivery [MQTT-2.3.1-2].
func (s *session) take() (uint16, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight == nil {
		s.inflight = new([1 << 10]uint64)
	}
	if s.next++; s.next == 0 {
		s.next = 1 // 0 is not an id [MQTT-2.3.1-1]
	}
	id := s.next
	w, bit := &s.inflight[id>>6], uint64(1)<<(id&63)
	if *w&bit != 0 {
		return 0, false
	}
	*w |= bit
	return id, true
}

// release frees the id a PUBACK acknowledges; an unknown id is ignored.
func (s *session) release(id uint16) {
	s.mu.Lock()
	if s.inflight != nil {
		s.inflight[id>>6] &^= uint64(1) << (id & 63)
	}
	s.mu.Unlock()
}

// out sends the packets the codec's AppendXxxBody make.
type out struct{ c *frameloop.Conn }

func (o out) send(first byte, body []byte) { o.c.WriteFrame([]byte{first}, body) }
