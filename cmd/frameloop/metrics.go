package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statsCollector turns Server.Stats into Prometheus metrics at scrape
// time. The loops count on their own goroutines, without atomics, and
// publish once per pass; nothing is counted on the hot path for Prometheus.
type statsCollector struct {
	srv *frameloop.Server

	connections, accepted, closed, framesIn, framesOut        *prometheus.Desc
	bytesIn, bytesOut, acceptPaused, readPauses, backpressure *prometheus.Desc
	panics, inputMemory, memoryPauses                         *prometheus.Desc
	tlsDone, tlsFailed, tlsRunning, tlsLatency                *prometheus.Desc
}

func newStatsCollector(srv *frameloop.Server) *statsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("frameloop_"+name, help, labels, nil)
	}
	return &statsCollector{
		srv:          srv,
		connections:  d("connections", "Connections open now."),
		accepted:     d("connections_accepted_total", "Connections accepted."),
		closed:       d("connections_closed_total", "Connections closed, by reason.", "reason"),
		framesIn:     d("frames_received_total", "Complete frames received."),
		framesOut:    d("frames_sent_total", "Reply frames queued for sending."),
		bytesIn:      d("bytes_received_total", "Bytes read from connections."),
		bytesOut:     d("bytes_sent_total", "Bytes written to connections."),
		acceptPaused: d("accept_paused", "1 while accepting is paused by the connection cap or by descriptor exhaustion."),
		readPauses:   d("read_paused_total", "Times reading from a connection paused because its replies queued up (backpressure episodes)."),
		backpressure: d("write_rejected_total", "Writes refused because a connection's queue was full."),
		panics:       d("handler_panics_total", "Handler callbacks that panicked (each closes its connection, reason=\"panic\", unless it was OnClose)."),
		inputMemory:  d("input_memory_bytes", "Input held for frames not yet complete, as charged to --max-input-memory."),
		memoryPauses: d("input_memory_paused_total", "Times reading from a connection paused because its frame did not fit --max-input-memory."),
		tlsDone:      d("tls_handshakes_total", "TLS handshakes completed."),
		tlsFailed:    d("tls_handshakes_failed_total", "TLS handshakes failed, by reason.", "reason"),
		tlsRunning:   d("tls_handshakes_in_progress", "TLS handshakes running now."),
		tlsLatency:   d("tls_handshake_duration_seconds", "Time from accept to the end of completed TLS handshakes."),
	}
}

// tlsFailureReasons are the labels of tls_handshakes_failed_total, all
// exported from the start so that rates work.
var tlsFailureReasons = []string{"timeout", "eof", "bad_record", "handshake_failure", "bad_certificate", "overflow", "closed", "other"}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.accepted, c.closed, c.framesIn, c.framesOut,
		c.bytesIn, c.bytesOut, c.acceptPaused, c.readPauses, c.backpressure, c.panics, c.inputMemory, c.memoryPauses,
		c.tlsDone, c.tlsFailed, c.tlsRunning, c.tlsLatency} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.connections, float64(s.Connections))
	counter(c.accepted, s.Accepted)
	for _, r := range frameloop.CloseReasons() {
		counter(c.closed, s.ClosedBy(r), r.String())
	}
	counter(c.framesIn, s.FramesIn)
	counter(c.framesOut, s.FramesOut)
	counter(c.bytesIn, s.BytesIn)
	counter(c.bytesOut, s.BytesOut)
	paused := 0.0
	if s.AcceptPaused {
		paused = 1
	}
	gauge(c.acceptPaused, paused)
	counter(c.readPauses, s.ReadPauses)
	counter(c.backpressure, s.Backpressure)
	counter(c.panics, s.Panics)
	gauge(c.inputMemory, float64(s.InputMemory))
	counter(c.memoryPauses, s.MemoryPauses)
	counter(c.tlsDone, s.TLSHandshakes)
	for _, r := range tlsFailureReasons {
		counter(c.tlsFailed, s.TLSHandshakeFailures[r], r)
	}
	gauge(c.tlsRunning, float64(s.TLSHandshaking))
	buckets := make(map[float64]uint64, len(frameloop.TLSHandshakeBuckets))
	var cumulative uint64
	for i, le := range frameloop.TLSHandshakeBuckets {
		cumulative += s.TLSHandshakeLatency[i]
		buckets[le.Seconds()] = cumulative
	}
	ch <- prometheus.MustNewConstHistogram(c.tlsLatency, s.TLSHandshakes, s.TLSHandshakeLatencySum.Seconds(), buckets)
}

// metricsServer serves /metrics and /healthz over HTTP; the data path
// never sees it.
type metricsServer struct {
	http     *http.Server
	ln       net.Listener
	draining atomic.Bool
}

// listenMetrics binds addr now, so that a bad address fails at start-up.
func listenMetrics(addr string, srv *frameloop.Server) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newStatsCollector(srv),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &metricsServer{ln: ln}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", m.healthz)
	m.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return m, nil
}

// healthz answers 200 "ok" while the server accepts connections, and 503
// "draining" from the moment a drain begins until the process exits, so
// that a load balancer's HTTP check takes the instance out of rotation.
func (m *metricsServer) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if m.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "draining\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// startDraining turns /healthz to 503 for the rest of the process's life.
func (m *metricsServer) startDraining() { m.draining.Store(true) }

func (m *metricsServer) serve(log *slog.Logger) {
	if err := m.http.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server stopped", "err", err)
	}
}

func (m *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m.http.Shutdown(ctx)
}
