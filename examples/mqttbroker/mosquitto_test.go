package main

// The broker under mosquitto's own command-line clients (mosquitto-clients
// 2.0): programs nobody here wrote, speaking MQTT 3.1.1.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestMosquittoExactTopicQoS0And1(t *testing.T) {
	eachSetup(t, func(t *testing.T, backend string, loops int) {
		b := startBroker(t, backend, loops)
		sub := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "a/b", "-q", "1", "-C", "2", "-i", "sub")
		b.waitSubscribes(t, 1)
		runTool(t, b.addr, "mosquitto_pub", "-t", "a/c", "-m", "other topic", "-q", "1")
		runTool(t, b.addr, "mosquitto_pub", "-t", "a/b", "-m", "zero", "-q", "0")
		runTool(t, b.addr, "mosquitto_pub", "-t", "a/b", "-m", "one", "-q", "1")
		got := strings.Fields(sub.wait(t))
		slices.Sort(got) // two publishers, two connections: no order between them
		if strings.Join(got, " ") != "one zero" {
			t.Fatalf("received %q", got)
		}
	})
}

func TestMosquittoWildcards(t *testing.T) {
	eachSetup(t, func(t *testing.T, backend string, loops int) {
		b := startBroker(t, backend, loops)
		plus := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "w/+/c", "-v", "-C", "2")
		hash := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "w/#", "-v", "-C", "4", "-q", "1")
		all := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "#", "-t", "w/b/+", "-v", "-C", "5")
		b.waitSubscribes(t, 3)
		// QoS 1: mosquitto_pub exits on the PUBACK, which the broker sends
		// once the message is queued to every subscriber, so one publisher's
		// message is delivered before the next publisher's.
		for _, m := range []string{"$SYS/x no", "w/b/c 1", "w/b/d 2", "w 3", "w/x/c 4", "z 5"} {
			topic, msg, _ := strings.Cut(m, " ")
			runTool(t, b.addr, "mosquitto_pub", "-t", topic, "-m", msg, "-q", "1")
		}
		for _, c := range []struct {
			sub  *tool
			want string
		}{
			{plus, "w/b/c 1\nw/x/c 4\n"},
			{hash, "w/b/c 1\nw/b/d 2\nw 3\nw/x/c 4\n"},
			{all, "w/b/c 1\nw/b/d 2\nw 3\nw/x/c 4\nz 5\n"}, // once, though two filters match w/b/c
		} {
			if got := c.sub.wait(t); got != c.want {
				t.Errorf("%v received %q, want %q", c.sub.cmd.Args[5:], got, c.want)
			}
		}
	})
}

// Two publishers of 1,000 messages each (QoS 1 and QoS 0), three
// subscribers (QoS 1, 0, 1): each receives all 2,000, each publisher's in order.
func TestMosquittoManyMessagesInOrder(t *testing.T) {
	const n = 1000
	eachSetup(t, func(t *testing.T, backend string, loops int) {
		b := startBroker(t, backend, loops)
		var subs []*tool
		for _, qos := range []string{"1", "0", "1"} {
			subs = append(subs, startTool(t, b.addr, "mosquitto_sub", nil, "-t", "seq", "-q", qos, "-C", "2000"))
		}
		b.waitSubscribes(t, 3)
		pa := startTool(t, b.addr, "mosquitto_pub", strings.NewReader(lines("A", n)), "-t", "seq", "-q", "1", "-l")
		pb := startTool(t, b.addr, "mosquitto_pub", strings.NewReader(lines("B", n)), "-t", "seq", "-q", "0", "-l")
		pa.wait(t)
		pb.wait(t)
		for _, s := range subs {
			checkLines(t, s.wait(t), map[string]int{"A": n, "B": n})
		}
	})
}

// With two loops, handoff places each new connection on the loop with the
// fewest: two subscribers that stay connected are on different loops, so
// one of them is on another loop than the publisher, whichever it gets.
func TestMosquittoSubscriberOnTheOtherLoop(t *testing.T) {
	for _, backend := range poller.Backends() {
		t.Run(backend, func(t *testing.T) {
			b := startBroker(t, backend, 2)
			s1 := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "x", "-q", "1", "-C", "100")
			b.waitSubscribes(t, 1)
			s2 := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "x", "-q", "0", "-C", "100")
			b.waitSubscribes(t, 2)
			startTool(t, b.addr, "mosquitto_pub", strings.NewReader(lines("P", 100)), "-t", "x", "-q", "1", "-l").wait(t)
			checkLines(t, s1.wait(t), map[string]int{"P": 100})
			checkLines(t, s2.wait(t), map[string]int{"P": 100})
		})
	}
}

func TestMosquittoRetained(t *testing.T) {
	b := startBroker(t, "", 2)
	runTool(t, b.addr, "mosquitto_pub", "-t", "r/1", "-m", "kept", "-r", "-q", "1")
	runTool(t, b.addr, "mosquitto_pub", "-t", "r/2", "-m", "kept too", "-r")
	if got := runTool(t, b.addr, "mosquitto_sub", "-t", "r/1", "-C", "1", "-v"); got != "r/1 kept\n" {
		t.Fatalf("retained: %q", got)
	}
	// A raw client sees RETAIN set on the retained copy, not on a live one.
	c := dialRaw(t, b.addr)
	c.connect("raw", 0)
	c.subscribe(1, "r/2", 1)
	if p := c.expectPublish(); !p.Retain || p.QoS != 0 || string(p.Payload) != "kept too" {
		t.Fatalf("retained copy: %+v", p)
	}
	runTool(t, b.addr, "mosquitto_pub", "-t", "r/2", "-m", "live", "-q", "1")
	if p := c.expectPublish(); p.Retain || p.QoS != 1 || string(p.Payload) != "live" {
		t.Fatalf("live copy: %+v", p)
	} else {
		c.send(puback(p.PacketID))
	}
	// An empty retained message deletes the retained one (3.3.1.3); a
	// message published without RETAIN leaves it.
	runTool(t, b.addr, "mosquitto_pub", "-t", "r/1", "-n", "-r", "-q", "1")
	c.subscribe(2, "r/1", 1)
	testkit.ExpectNothing(t, c.c, 200*time.Millisecond)
	c2 := dialRaw(t, b.addr)
	c2.connect("raw2", 0)
	c2.subscribe(1, "r/#", 1)
	if p := c2.expectPublish(); string(p.Topic) != "r/2" || string(p.Payload) != "kept too" || !p.Retain {
		t.Fatalf("after the delete: %+v", p)
	}
	testkit.ExpectNothing(t, c2.c, 200*time.Millisecond)
}

// The will is published when a client goes away without DISCONNECT, and
// discarded with DISCONNECT.
func TestMosquittoWill(t *testing.T) {
	b := startBroker(t, "", 2)
	sub := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "will/#", "-C", "1", "-v")
	b.waitSubscribes(t, 1)
	polite := dialRaw(t, b.addr)
	polite.send(connectPkt("polite", 0, 0x0e, "will/b", "not sent")) // clean, will, will QoS 1
	polite.expect(connack(0, 0))
	polite.send([]byte{0xe0, 0})
	polite.expectClosed(ioTimeout)
	rude := dialRaw(t, b.addr)
	rude.send(connectPkt("rude", 0, 0x06, "will/a", "gone"))
	rude.expect(connack(0, 0))
	rude.c.Close()
	if got := sub.wait(t); got != "will/a gone\n" {
		t.Fatalf("received %q", got)
	}
}
