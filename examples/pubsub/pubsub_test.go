package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, frameloop.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return hub, srv.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// message is a payload tagged with its sender and sequence number.
func message(sender, seq int) []byte {
	return fmt.Appendf(nil, "%03d:%06d:%s", sender, seq, "payload")
}

func writeFrame(w io.Writer, p []byte) error {
	_, err := w.Write(append(binary.LittleEndian.AppendUint32(nil, uint32(len(p))), p...))
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	p := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(r, p)
	return p, err
}

func TestEveryMessageReachesEveryOtherClientOnceInOrder(t *testing.T) {
	const clients, perSender = 8, 200
	hub, addr := startHub(t, 2, 1<<20, 5*time.Second)
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		conns[i] = c
	}
	waitFor(t, "every client to subscribe", func() bool { return hub.Subscribers() == clients })

	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for i, c := range conns {
		wg.Go(func() { // sender
			for seq := range perSender {
				if err := writeFrame(c, message(i, seq)); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() { // receiver: expects every other sender's messages, in order
			next := make([]int, clients)
			for range (clients - 1) * perSender {
				p, err := readFrame(c)
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
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if p, err := readFrame(c); err == nil {
			t.Errorf("client %d got an extra message %q", i, p)
		}
	}
}

func TestSlowSubscriberIsDisconnectedOthersKeepReceiving(t *testing.T) {
	const maxQueued = 256 << 10
	hub, addr := startHub(t, 2, maxQueued, 30*time.Second)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	slow, fast, sender := dial(), dial(), dial()
	// A small receive buffer makes the slow subscriber's queue fill sooner.
	slow.(*net.TCPConn).SetReadBuffer(64 << 10)
	waitFor(t, "three subscribers", func() bool { return hub.Subscribers() == 3 })

	// The sender publishes in lockstep with the fast subscriber, so the
	// fast one's queue never holds more than one message, while the slow
	// one, which never reads, falls further behind with each message.
	payload := make([]byte, 32<<10)
	const messages = 200 // 6.4 MB: far beyond the slow subscriber's queue and socket buffers
	fast.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := range messages {
		if err := writeFrame(sender, payload); err != nil {
			t.Fatalf("sender: %v", err)
		}
		if _, err := readFrame(fast); err != nil {
			t.Fatalf("fast subscriber lost the stream at message %d: %v", i, err)
		}
	}
	waitFor(t, "the slow subscriber to be dropped", func() bool { return hub.Dropped() == 1 })
	// The slow subscriber gets what was queued for it, then end of stream.
	slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := 0
	for {
		if _, err := readFrame(slow); err != nil {
			break
		}
		got++
	}
	slow.Close()
	if got >= messages {
		t.Fatalf("slow subscriber received all %d messages; it should have been cut off", got)
	}
	waitFor(t, "the slow subscriber to leave", func() bool { return hub.Subscribers() == 2 })
}
