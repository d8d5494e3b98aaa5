package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
)

type serveOptions struct {
	cfg             frameloop.Config
	shutdownTimeout time.Duration
	metricsAddr     string
	logLevel        string
	logFormat       string
	allowSharedPort bool
	tls             tlsFlags
}

func parseServeFlags(args []string, stdout io.Writer) (*serveOptions, error) {
	def := frameloop.DefaultConfig()
	fs := newFlagSet("serve")
	addr := fs.String("addr", def.Addr, "listen address: host:port, [ipv6]:port or unix:/path")
	maxConns := intFlag(fs, "max-conns", def.MaxConns, 1, 10_000_000, "most connections served at once")
	maxMessage := intFlag(fs, "max-message", def.MaxMessage, 1, 1<<30, "largest accepted payload in bytes")
	idle := durationFlag(fs, "idle-timeout", def.IdleTimeout, "close a connection that completes no frame for this long")
	write := durationFlag(fs, "write-timeout", def.WriteTimeout, "close a connection whose replies make no progress for this long")
	shutdown := durationFlag(fs, "shutdown-timeout", 30*time.Second, "longest graceful drain on SIGTERM/SIGINT")
	loops := intFlag(fs, "loops", runtime.NumCPU(), 1, 1024, "event loops (one goroutine each, locked to an OS thread)")
	backend := choiceFlag(fs, "backend", poller.Default(), poller.Backends(), "readiness API")
	metrics := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics and a health check at http://ADDR/healthz (default off)")
	inmem := sizeFlag(fs, "max-input-memory", frameloop.DefaultMaxInputMemory, 0, 1<<40,
		"most memory held for frames not yet complete, all connections together; 0: no bound")
	framing := framingFlag(fs, "framing", "wire format: a preset ("+strings.Join(frameloop.FramingPresets(), ", ")+
		") or key=value,... with length=1|2|3|4|8|varint, order=le|be, offset, adjust, varint-max")
	proxy := fs.Bool("proxy-protocol", false, "require a PROXY protocol v1 or v2 header on each connection")
	var tf tlsFlags
	fs.StringVar(&tf.cert, "tls-cert", "", "serve TLS with this PEM certificate chain (with --tls-key; reloaded on SIGHUP)")
	fs.StringVar(&tf.key, "tls-key", "", "the PEM private key of --tls-cert")
	fs.StringVar(&tf.clientCA, "tls-client-ca", "", "require client certificates signed by these PEM CAs")
	hsTimeout := durationFlag(fs, "tls-handshake-timeout", 10*time.Second, "close a connection whose TLS handshake is not complete this long after the accept")
	minVersion := choiceFlag(fs, "tls-min-version", "1.2", []string{"1.2", "1.3"}, "oldest TLS version accepted")
	alpnFlag(fs, &tf.alpn, "tls-alpn", "ALPN protocols served, comma-separated, in the server's order of preference (e.g. x-frameloop); "+
		"a client that offers ALPN but none of these is refused (default none: the client's ALPN is ignored)")
	shared := fs.Bool("allow-shared-port", false, "with --balance reuseport, start even if another process's SO_REUSEPORT listeners hold the port, "+
		"and let the kernel split connections with it (blue/green restarts)")
	balance := choiceFlag(fs, "balance", "handoff", []string{"handoff", "reuseport"}, "spreading connections over loops")
	level := choiceFlag(fs, "log-level", "info", []string{"debug", "info", "warn", "error"}, "log level")
	format := choiceFlag(fs, "log-format", "text", []string{"text", "json"}, "log format")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: frameloop serve [flags]")
			printDefaults(stdout, fs)
		}
		return nil, err
	}
	tf.minVersion = *minVersion
	if (tf.cert == "") != (tf.key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	if !tf.enabled() && tf.clientCA != "" {
		return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if !tf.enabled() && tf.alpn != nil {
		return nil, errors.New("--tls-alpn needs --tls-cert and --tls-key")
	}
	if *shared && *balance != "reuseport" {
		return nil, errors.New("--allow-shared-port applies only to --balance reuseport: other listeners can share a port only through SO_REUSEPORT")
	}
	if least := frameloop.MinInputMemory(*maxMessage); *inmem > 0 && *inmem < least {
		return nil, fmt.Errorf("--max-input-memory must hold one frame of --max-message bytes: at least %d, got %d", least, *inmem)
	}
	cfg := def
	cfg.Addr = *addr
	cfg.MaxConns = *maxConns
	cfg.MaxMessage = *maxMessage
	cfg.IdleTimeout = *idle
	cfg.WriteTimeout = *write
	cfg.Loops = *loops
	cfg.Backend = *backend
	cfg.Balance = *balance
	cfg.ProxyProtocol = *proxy
	cfg.Framing = *framing
	cfg.TLSHandshakeTimeout = *hsTimeout
	if *hsTimeout == 0 {
		cfg.TLSHandshakeTimeout = -1 // never: 0 would be the library's default
	}
	cfg.MaxInputMemory = *inmem
	if *inmem == 0 {
		cfg.MaxInputMemory = -1 // the flag's 0 is the library's "no bound"
	}
	return &serveOptions{cfg: cfg, shutdownTimeout: *shutdown, metricsAddr: *metrics, logLevel: *level, logFormat: *format,
		allowSharedPort: *shared, tls: tf}, nil
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // validated by the flag
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runServe(args []string, stdout, stderr io.Writer) int {
	opts, err := parseServeFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "frameloop serve: %v\n", err)
		return 2
	}
	log := newLogger(stderr, opts.logLevel, opts.logFormat)
	opts.cfg.Logger = log
	var certs *certReloader
	if opts.tls.enabled() {
		if opts.cfg.TLS, certs, err = opts.tls.tlsConfig(); err != nil {
			fmt.Fprintf(stderr, "frameloop serve: %v\n", err)
			return 1
		}
	}
	srv, err := frameloop.New(frameloop.EchoHandler{}, opts.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "frameloop serve: %v\n", err)
		return 2
	}
	if addr, shared := sharedPortInUse(opts.cfg); shared && !opts.allowSharedPort {
		fmt.Fprintf(stderr, "frameloop serve: %s is already in use (another instance with --balance reuseport?); pass --allow-shared-port to share it on purpose\n", addr)
		return 1
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintf(stderr, "frameloop serve: %v\n", err)
		return 1
	}
	if certs != nil {
		log.Info("serving TLS", append(certs.describe(), "min_version", opts.tls.minVersion,
			"alpn", strings.Join(opts.tls.alpn, ","), "client_ca", opts.tls.clientCA)...)
	}
	var m *metricsServer
	if opts.metricsAddr != "" {
		m, err = listenMetrics(opts.metricsAddr, srv)
		if err != nil {
			srv.Shutdown(context.Background())
			fmt.Fprintf(stderr, "frameloop serve: metrics: %v\n", err)
			return 1
		}
		defer m.close()
		go m.serve(log)
		log.Info("serving metrics", "addr", "http://"+m.ln.Addr().String()+"/metrics",
			"healthz", "http://"+m.ln.Addr().String()+"/healthz")
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// SIGHUP reloads the certificate; without TLS there is nothing to
	// reload, but a `systemctl reload` or a stray `kill -HUP` must not
	// stop the daemon and drop its connections either.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	go func() {
		for range hups {
			if certs == nil {
				log.Info("SIGHUP: nothing to reload (no TLS)")
				continue
			}
			certs.reload(log)
		}
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()

	select {
	case err := <-served:
		log.Error("server stopped", "err", err)
		return 1
	case sig := <-sigs:
		if m != nil {
			m.startDraining() // before anything else: /healthz says so at once
		}
		log.Info("signal received, draining", "signal", sig.String(), "timeout", opts.shutdownTimeout.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	if opts.shutdownTimeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), opts.shutdownTimeout)
	}
	defer cancel()
	go func() {
		// A second signal cuts the drain short.
		if _, ok := <-sigs; ok {
			log.Warn("second signal: closing every connection now")
			cancel()
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown timeout passed; closed the remaining connections", "err", err)
	}
	if err := <-served; err != nil && !errors.Is(err, frameloop.ErrServerClosed) {
		log.Error("server stopped", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// sharedPortInUse reports whether the listeners cfg asks for would share
// their port with another process's: with --balance reuseport and more
// than one loop they bind with SO_REUSEPORT, and the kernel then lets any
// other SO_REUSEPORT listener of the same user on that port — a second
// instance started by mistake, a stale one — take part of the connections,
// silently. It binds the address without SO_REUSEPORT (SO_REUSEADDR, as
// the listeners have, so that connections of an earlier instance in
// TIME_WAIT do not count): if that fails with EADDRINUSE a listener holds
// the port, and if a bind with SO_REUSEPORT then succeeds, it would share.
// A holder that would not share is left to the listeners' own bind error,
// as is any other failure. Both probes close their socket at once and never
// listen. An explicit port only: port 0 gets a port of its own. Two
// instances started within the same few microseconds can both pass.
func sharedPortInUse(cfg frameloop.Config) (addr string, shared bool) {
	if cfg.Balance != "reuseport" || cfg.Loops < 2 {
		return "", false // one listener, bound without SO_REUSEPORT: it cannot share
	}
	ep, err := sock.ParseEndpoint(cfg.Addr)
	if err != nil || ep.Network == "unix" || ep.Port == 0 {
		return "", false
	}
	if err := sock.ProbeBind(ep, false); !errors.Is(err, syscall.EADDRINUSE) {
		return "", false
	}
	return ep.String(), sock.ProbeBind(ep, true) == nil
}
