// Command pubsub is a broadcast server on frameloop: every frame a client
// sends is delivered to every other connected client.
//
//	go run ./examples/pubsub --addr 127.0.0.1:5883
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/frameloop/frameloop"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5883", "listen address")
	loops := flag.Int("loops", 0, "event loops (0: one per CPU)")
	queue := flag.Int("max-queued", 1<<20, "bytes a subscriber may fall behind before it is disconnected")
	flag.Parse()

	cfg := frameloop.DefaultConfig()
	cfg.Addr = *addr
	cfg.Loops = *loops
	cfg.MaxMessage = 64 << 10
	cfg.MaxQueued = *queue
	cfg.IdleTimeout = 0 // subscribers may listen without speaking
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := frameloop.New(NewHub(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pubsub:", err)
		os.Exit(2)
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintln(os.Stderr, "pubsub:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(); err != frameloop.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "pubsub:", err)
		os.Exit(1)
	}
}
