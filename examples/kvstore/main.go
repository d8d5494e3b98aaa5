// Command kvstore is a key-value server on frameloop whose slow command is
// answered by a worker pool through reply slots: in request order, with
// flow control, and with a shutdown that waits for the work in flight.
//
//	go run ./examples/kvstore --addr 127.0.0.1:5884
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
	"syscall"
	"time"

	"github.com/frameloop/frameloop"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("kvstore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:5884", "listen address")
	loops := fs.Int("loops", 0, "event loops (0: one per CPU)")
	backend := fs.String("backend", "", "readiness API (default: the platform's best)")
	maxConns := fs.Int("max-conns", 1024, "most connections served at once")
	workers := fs.Int("workers", 8, "workers doing the slow requests")
	perConn := fs.Int("per-conn", 4, "slow requests one connection may have in flight before its reading pauses")
	slow := fs.Duration("slow", 100*time.Millisecond, "time a SLOWGET takes")
	drain := fs.Duration("shutdown-timeout", 10*time.Second, "longest graceful drain on SIGTERM/SIGINT")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *workers < 1 || *perConn < 1 || *maxConns < 1 || *slow < 0 {
		fmt.Fprintln(stderr, "kvstore: --workers, --per-conn and --max-conns must be at least 1, --slow not negative")
		return 2
	}

	cfg := frameloop.DefaultConfig()
	cfg.Addr, cfg.Loops, cfg.Backend, cfg.MaxConns = *addr, *loops, *backend, *maxConns
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	s := newServer(*workers, *maxConns, *perConn, *slow)
	srv, err := frameloop.New(s, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "kvstore:", err)
		return 2
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintln(stderr, "kvstore:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// The drain waits for every reply reserved and not yet filled.
		shutdown, cancel := context.WithTimeout(context.Background(), *drain)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	err = srv.Serve()
	s.stop()
	if !errors.Is(err, frameloop.ErrServerClosed) {
		fmt.Fprintln(stderr, "kvstore:", err)
		return 1
	}
	return 0
}
