package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

// Each protocol violation closes its own connection only: a subscriber
// connected throughout keeps receiving.
func TestProtocolViolationsCloseOnlyTheirConnection(t *testing.T) {
	connect := connectPkt("v", 0, 0x02)
	cases := []struct {
		name      string
		send      [][]byte
		reply     []byte // what comes before the close
		violation bool   // counted by the broker (else the framing closed it: bad_frame)
	}{
		{"publish before connect", [][]byte{publishPkt("t", 0, 0, []byte("x"))}, nil, true},
		{"subscribe before connect", [][]byte{subscribePkt(1, "t", 0)}, nil, true},
		{"pingreq before connect", [][]byte{{0xc0, 0}}, nil, true},
		{"second connect", [][]byte{connect, connect}, connack(0, 0), true},
		{"reserved type 15", [][]byte{connect, {0xf0, 0}}, connack(0, 0), true},
		{"type only a server sends (CONNACK)", [][]byte{connect, connack(0, 0)}, connack(0, 0), true},
		{"bad fixed header flags", [][]byte{connect, {0xc1, 0}}, connack(0, 0), true},
		{"qos 2 publish", [][]byte{connect, publishPkt("t", 2, 1, []byte("x"))}, connack(0, 0), true},
		{"qos 3 publish", [][]byte{connect, {0x36, 5, 0, 1, 't', 0, 1}}, connack(0, 0), true},
		{"wildcard in a topic name", [][]byte{connect, publishPkt("t/+", 0, 0, nil)}, connack(0, 0), true},
		{"subscribe without filters", [][]byte{connect, {0x82, 2, 0, 1}}, connack(0, 0), true},
		{"bad filter", [][]byte{connect, subscribePkt(1, "a/#/b", 0)}, connack(0, 0), true},
		{"pubrel", [][]byte{connect, {0x62, 2, 0, 1}}, connack(0, 0), true},
		{"mqtt 3.1", [][]byte{append([]byte{0x10, 15, 0, 6}, "MQIsdp\x03\x02\x00\x00\x00\x01v"...)}, connack(0, 1), true},
		{"protocol level 5", [][]byte{append([]byte{0x10, 14, 0, 4}, "MQTT\x05\x02\x00\x00\x00\x01v\x00"...)}, connack(0, 1), true},
		{"empty client id without clean session", [][]byte{connectPkt("", 0, 0)}, connack(0, 2), true},
		{"remaining length of 5 bytes", [][]byte{connect, {0x30, 0xff, 0xff, 0xff, 0xff, 0x01}}, connack(0, 0), false},
		{"remaining length of 5 bytes before connect", [][]byte{{0x10, 0x80, 0x80, 0x80, 0x80, 0x01}}, nil, false},
	}
	for _, backend := range poller.Backends() {
		t.Run(backend, func(t *testing.T) {
			b := startBroker(t, backend, 2)
			good := dialRaw(t, b.addr)
			good.connect("good", 0)
			good.subscribe(1, "t", 0)
			violations, badFrames := 0, 0
			for _, c := range cases {
				bad := dialRaw(t, b.addr)
				bad.send(c.send...)
				if c.reply != nil {
					bad.expect(c.reply)
				}
				bad.expectClosed(ioTimeout)
				if c.violation {
					violations++
				} else {
					badFrames++
				}
				pub := dialRaw(t, b.addr)
				pub.connect("pub", 0)
				pub.send(publishPkt("t", 1, 9, []byte(c.name)))
				pub.expect(puback(9))
				if p := good.expectPublish(); string(p.Payload) != c.name {
					t.Fatalf("after %q the subscriber got %q", c.name, p.Payload)
				}
			}
			testkit.Eventually(t, ioTimeout, pollEvery, func() bool {
				return b.Stats().Violations == int64(violations) && b.srv.Stats().ClosedBy(frameloop.ReasonBadFrame) == uint64(badFrames)
			}, "%d violations and %d bad frames counted (%+v)", violations, badFrames, b.Stats())
		})
	}
}

// A client silent for 1.5 times its keep-alive is disconnected, not before
// its keep-alive (3.1.2.10); keep-alive 0 turns it off; before CONNECT the
// server's idle timeout bounds a silent client.
func TestKeepAlive(t *testing.T) {
	for _, backend := range poller.Backends() {
		t.Run(backend, func(t *testing.T) {
			b := startBroker(t, backend, 1, func(c *frameloop.Config) { c.IdleTimeout = 400 * time.Millisecond })
			never := dialRaw(t, b.addr) // never sends CONNECT
			c := dialRaw(t, b.addr)
			c.connect("k1", 1)
			start := time.Now()
			off := dialRaw(t, b.addr)
			off.connect("k0", 0)

			if at, err := testkit.WaitClosed(never.c, ioTimeout); err != nil || at.Sub(start) > 2*time.Second {
				t.Fatalf("the client that never sent CONNECT: closed after %v (%v), want about 400ms", at.Sub(start), err)
			}
			at, err := testkit.WaitClosed(c.c, ioTimeout)
			if d := at.Sub(start); err != nil || d < time.Second || d > 2500*time.Millisecond {
				t.Fatalf("keep-alive 1s: closed after %v (%v), want about 1.5s", d, err)
			}
			testkit.ExpectNothing(t, off.c, 500*time.Millisecond) // 2 s since start: keep-alive 0 is not timed
			off.send([]byte{0xc0, 0})
			off.expect([]byte{0xd0, 0}) // PINGRESP
		})
	}
}

// A PINGREQ every half keep-alive keeps a client connected.
func TestPingKeepsAlive(t *testing.T) {
	b := startBroker(t, "", 1)
	c := dialRaw(t, b.addr)
	c.connect("p", 1)
	for range 5 {
		time.Sleep(500 * time.Millisecond)
		c.send([]byte{0xc0, 0})
		c.expect([]byte{0xd0, 0})
	}
}

func TestConnect(t *testing.T) {
	b := startBroker(t, "", 2)
	t.Run("empty client id with clean session is assigned one", func(t *testing.T) {
		c := dialRaw(t, b.addr)
		c.connect("", 0)
		c.subscribe(1, "t", 0)
	})
	t.Run("clean session 0 is accepted, session present 0", func(t *testing.T) {
		c := dialRaw(t, b.addr)
		c.send(connectPkt("persistent", 0, 0))
		c.expect(connack(0, 0))
		c.send([]byte{0xc0, 0})
		c.expect([]byte{0xd0, 0})
	})
	t.Run("user name and password are accepted", func(t *testing.T) {
		c := dialRaw(t, b.addr)
		c.send(connectPkt("u", 0, 0xc2, "user", "pass"))
		c.expect(connack(0, 0))
	})
	t.Run("a second connection with the same id takes over", func(t *testing.T) {
		old := dialRaw(t, b.addr)
		old.connect("same", 0)
		old.subscribe(1, "old", 0)
		c := dialRaw(t, b.addr)
		c.connect("same", 0)
		old.expectClosed(ioTimeout) // [MQTT-3.1.4-2]
		c.subscribe(1, "new", 0)
		c.send(publishPkt("old", 1, 1, []byte("x")), publishPkt("new", 1, 2, []byte("y")))
		c.expect(puback(1))
		if p := c.expectPublish(); string(p.Topic) != "new" {
			t.Fatalf("got %+v", p)
		}
		c.expect(puback(2))
		// The other subtests' clients have closed; the old one's close
		// left the new session in place.
		testkit.Eventually(t, ioTimeout, pollEvery, func() bool { return b.Stats().Clients == 1 }, "one client")
	})
}

// QoS 1 deliveries carry a packet id per subscriber, distinct while
// unacknowledged; a QoS 0 subscription gets QoS 0; the publisher gets its
// PUBACK with its own id.
func TestQoS1PacketIDs(t *testing.T) {
	b := startBroker(t, "", 2)
	s1, s0 := dialRaw(t, b.addr), dialRaw(t, b.addr)
	s1.connect("s1", 0)
	s1.subscribe(1, "q", 1)
	s0.connect("s0", 0)
	s0.subscribe(1, "q", 0)
	pub := dialRaw(t, b.addr)
	pub.connect("pub", 0)
	for i := range 3 {
		pub.send(publishPkt("q", 1, 100+uint16(i), []byte{byte(i)}))
		pub.expect(puback(100 + uint16(i)))
	}
	pub.send(publishPkt("q", 0, 0, []byte{3}))
	for i := range 4 {
		p := s1.expectPublish()
		want := uint16(i + 1)
		if i == 3 {
			want = 0 // published at QoS 0
		}
		if p.PacketID != want || p.QoS != min(1, byte(want)) || !bytes.Equal(p.Payload, []byte{byte(i)}) {
			t.Fatalf("QoS 1 subscriber, message %d: %+v", i, p)
		}
		if p.QoS == 1 {
			s1.send(puback(p.PacketID))
		}
		if p := s0.expectPublish(); p.QoS != 0 || p.PacketID != 0 || !bytes.Equal(p.Payload, []byte{byte(i)}) {
			t.Fatalf("QoS 0 subscriber, message %d: %+v", i, p)
		}
	}
}

func TestSessionPacketIDs(t *testing.T) {
	s := &session{}
	seen := map[uint16]bool{}
	for range 65535 {
		id, ok := s.take()
		if !ok || id == 0 || seen[id] {
			t.Fatalf("take: %d %v (seen %v)", id, ok, seen[id])
		}
		seen[id] = true
	}
	if _, ok := s.take(); ok {
		t.Fatal("a 65536th id while all 65535 are in flight")
	}
	// Ids are issued in turn: a PUBACK frees its id for when the counter
	// comes round; an id still in flight then refuses the delivery.
	s.release(2)
	s.release(2) // twice: ignored
	s.release(3)
	for _, want := range []uint16{2, 3} {
		if id, ok := s.take(); !ok || id != want {
			t.Fatalf("take: %d %v, want %d", id, ok, want)
		}
	}
	if id, ok := s.take(); ok {
		t.Fatalf("got %d: the next id (4) is still in flight", id)
	}
}

func TestUnsubscribe(t *testing.T) {
	b := startBroker(t, "", 1)
	c := dialRaw(t, b.addr)
	c.connect("u", 0)
	c.subscribe(1, "a/+", 1)
	c.subscribe(2, "a/b", 0)
	c.send([]byte{0xa2, 5, 0, 3, 0, 1, 'a', 0xa2, 7, 0, 4, 0, 3, 'a', '/', '+'}) // "a": none; "a/+"
	c.expect([]byte{0xb0, 2, 0, 3})
	c.expect([]byte{0xb0, 2, 0, 4})
	c.send(publishPkt("a/b", 1, 1, []byte("x")))
	if p := c.expectPublish(); p.QoS != 0 {
		t.Fatalf("still subscribed to a/+: %+v", p)
	}
	c.expect(puback(1)) // after the fan-out, the client's own copy included
	c.send([]byte{0xa2, 7, 0, 5, 0, 3, 'a', '/', 'b'})
	c.expect([]byte{0xb0, 2, 0, 5})
	c.send(publishPkt("a/b", 0, 0, []byte("y")))
	testkit.ExpectNothing(t, c.c, 200*time.Millisecond)
}

// Bad flags and contradictory values exit 2 with one line; an address in
// use exits 1.
func TestFlags(t *testing.T) {
	busy := startBroker(t, "", 1)
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"--loops", "-1"}, 2, "Loops"},
		{[]string{"--max-message", "65536", "--max-queued", "1000"}, 2, "MaxQueued"},
		{[]string{"--addr", busy.addr}, 1, "address already in use"},
	} {
		var stderr strings.Builder
		if code := run(c.args, &stderr); code != c.code || !strings.Contains(stderr.String(), c.says) {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args, code, stderr.String(), c.code, c.says)
		}
	}
}
