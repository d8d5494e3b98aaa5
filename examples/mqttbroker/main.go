// Command mqttbroker is an MQTT 3.1.1 broker (QoS 0 and 1, clean sessions)
// on frameloop, which mosquitto's own clients use.
//
//	go run ./examples/mqttbroker --addr 127.0.0.1:1883
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("mqttbroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := frameloop.DefaultConfig()
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:1883", "listen address")
	fs.IntVar(&cfg.Loops, "loops", 0, "event loops (0: one per CPU)")
	fs.StringVar(&cfg.Backend, "backend", "", "readiness API (default: the platform's best)")
	fs.IntVar(&cfg.MaxConns, "max-conns", 4096, "most connections served at once")
	fs.IntVar(&cfg.MaxMessage, "max-message", 1<<20, "largest packet body accepted, in bytes")
	fs.IntVar(&cfg.MaxQueued, "max-queued", 0, "bytes a subscriber may fall behind before it is disconnected (0: frameloop's default, 4 MiB or more)")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", 30*time.Second, "disconnect a subscriber whose queued packets make no progress for this long")
	fs.DurationVar(&cfg.IdleTimeout, "connect-timeout", 10*time.Second, "close a connection that sends no CONNECT for this long")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics")
	drain := fs.Duration("shutdown-timeout", 10*time.Second, "longest graceful drain on SIGTERM/SIGINT")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Framing, _ = frameloop.ParseFraming("mqtt")
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	b := NewBroker()
	srv, err := frameloop.New(b, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "mqttbroker:", err)
		return 2
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintln(stderr, "mqttbroker:", err)
		return 1
	}
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			fmt.Fprintln(stderr, "mqttbroker:", err)
			return 1
		}
		hs := &http.Server{Handler: promhttp.HandlerFor(registry(srv, b), promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), *drain)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(); !errors.Is(err, frameloop.ErrServerClosed) {
		fmt.Fprintln(stderr, "mqttbroker:", err)
		return 1
	}
	return 0
}

// registry exports frameloop's Server.Stats and the broker's counters,
// read at scrape time.
func registry(srv *frameloop.Server, b *Broker) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, m := range []struct {
		name, help string
		counter    bool
		v          func() float64
	}{
		{"frameloop_connections", "Connections open now.", false, func() float64 { return float64(srv.Stats().Connections) }},
		{"frameloop_connections_accepted_total", "Connections accepted.", true, func() float64 { return float64(srv.Stats().Accepted) }},
		{"frameloop_bytes_received_total", "Bytes read from connections.", true, func() float64 { return float64(srv.Stats().BytesIn) }},
		{"frameloop_bytes_sent_total", "Bytes written to connections.", true, func() float64 { return float64(srv.Stats().BytesOut) }},
		{"frameloop_write_rejected_total", "Writes refused because a connection's queue was full.", true, func() float64 { return float64(srv.Stats().Backpressure) }},
		{"mqtt_clients", "Sessions connected now.", false, func() float64 { return float64(b.Stats().Clients) }},
		{"mqtt_publish_received_total", "PUBLISH packets received.", true, func() float64 { return float64(b.Stats().Published) }},
		{"mqtt_publish_delivered_total", "PUBLISH packets queued to subscribers.", true, func() float64 { return float64(b.Stats().Delivered) }},
		{"mqtt_slow_consumers_total", "Subscribers disconnected for falling behind.", true, func() float64 { return float64(b.Stats().Slow) }},
		{"mqtt_protocol_violations_total", "Connections closed for a protocol violation.", true, func() float64 { return float64(b.Stats().Violations) }},
	} {
		if m.counter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, m.v))
		} else {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: m.name, Help: m.help}, m.v))
		}
	}
	return reg
}
