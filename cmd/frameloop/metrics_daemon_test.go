//go:build unix

package main

// --metrics-addr: after known traffic, /metrics reports the exact counts.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/testkit"
)

// waitMetrics polls /metrics until every sample in want has its value.
func waitMetrics(t *testing.T, d *daemon, want map[string]float64) map[string]float64 {
	t.Helper()
	var last map[string]float64
	testkit.EventuallyNil(t, 5*time.Second, pollEvery, func() error {
		m, err := d.scrapeMetrics()
		if err != nil {
			return err
		}
		last = m
		var bad []string
		for name, v := range want {
			got, ok := m[name]
			switch {
			case !ok:
				bad = append(bad, name+" missing")
			case got != v:
				bad = append(bad, fmt.Sprintf("%s = %v, want %v", name, got, v))
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			return fmt.Errorf("metrics: %s", strings.Join(bad, "; "))
		}
		return nil
	})
	return last
}

func TestDaemonMetrics(t *testing.T) {
	forEachDaemonConfig(t, func(t *testing.T, args []string) {
		d := startDaemon(t, with(args, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
			"--max-conns", "2", "--max-message", "1000")...)
		if !strings.HasPrefix(d.metricsURL, "http://127.0.0.1:") || !strings.HasSuffix(d.metricsURL, "/metrics") {
			t.Fatalf("serving-metrics line gives %q, want http://127.0.0.1:PORT/metrics", d.metricsURL)
		}
		const (
			conns       = "frameloop_connections"
			accepted    = "frameloop_connections_accepted_total"
			oversize    = `frameloop_connections_closed_total{reason="oversize"}`
			peerClosed  = `frameloop_connections_closed_total{reason="peer_closed"}`
			framesIn    = "frameloop_frames_received_total"
			framesOut   = "frameloop_frames_sent_total"
			bytesIn     = "frameloop_bytes_received_total"
			bytesOut    = "frameloop_bytes_sent_total"
			paused      = "frameloop_accept_paused"
			readPauses  = "frameloop_read_paused_total"
			frameBytes  = 4 + 100
			framesEach  = 10
			connections = 2
		)
		waitMetrics(t, d, map[string]float64{conns: 0, accepted: 0, paused: 0, framesIn: 0, bytesIn: 0})

		// Two connections, ten 100-byte frames each: the cap of 2 is reached.
		a, b := d.dial(t), d.dial(t)
		for i := range framesEach {
			testkit.Echo(t, a, testkit.Pattern(100, uint64(i)), ioWait)
			testkit.Echo(t, b, testkit.Pattern(100, uint64(100+i)), ioWait)
		}
		total := float64(connections * framesEach)
		waitMetrics(t, d, map[string]float64{
			conns: 2, accepted: 2, paused: 1,
			framesIn: total, framesOut: total, bytesIn: total * frameBytes, bytesOut: total * frameBytes,
			oversize: 0, peerClosed: 0, readPauses: 0,
		})

		// One closed by an oversized header, one by the peer.
		if err := testkit.WriteAll(a, testkit.Header(1001), ioWait); err != nil {
			t.Fatal(err)
		}
		if _, err := testkit.WaitClosed(a, ioWait); err != nil {
			t.Fatal(err)
		}
		a.Close()
		b.Close()
		m := waitMetrics(t, d, map[string]float64{
			conns: 0, accepted: 2, paused: 0,
			framesIn: total, framesOut: total, bytesIn: total*frameBytes + 4, bytesOut: total * frameBytes,
			oversize: 1, peerClosed: 1,
		})
		for _, reason := range []string{"peer_closed", "idle_timeout", "write_timeout", "oversize", "reset",
			"shutdown", "proxy_header", "error", "local"} {
			if _, ok := m[`frameloop_connections_closed_total{reason="`+reason+`"}`]; !ok {
				t.Errorf("no closed_total sample for reason %q", reason)
			}
		}
		for _, name := range []string{"go_goroutines", "process_open_fds", "frameloop_write_rejected_total"} {
			if v, ok := m[name]; !ok || (name != "frameloop_write_rejected_total" && v <= 0) {
				t.Errorf("%s = %v (present %v), want a positive sample", name, v, ok)
			}
		}

		// A client that pipelines far past the high-water mark and reads
		// nothing makes the daemon pause reading from it.
		c := d.dialSmallReceiveBuffer(t)
		select {
		case err := <-floodUntilBlocked(c, 1000, 15*time.Second):
			if err != nil {
				t.Fatalf("flooding: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the flood did not end")
		}
		testkit.EventuallyNil(t, 5*time.Second, pollEvery, func() error {
			m, err := d.scrapeMetrics()
			if err != nil {
				return err
			}
			if m[readPauses] < 1 {
				return fmt.Errorf("%s = %v, want at least 1", readPauses, m[readPauses])
			}
			if m[conns] != 1 || m[accepted] != 3 {
				return fmt.Errorf("connections %v accepted %v, want 1 and 3", m[conns], m[accepted])
			}
			return nil
		})
		c.Close()
		waitMetrics(t, d, map[string]float64{conns: 0, paused: 0})
		d.stop()
	})
}

// getHealthz fetches the daemon's /healthz (beside /metrics).
func (d *daemon) getHealthz() (status int, body string, err error) {
	if d.metricsURL == "" {
		return 0, "", errors.New("the daemon serves no metrics")
	}
	url := strings.TrimSuffix(d.metricsURL, "/metrics") + "/healthz"
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// /healthz answers 200 "ok" while the daemon accepts connections and 503
// "draining" from the signal until the process exits, while /metrics keeps
// answering. The drain is held open by a client that pipelined without
// reading, so its replies stay queued.
func TestDaemonHealthzDuringDrain(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--loops", "2", "--shutdown-timeout", "30s")
	if code, body, err := d.getHealthz(); err != nil || code != http.StatusOK || body != "ok\n" {
		t.Fatalf("before the drain: /healthz %d %q %v; want 200 \"ok\\n\"", code, body, err)
	}
	testkit.Echo(t, d.dial(t), []byte("serving"), ioWait)

	c := d.dialSmallReceiveBuffer(t) // never reads
	select {
	case err := <-floodUntilBlocked(c, 16<<10, 15*time.Second):
		if err != nil {
			t.Fatalf("flooding the non-reading client: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the flood did not end")
	}
	if code, _, err := d.getHealthz(); err != nil || code != http.StatusOK {
		t.Fatalf("with a stalled client, before the signal: /healthz %d %v; want 200", code, err)
	}

	d.signal(syscall.SIGTERM)
	if _, ok := d.waitLog(ioWait, msgIs("signal received, draining")); !ok {
		t.Fatal("no \"signal received, draining\" line after SIGTERM")
	}
	// Draining is flagged before that line is logged: no waiting here.
	if code, body, err := d.getHealthz(); err != nil || code != http.StatusServiceUnavailable || body != "draining\n" {
		t.Fatalf("draining: /healthz %d %q %v; want 503 \"draining\\n\"", code, body, err)
	}
	if _, ok := d.waitLog(ioWait, msgIs("shutting down")); !ok {
		t.Fatal("no \"shutting down\" line after SIGTERM")
	}
	for range 5 {
		time.Sleep(50 * time.Millisecond)
		if d.hasExited() {
			t.Fatal("the daemon exited while a client still had replies queued")
		}
		if code, body, err := d.getHealthz(); err != nil || code != http.StatusServiceUnavailable || body != "draining\n" {
			t.Fatalf("still draining: /healthz %d %q %v; want 503 \"draining\\n\"", code, body, err)
		}
		m, err := d.scrapeMetrics()
		if err != nil {
			t.Fatalf("/metrics while draining: %v", err)
		}
		if m["frameloop_connections"] != 1 {
			t.Fatalf("/metrics while draining: frameloop_connections = %v, want the stalled client's 1", m["frameloop_connections"])
		}
	}

	c.Close() // the drain can end
	code, ok := d.waitExit(exitWait)
	if !ok || code != 0 {
		t.Fatalf("after the client left: exited %v, status %d; want status 0", ok, code)
	}
	if _, _, err := d.getHealthz(); err == nil {
		t.Error("/healthz still answers after the daemon exited")
	}
}
