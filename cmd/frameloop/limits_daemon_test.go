//go:build unix

package main

// The daemon's limits from the outside: the connection cap (docs/behaviour.md §3.1),
// the idle timeout (§3.2) and the write timeout (§3.4).

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

func TestDaemonMaxConnsQueuesTheFourthClient(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--max-conns", "3")...)
		var served []net.Conn
		for i := range 3 {
			c := d.dial(t)
			testkit.Echo(t, c, []byte{'c', byte('0' + i)}, ioWait)
			served = append(served, c)
		}

		// The kernel completes the handshake, but the daemon does not accept.
		fourth := d.dial(t)
		if err := testkit.WriteFrame(fourth, []byte("fourth"), ioWait); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectNothing(t, fourth, quiet)
		testkit.Echo(t, served[1], []byte("still served at the cap"), ioWait)

		freed := time.Now()
		served[0].Close()
		got, err := testkit.ReadFrame(fourth, ioWait, testkit.MaxFrame)
		if err != nil || string(got) != "fourth" {
			t.Fatalf("the waiting client was not served after a slot freed: %q, %v", got, err)
		}
		if wait := time.Since(freed); wait > 2*time.Second {
			t.Fatalf("the waiting client was served %v after a slot freed; want at once", wait)
		}
		testkit.Echo(t, fourth, []byte("and keeps being served"), ioWait)

		// At the cap again: a fifth waits, and is served when one closes.
		fifth := d.dial(t)
		if err := testkit.WriteFrame(fifth, []byte("fifth"), ioWait); err != nil {
			t.Fatal(err)
		}
		testkit.ExpectNothing(t, fifth, quiet)
		fourth.Close()
		testkit.ExpectFrame(t, fifth, []byte("fifth"), ioWait)
		d.stop()
	})
}

func TestDaemonIdleTimeout(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--idle-timeout", "500ms")...)
		off := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--idle-timeout", "0")...)

		// The checks wait concurrently: the time is in the waiting.
		concurrently(t, map[string]func() error{
			"silent client closed between 0.5 and 1.6 s": func() error {
				start := time.Now()
				c, err := net.DialTimeout(d.network, d.addr, ioWait)
				if err != nil {
					return err
				}
				defer c.Close()
				at, err := testkit.WaitClosed(c, 5*time.Second)
				if err != nil {
					return err
				}
				if after := at.Sub(start); after < 500*time.Millisecond || after > 1600*time.Millisecond {
					return fmt.Errorf("closed after %v, want 0.5–1.6 s", after)
				}
				return nil
			},
			"trickling client closed between 0.5 and 1.6 s": func() error {
				start := time.Now()
				c, err := net.DialTimeout(d.network, d.addr, ioWait)
				if err != nil {
					return err
				}
				defer c.Close()
				wire := testkit.Frame(testkit.Pattern(1000, 1)) // never completes at this pace
				var closedAt time.Time
				for i := 0; closedAt.IsZero(); i++ {
					if time.Since(start) > 5*time.Second {
						return fmt.Errorf("still open after %v (sent %d bytes)", time.Since(start), i)
					}
					if err := testkit.WriteAll(c, wire[i:i+1], ioWait); err != nil {
						closedAt = time.Now()
						break
					}
					c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
					var b [1]byte
					n, err := c.Read(b[:])
					switch {
					case n > 0:
						return errors.New("got a byte back for an unfinished frame")
					case testkit.IsTimeout(err):
					default:
						closedAt = time.Now() // EOF or reset
					}
				}
				if after := closedAt.Sub(start); after < 500*time.Millisecond || after > 1600*time.Millisecond {
					return fmt.Errorf("closed after %v, want 0.5–1.6 s", after)
				}
				return nil
			},
			"client completing a frame every 200 ms stays open": func() error {
				c, err := net.DialTimeout(d.network, d.addr, ioWait)
				if err != nil {
					return err
				}
				defer c.Close()
				start := time.Now()
				for i := 0; time.Since(start) < 1600*time.Millisecond; i++ {
					time.Sleep(200 * time.Millisecond)
					if err := testkit.EchoErr(c, []byte{byte(i)}, ioWait); err != nil {
						return fmt.Errorf("lost the connection after %v: %v", time.Since(start), err)
					}
				}
				return nil
			},
			"idle-timeout 0 disables": func() error {
				c, err := net.DialTimeout(off.network, off.addr, ioWait)
				if err != nil {
					return err
				}
				defer c.Close()
				if err := testkit.EchoErr(c, []byte("hello"), ioWait); err != nil {
					return err
				}
				c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
				var b [1]byte
				if n, err := c.Read(b[:]); n > 0 || !testkit.IsTimeout(err) {
					return fmt.Errorf("silent client with --idle-timeout 0: read %d bytes, %v; want it left open", n, err)
				}
				return testkit.EchoErr(c, []byte("still open after 1.5 s"), ioWait)
			},
		})
		d.stop()
		off.stop()
	})
}

func TestDaemonWriteTimeoutClosesStuckReader(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--write-timeout", "500ms", "--log-level", "debug")...)
		other := d.dial(t)
		testkit.Echo(t, other, []byte("before"), ioWait)

		stuck := d.dialSmallReceiveBuffer(t)
		stuckAddr := stuck.LocalAddr().String()
		start := time.Now()
		blocked := floodUntilBlocked(stuck, 16<<10, 15*time.Second)

		// Another client keeps being served while the stuck one fills up
		// and times out.
		var (
			stop    = make(chan struct{})
			wg      sync.WaitGroup
			echoes  int
			echoErr error
		)
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if err := testkit.EchoErr(other, testkit.Pattern(100, uint64(i)), ioWait); err != nil {
					echoErr = err
					return
				}
				echoes++
			}
		})
		defer func() { close(stop); wg.Wait() }()

		// The flood ends when the writes stop progressing, or with a reset
		// if the daemon's write timeout (which counts from its own last
		// progress, earlier than ours) closes the connection first.
		var blockedAt time.Time
		resetDuringFlood := false
		select {
		case err := <-blocked:
			if err != nil && !testkit.IsReset(err) {
				t.Fatalf("flooding the non-reading client: %v", err)
			}
			blockedAt, resetDuringFlood = time.Now(), err != nil
		case <-time.After(20 * time.Second):
			t.Fatal("the flood did not end")
		}
		rec, ok := d.waitLog(10*time.Second, func(r logRecord) bool {
			return r["msg"] == "connection closed" && r["remote"] == stuckAddr
		})
		if !ok {
			t.Fatalf("no close logged for the non-reading client %s within 10 s of its writes blocking", stuckAddr)
		}
		closedAfter := time.Since(blockedAt)
		if rec["reason"] != "write_timeout" {
			t.Fatalf("non-reading client closed with reason %q, want write_timeout", rec["reason"])
		}
		if closedAfter > 3*time.Second {
			t.Fatalf("non-reading client closed %v after its writes blocked; want about 0.5 s", closedAfter)
		}
		if total := time.Since(start); total > 10*time.Second {
			t.Fatalf("non-reading client closed %v after it started; want a few seconds", total)
		}
		if !resetDuringFlood {
			if _, err := testkit.WaitClosed(stuck, ioWait); err != nil {
				t.Fatalf("the client does not see the close: %v", err)
			}
		}
		close(stop)
		wg.Wait()
		stop = make(chan struct{}) // for the deferred close
		if echoErr != nil {
			t.Fatalf("the other client failed meanwhile: %v", echoErr)
		}
		if echoes == 0 {
			t.Fatal("the other client completed no echo meanwhile")
		}
		testkit.Echo(t, other, []byte("after"), ioWait)
		t.Logf("blocked after %v, closed %v later; %d echoes meanwhile", blockedAt.Sub(start), closedAfter, echoes)
		d.stop()
	})
}
