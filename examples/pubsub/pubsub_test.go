package main

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	// waitTimeout bounds each wait for the hub's state.
	waitTimeout = 10 * time.Second
	// pollEvery is how often such a wait looks.
	pollEvery = 5 * time.Millisecond
	// dialTimeout bounds a client's connection attempt.
	dialTimeout = 10 * time.Second
)

func startHub(t *testing.T, loops, maxQueued int, writeTimeout time.Duration) (*Hub, string) {
	t.Helper()
	hub := NewHub()
	cfg := frameloop.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Loops = loops
	cfg.Balance = "handoff" // spread the clients evenly over the loops
	cfg.MaxMessage = 64 << 10
	cfg.MaxQueued = maxQueued
	cfg.WriteTimeout = writeTimeout
	srv, err := frameloop.New(hub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return hub, testkit.Serve(t, srv, frameloop.ErrServerClosed, 5*time.Second, nil)
}

// message is a payload tagged with its sender and sequence number.
func message(sender, seq int) []byte {
	return fmt.Appendf(nil, "%03d:%06d:%s", sender, seq, "payload")
}

func TestEveryMessageReachesEveryOtherClientOnceInOrder(t *testing.T) {
	const clients, perSender = 8, 200
	hub, addr := startHub(t, 2, 1<<20, 5*time.Second)
	conns := make([]net.Conn, clients)
	for i := range conns {
		c := testkit.Dial(t, "tcp", addr, dialTimeout)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		conns[i] = c
	}
	testkit.Eventually(t, waitTimeout, pollEvery, func() bool { return hub.Subscribers() == clients }, "every client to subscribe")

	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for i, c := range conns {
		wg.Go(func() { // sender
			for seq := range perSender {
				if err := testkit.WriteFrame(c, message(i, seq), 0); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() { // receiver: expects every other sender's messages, in order
			next := make([]int, clients)
			for range (clients - 1) * perSender {
				p, err := testkit.ReadFrame(c, 0, testkit.MaxFrame)
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				var sender, seq int
				if _, err := fmt.Sscanf(string(p), "%03d:%06d:", &sender, &seq); err != nil {
					errs <- fmt.Errorf("client %d: bad message %q", i, p)
					return
				}
				switch {
				case sender == i:
					errs <- fmt.Errorf("client %d received its own message %d", i, seq)
					return
				case seq != next[sender]:
					errs <- fmt.Errorf("client %d: from %d got seq %d, want %d", i, sender, seq, next[sender])
					return
				}
				next[sender]++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Nothing more arrives: each message was delivered exactly once.
	for i, c := range conns {
		if p, err := testkit.ReadFrame(c, 100*time.Millisecond, testkit.MaxFrame); err == nil {
			t.Errorf("client %d got an extra message %q", i, p)
		}
	}
}

func TestSlowSubscriberIsDisconnectedOthersKeepReceiving(t *testing.T) {
	const maxQueued = 256 << 10
	hub, addr := startHub(t, 2, maxQueued, 30*time.Second)
	dial := func() net.Conn { return testkit.Dial(t, "tcp", addr, dialTimeout) }
	slow, fast, sender := dial(), dial(), dial()
	// A small receive buffer makes the slow subscriber's queue fill sooner.
	slow.(*net.TCPConn).SetReadBuffer(64 << 10)
	testkit.Eventually(t, waitTimeout, pollEvery, func() bool { return hub.Subscribers() == 3 }, "three subscribers")

	// The sender publishes in lockstep with the fast subscriber, so the
	// fast one's queue never holds more than one message, while the slow
	// one, which never reads, falls further behind with each message.
	payload := make([]byte, 32<<10)
	const messages = 200 // 6.4 MB: far beyond the slow subscriber's queue and socket buffers
	fast.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := range messages {
		if err := testkit.WriteFrame(sender, payload, waitTimeout); err != nil {
			t.Fatalf("sender: %v", err)
		}
		if _, err := testkit.ReadFrame(fast, 0, testkit.MaxFrame); err != nil {
			t.Fatalf("fast subscriber lost the stream at message %d: %v", i, err)
		}
	}
	testkit.Eventually(t, waitTimeout, pollEvery, func() bool { return hub.Dropped() == 1 }, "the slow subscriber to be dropped")
	// The slow subscriber gets what was queued for it, then end of stream.
	slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := 0
	for {
		if _, err := testkit.ReadFrame(slow, 0, testkit.MaxFrame); err != nil {
			break
		}
		got++
	}
	slow.Close()
	if got >= messages {
		t.Fatalf("slow subscriber received all %d messages; it should have been cut off", got)
	}
	testkit.Eventually(t, waitTimeout, pollEvery, func() bool { return hub.Subscribers() == 2 }, "the slow subscriber to leave")
}
