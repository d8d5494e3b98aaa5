package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// netBufSize is the size of each connection's bufio.Reader and bufio.Writer.
const netBufSize = 64 << 10

// serveNet is the idiomatic fast standard-library server: one goroutine per
// connection, a bufio.Reader and a bufio.Writer each, TCP_NODELAY (Go's
// default), and replies batched in the writer until the next read would
// block, so that a burst of pipelined frames costs one write system call.
//
// With TLS, each accepted connection is wrapped with tls.Server and its
// handshake completed (at most netHandshakeTimeout) on its own goroutine
// before the buffers are made; the echo loop is the same over the tls.Conn.
func serveNet(ctx context.Context, cfg config) error {
	var tlsCfg *tls.Config
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return err
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return err
	}
	if cfg.ready != nil {
		cfg.ready(ln.Addr().String())
	}

	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	defer func() {
		close(stopped)
		wg.Wait()
	}()

	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAcceptError(err) {
				// EMFILE and friends: back off instead of spinning.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			_ = c.Close()
			return nil
		}
		conns[c] = struct{}{}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			if tlsCfg == nil {
				echoNetConn(c, cfg.maxMessage)
			} else if tc := tls.Server(c, tlsCfg); netHandshake(tc) == nil {
				echoNetConn(tc, cfg.maxMessage)
			}
			_ = c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

// netHandshakeTimeout bounds a TLS handshake, as frameloop's
// --tls-handshake-timeout default does.
const netHandshakeTimeout = 10 * time.Second

// netHandshake completes tc's server handshake within netHandshakeTimeout.
func netHandshake(tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), netHandshakeTimeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}

// echoNetConn serves one connection until EOF, an error, or an oversized
// header. Replies already written are flushed before it returns.
func echoNetConn(c net.Conn, maxMessage int) {
	r := bufio.NewReaderSize(c, netBufSize)
	w := bufio.NewWriterSize(c, netBufSize)
	defer w.Flush() //nolint:errcheck // best effort on the way out

	for {
		// Flush before any read that may block: the batch ends where the
		// buffered input ends.
		if r.Buffered() < 4 && w.Buffered() > 0 {
			if w.Flush() != nil {
				return
			}
		}
		hdr, err := r.Peek(4)
		if err != nil {
			return // EOF (possibly mid-header) or a read error
		}
		n := int(binary.LittleEndian.Uint32(hdr))
		if n > maxMessage {
			return // oversized: close after flushing earlier replies
		}
		total := 4 + n
		if total <= r.Size() {
			if r.Buffered() < total && w.Buffered() > 0 {
				if w.Flush() != nil {
					return
				}
			}
			frame, err := r.Peek(total)
			if err != nil {
				return
			}
			if _, err := w.Write(frame); err != nil {
				return
			}
			_, _ = r.Discard(total)
			continue
		}
		// A frame larger than the read buffer streams through.
		if w.Buffered() > 0 && w.Flush() != nil {
			return
		}
		if _, err := io.CopyN(w, r, int64(total)); err != nil {
			return
		}
	}
}

// isTemporaryAcceptError reports accept errors that a server should retry
// after a pause (descriptor exhaustion, aborted handshakes).
func isTemporaryAcceptError(err error) bool {
	for _, target := range temporaryAcceptErrnos {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
