// Command peer runs a reference echo server for the frameloop protocol
// (4-byte little-endian length N, then N payload bytes; every frame is
// answered with an identical frame, in order) on top of one of three Go
// networking stacks, so that `bench/cmd/suite` can compare frameloop with
// them under identical conditions:
//
//	net   Go's standard library: a goroutine per connection with bufio
//	gnet  github.com/panjf2000/gnet/v2 event loops
//	nbio  github.com/lesismal/nbio pollers
//
// Each server logs one line containing "listening" and the address once it
// accepts connections, closes a connection whose frame header announces more
// than --max-message bytes, and exits with status 0 on SIGTERM or SIGINT.
//
// With --tls-cert and --tls-key, net and nbio serve TLS 1.3 only: net with
// crypto/tls (tls.Server on each accepted connection), nbio with its TLS
// extension's fork of crypto/tls (github.com/lesismal/llib/std/crypto/tls),
// which runs the handshake and the records on the poller. gnet has no TLS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
)

// defaultMaxMessage is the largest accepted payload, the same as frameloop's
// --max-message default (1 MiB).
const defaultMaxMessage = 1 << 20

// config is what every implementation is started with.
type config struct {
	addr       string // host:port to listen on
	loops      int    // event loops / pollers (ignored by net)
	maxMessage int    // largest accepted payload
	// tlsCert and tlsKey are PEM files; both empty: plain TCP. Each
	// implementation loads them with its own TLS library.
	tlsCert, tlsKey string
	// ready is called once the server accepts connections, with the
	// address it listens on.
	ready func(addr string)
}

// tlsCapable lists the implementations that serve TLS.
var tlsCapable = map[string]bool{"net": true, "nbio": true}

// servers maps --impl values to their implementations. Each serve function
// blocks until ctx is cancelled (then it stops and returns nil) or the
// server fails.
var servers = map[string]func(ctx context.Context, cfg config) error{
	"net":  serveNet,
	"gnet": serveGnet,
	"nbio": serveNbio,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	impl := fs.String("impl", "net", "implementation: net, gnet or nbio")
	addr := fs.String("addr", "127.0.0.1:5882", "listen address host:port")
	loops := fs.Int("loops", 1, "event loops / pollers (ignored by net)")
	maxMessage := fs.Int("max-message", defaultMaxMessage, "largest accepted payload in bytes")
	tlsCert := fs.String("tls-cert", "", "serve TLS 1.3 with this PEM certificate chain (with --tls-key; net and nbio)")
	tlsKey := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	serve, ok := servers[*impl]
	if !ok {
		fmt.Fprintf(stderr, "peer: unknown --impl %q (want net, gnet or nbio)\n", *impl)
		return 2
	}
	if *loops < 1 {
		fmt.Fprintf(stderr, "peer: --loops must be at least 1, got %d\n", *loops)
		return 2
	}
	if *maxMessage < 0 || *maxMessage > 1<<31-5 {
		fmt.Fprintf(stderr, "peer: --max-message out of range: %d\n", *maxMessage)
		return 2
	}

	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(stderr, "peer: --tls-cert and --tls-key go together: give both or neither")
		return 2
	}
	mode := "tcp"
	if *tlsCert != "" {
		if !tlsCapable[*impl] {
			fmt.Fprintf(stderr, "peer: --impl %s has no TLS (net and nbio have)\n", *impl)
			return 2
		}
		mode = "tls1.3"
	}

	logger := log.New(stderr, "", log.LstdFlags)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := serve(ctx, config{
		addr:       *addr,
		loops:      *loops,
		maxMessage: *maxMessage,
		tlsCert:    *tlsCert,
		tlsKey:     *tlsKey,
		ready: func(a string) {
			logger.Printf("peer %s listening on %s (loops=%d, %s)", *impl, a, *loops, mode)
		},
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "peer: %s: %v\n", *impl, err)
		return 1
	}
	return 0
}
