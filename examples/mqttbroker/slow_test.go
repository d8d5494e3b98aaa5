package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

// A subscriber that never reads is disconnected once its queue passes
// MaxQueued, while the publisher and the other subscribers — a raw one in
// lockstep with the publisher, and mosquitto_sub — receive everything. (A
// publisher faster than mosquitto_sub can print would get it disconnected
// too: it would be a slow consumer as well.)
func TestSlowSubscriberIsDisconnected(t *testing.T) {
	const n, size = 1000, 8 << 10 // 8 MB: beyond the slow one's queue and socket buffers
	for _, backend := range poller.Backends() {
		t.Run(backend, func(t *testing.T) {
			b := startBroker(t, backend, 2, func(c *frameloop.Config) {
				c.MaxMessage, c.MaxQueued = 16<<10, 128<<10
			})
			slow := dialSmall(t, b.addr)
			slow.connect("slow", 0)
			slow.subscribe(1, "big", 0)
			fast := dialRaw(t, b.addr)
			fast.connect("fast", 0)
			fast.subscribe(1, "big", 0)
			mosq := startTool(t, b.addr, "mosquitto_sub", nil, "-t", "big", "-q", "1", "-C", fmt.Sprint(n))
			b.waitSubscribes(t, 3)
			pub := dialRaw(t, b.addr)
			pub.connect("pub", 0)
			pad := strings.Repeat("x", size)
			for i := range n {
				// 8 MB/s at most: mosquitto_sub, printing each message,
				// keeps up; the slow subscriber falls behind all the same.
				time.Sleep(time.Millisecond)
				pub.send(publishPkt("big", 0, 0, fmt.Appendf(nil, "P-%d %s", i, pad)))
				p := fast.expectPublish()
				if want := fmt.Sprintf("P-%d ", i); !strings.HasPrefix(string(p.Payload), want) {
					t.Fatalf("fast subscriber: got %.20q, want %q", p.Payload, want)
				}
			}
			out := mosq.wait(t)
			var got []string
			for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				got = append(got, strings.TrimSuffix(l, " "+pad))
			}
			checkLines(t, strings.Join(got, "\n"), map[string]int{"P": n})
			if s := b.Stats(); s.Slow != 1 {
				t.Fatalf("%d slow consumers disconnected, want 1", s.Slow)
			}
			// The slow one gets what was queued for it, then the end of the stream.
			if _, err := testkit.WaitClosed(slow.c, ioTimeout); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A subscriber that stops reading with room left in its queue is closed by
// the write timeout.
func TestStalledSubscriberIsClosedByTheWriteTimeout(t *testing.T) {
	b := startBroker(t, "", 1, func(c *frameloop.Config) {
		c.MaxQueued, c.WriteTimeout = 64<<20, 300*time.Millisecond
	})
	stalled := dialSmall(t, b.addr)
	stalled.connect("stalled", 0)
	stalled.subscribe(1, "big", 0)
	pub := dialRaw(t, b.addr)
	pub.connect("pub", 0)
	payload := make([]byte, 64<<10)
	for i := range 200 { // 12.8 MB: past the socket buffers, within MaxQueued
		pub.send(publishPkt("big", 1, uint16(i+1), payload))
		pub.expect(puback(uint16(i + 1)))
	}
	testkit.Eventually(t, ioTimeout, pollEvery, func() bool {
		return b.srv.Stats().ClosedBy(frameloop.ReasonWriteTimeout) == 1
	}, "the stalled subscriber to be closed by the write timeout")
	pub.send([]byte{0xc0, 0})
	pub.expect([]byte{0xd0, 0})
}

// SIGTERM to the broker binary: every PUBLISH acknowledged with PUBACK
// before the signal reaches the subscribers — mosquitto_sub, and a raw one
// that was not reading then, its messages still queued in the broker —,
// and the broker exits 0. Also: its metrics.
func TestSIGTERMDeliversWhatWasAcknowledged(t *testing.T) {
	// 8 MB for the late subscriber: twice what the kernel can hold for it
	// (a 4 MB send buffer at most, 16 KiB of receive buffer), so about half
	// of it is still in the broker's queue at the signal.
	const n, size = 500, 16 << 10
	metrics := freeAddr(t)
	p := startProcess(t, "--loops", "2", "--metrics-addr", metrics, "--shutdown-timeout", "20s", "--max-queued", "16777216")
	mosq := startTool(t, p.addr, "mosquitto_sub", nil, "-t", "s", "-q", "1", "-C", fmt.Sprint(n))
	late := dialSmall(t, p.addr)
	late.connect("late", 0)
	late.subscribe(1, "s", 1)
	waitMetric(t, metrics, "mqtt_clients 2")
	pub := dialRaw(t, p.addr)
	pub.connect("pub", 0)
	pad := strings.Repeat("y", size)
	for i := range n {
		pub.send(publishPkt("s", 1, uint16(i+1), fmt.Appendf(nil, "P-%d %s", i, pad)))
	}
	for i := range n {
		pub.expect(puback(uint16(i + 1)))
	}
	waitMetric(t, metrics, fmt.Sprintf("mqtt_publish_received_total %d", n))
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond) // the drain is under way before the late one reads
	for i := range n {
		m := late.expectPublish()
		if want := fmt.Sprintf("P-%d ", i); !strings.HasPrefix(string(m.Payload), want) {
			t.Fatalf("late subscriber: got %.20q, want %q", m.Payload, want)
		}
		late.send(puback(m.PacketID))
	}
	if _, err := testkit.WaitClosed(late.c, ioTimeout); err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(mosq.wait(t), " "+pad, "")
	checkLines(t, out, map[string]int{"P": n})
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("the broker exited with %v", p.err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("the broker did not exit")
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitMetric waits until the broker's /metrics has the line want.
func waitMetric(t *testing.T, addr, want string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	testkit.EventuallyNil(t, ioTimeout, 20*time.Millisecond, func() error {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(body), "\n") {
			if l == want {
				return nil
			}
		}
		return fmt.Errorf("/metrics has no line %q", want)
	})
}
