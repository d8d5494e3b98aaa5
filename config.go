package frameloop

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/frameloop/frameloop/internal/bufpool"
	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
)

// Config configures a Server. Zero sizes and counts take the defaults
// below; zero durations disable their timeout. DefaultConfig returns the
// daemon's defaults, timeouts included.
type Config struct {
	// Addr to listen on: "host:port", "[ipv6]:port" or "unix:/path".
	// Default "127.0.0.1:5882".
	Addr string

	// MaxConns is the most connections served at once, across all loops.
	// At the limit the server stops accepting; new connections wait in the
	// kernel's backlog until a slot frees. Default 4096.
	MaxConns int

	// Framing is the wire format: see Framing. The zero value is a 4-byte
	// little-endian length, then the body.
	Framing Framing

	// MaxMessage is the largest body accepted, in bytes, the framing's
	// adjustment applied. A header announcing more closes the connection.
	// Default 1 MiB; at most 1 GiB.
	MaxMessage int

	// IdleTimeout closes a connection that completes no frame for this
	// long. A connection with replies queued is not idle (WriteTimeout
	// governs it); its idle period restarts once they are sent.
	IdleTimeout time.Duration

	// WriteTimeout closes a connection whose queued output makes no
	// progress for this long.
	WriteTimeout time.Duration

	// Loops is the number of event loops. Default: the number of CPUs.
	Loops int

	// Backend is the readiness API: "epoll" (Linux), "kqueue" (BSD,
	// macOS) or "poll". Default: the platform's best.
	Backend string

	// Balance chooses how connections are spread over loops when Loops > 1:
	// "handoff" has one loop accept and hand each connection to the loop
	// with the fewest connections; "reuseport" gives each loop its own
	// SO_REUSEPORT listener and lets the kernel hash connections over them.
	// Unix sockets always use "handoff". Default "handoff": measured equal
	// in throughput and CPU here, and it balances by current load where the
	// kernel's hash ignores it (see README, "Several loops").
	Balance string

	// LowWater and HighWater bound a connection's queued output: above
	// HighWater the loop stops reading from the connection, below LowWater
	// it reads again. Defaults 32 KiB and 64 KiB, as in Netty.
	LowWater, HighWater int

	// MaxQueued is the hard cap on a connection's queued output. A Write
	// that would pass it fails with ErrBackpressure. It must exceed
	// HighWater by at least one maximum-size frame, so that a reply to any
	// frame the loop reads always fits. Default HighWater + 2×(MaxMessage+4),
	// at least 4 MiB.
	MaxQueued int

	// MaxInputMemory bounds the memory all connections together hold for
	// frames not yet complete. When buffering a frame would pass it, the
	// loop stops reading that connection until memory is freed; none is
	// closed for it. Zero means the default, 256 MiB (raised to hold two
	// maximum frames if MaxMessage needs it); a negative value means no
	// bound. It must hold at least one maximum frame.
	MaxInputMemory int64

	// ProxyProtocol requires a PROXY protocol v1 or v2 header at the start
	// of every connection.
	ProxyProtocol bool

	// TLS, when set, serves every connection over TLS with the standard
	// library's crypto/tls (after its PROXY header, if any). The handshake
	// runs on a goroutine of its own; once established, records are
	// decrypted and encrypted on the loop (tls.go). Share one *tls.Config:
	// session tickets are keyed per Config.
	TLS *tls.Config

	// TLSHandshakeTimeout closes a connection whose handshake has not
	// completed this long after it was accepted. Default 10 s; negative:
	// none (the idle timeout still applies).
	TLSHandshakeTimeout time.Duration

	// MaxHandshakes bounds the handshakes in progress at once, across all
	// loops: each runs on a goroutine. Connections past it wait unread, in
	// the kernel, without a goroutine. Default 64.
	MaxHandshakes int

	// Logger receives the server's logs. Default: none.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration `frameloop serve` starts from.
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1:5882",
		MaxConns:     4096,
		MaxMessage:   1 << 20,
		IdleTimeout:  60 * time.Second,
		WriteTimeout: 30 * time.Second,
	}
}

// DefaultMaxInputMemory is MaxInputMemory's default.
const DefaultMaxInputMemory = 256 << 20

// MinInputMemory is the smallest MaxInputMemory allowed with the given
// MaxMessage: one maximum frame must fit the budget, or a client sending
// one would wait for memory forever.
func MinInputMemory(maxMessage int) int64 {
	return int64(bufpool.ClassSize(maxMessage + framing.MaxOffset + framing.MaxVarintLen))
}

const (
	maxMessageLimit = 1 << 30
	defaultLow      = 32 << 10
	defaultHigh     = 64 << 10
	// maxTimeout bounds the timeouts, so that now+timeout never
	// overflows the loop's clock (nanoseconds since the server started).
	maxTimeout = 100 * 365 * 24 * time.Hour
	// lingerTimeout bounds how long a connection we are closing is drained
	// after its last reply: closing a socket with unread input makes the
	// kernel send a reset, which can destroy replies the peer has not read.
	lingerTimeout = 2 * time.Second
)

// config is a validated Config with every default filled in.
type config struct {
	Config
	endpoint sock.Endpoint
	// format decodes with MaxMessage as the limit; outFormat encodes
	// replies, which may be larger (MaxQueued bounds them).
	format, outFormat *framing.Format
}

func (c Config) resolve() (*config, error) {
	r := &config{Config: c}
	if r.Addr == "" {
		r.Addr = "127.0.0.1:5882"
	}
	ep, err := sock.ParseEndpoint(r.Addr)
	if err != nil {
		return nil, err
	}
	r.endpoint = ep
	if r.MaxConns == 0 {
		r.MaxConns = 4096
	}
	if r.MaxConns < 0 {
		return nil, fmt.Errorf("Config.MaxConns must be at least 1, got %d", c.MaxConns)
	}
	if r.MaxMessage == 0 {
		r.MaxMessage = 1 << 20
	}
	if r.MaxMessage < 0 || r.MaxMessage > maxMessageLimit {
		return nil, fmt.Errorf("Config.MaxMessage must be from 1 to %d bytes, got %d", maxMessageLimit, c.MaxMessage)
	}
	if r.format, err = framing.New(r.Framing, r.MaxMessage); err != nil {
		return nil, fmt.Errorf("Config.Framing: %v", strings.TrimPrefix(err.Error(), "framing: "))
	}
	r.outFormat, _ = framing.New(r.Framing, framing.MaxBody)
	if r.IdleTimeout < 0 || r.IdleTimeout > maxTimeout {
		return nil, fmt.Errorf("Config.IdleTimeout must be from 0 to %v, got %v", maxTimeout, c.IdleTimeout)
	}
	if r.WriteTimeout < 0 || r.WriteTimeout > maxTimeout {
		return nil, fmt.Errorf("Config.WriteTimeout must be from 0 to %v, got %v", maxTimeout, c.WriteTimeout)
	}
	if r.Loops == 0 {
		r.Loops = runtime.NumCPU()
	}
	if r.Loops < 0 || r.Loops > 1024 {
		return nil, fmt.Errorf("Config.Loops must be from 1 to 1024, got %d", c.Loops)
	}
	if r.Backend == "" {
		r.Backend = poller.Default()
	}
	if !slices.Contains(poller.Backends(), r.Backend) {
		return nil, fmt.Errorf("Config.Backend %q is not available here (choose from %v)", r.Backend, poller.Backends())
	}
	switch r.Balance {
	case "":
		r.Balance = "handoff"
	case "reuseport", "handoff":
	default:
		return nil, fmt.Errorf("Config.Balance must be reuseport or handoff, got %q", c.Balance)
	}
	if ep.Network == "unix" {
		r.Balance = "handoff"
	}
	// HighWater first: the low mark's default depends on the high one.
	if r.HighWater == 0 {
		r.HighWater = max(defaultHigh, r.LowWater)
	}
	if r.LowWater == 0 {
		r.LowWater = min(defaultLow, max(r.HighWater/2, 1))
	}
	if r.LowWater < 0 || r.HighWater < r.LowWater {
		return nil, fmt.Errorf("Config.LowWater and HighWater must satisfy 0 < LowWater <= HighWater, got %d and %d", r.LowWater, r.HighWater)
	}
	maxFrame := r.MaxMessage + r.format.MaxHeader()
	minQueued := r.HighWater + maxFrame
	if r.MaxQueued == 0 {
		r.MaxQueued = max(4<<20, r.HighWater+2*maxFrame)
	}
	if r.MaxQueued < minQueued {
		return nil, fmt.Errorf("Config.MaxQueued must be at least HighWater + one maximum frame = %d, got %d", minQueued, c.MaxQueued)
	}
	leastInput := MinInputMemory(r.MaxMessage)
	switch {
	case r.MaxInputMemory == 0:
		r.MaxInputMemory = max(DefaultMaxInputMemory, 2*leastInput)
	case r.MaxInputMemory > 0 && r.MaxInputMemory < leastInput:
		return nil, fmt.Errorf("Config.MaxInputMemory must hold at least one maximum frame (%d bytes with MaxMessage %d), got %d",
			leastInput, r.MaxMessage, c.MaxInputMemory)
	}
	if r.TLSHandshakeTimeout == 0 {
		r.TLSHandshakeTimeout = 10 * time.Second
	}
	if r.TLSHandshakeTimeout > maxTimeout {
		return nil, fmt.Errorf("Config.TLSHandshakeTimeout must be at most %v, got %v", maxTimeout, c.TLSHandshakeTimeout)
	}
	if r.MaxHandshakes == 0 {
		r.MaxHandshakes = 64
	}
	if r.MaxHandshakes < 0 {
		return nil, fmt.Errorf("Config.MaxHandshakes must be at least 1, got %d", c.MaxHandshakes)
	}
	if r.TLS != nil && len(r.TLS.Certificates) == 0 && r.TLS.GetCertificate == nil && r.TLS.GetConfigForClient == nil {
		return nil, errors.New("Config.TLS has no certificate (Certificates, GetCertificate or GetConfigForClient)")
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r, nil
}

var errNoHandler = errors.New("frameloop: nil Handler")
