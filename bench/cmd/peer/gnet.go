package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
)

// gnetBatchCap bounds the reply batch kept by a connection between events;
// frames at least this large are written straight from the inbound buffer.
const gnetBatchCap = 64 << 10

// gnetServer is the gnet v2 event handler: frames are decoded in OnTraffic
// with Peek/Discard, replies of one OnTraffic are batched and written with a
// single Conn.Write (which writes to the socket at once and queues only what
// the kernel does not take), like gnet's own codec examples do with Writev.
type gnetServer struct {
	gnet.BuiltinEventEngine
	maxMessage int
	ready      func(addr string)
	addr       string
	eng        gnet.Engine
	booted     chan struct{}
}

// gnetConn is a connection's reusable reply batch, created on first traffic
// so that idle connections cost nothing beyond gnet's own state.
type gnetConn struct {
	out []byte
}

func (s *gnetServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	close(s.booted)
	if s.ready != nil {
		s.ready(s.addr)
	}
	return gnet.None
}

func (s *gnetServer) OnTraffic(c gnet.Conn) gnet.Action {
	st, _ := c.Context().(*gnetConn)
	if st == nil {
		st = &gnetConn{}
		c.SetContext(st)
	}
	out := st.out[:0]
	action := gnet.None
	for c.InboundBuffered() >= 4 {
		hdr, err := c.Peek(4)
		if err != nil {
			break
		}
		n := int(binary.LittleEndian.Uint32(hdr))
		if n > s.maxMessage {
			action = gnet.Close // replies before it are written below first
			break
		}
		total := 4 + n
		if c.InboundBuffered() < total {
			break // partial frame: wait for more input
		}
		frame, err := c.Peek(total)
		if err != nil {
			break
		}
		if total >= gnetBatchCap {
			// Large frame: flush the batch, then write it from the inbound
			// buffer (gnet copies whatever the socket does not take).
			if len(out) > 0 {
				if _, err := c.Write(out); err != nil {
					return gnet.Close
				}
				out = out[:0]
			}
			if _, err := c.Write(frame); err != nil {
				return gnet.Close
			}
		} else {
			out = append(out, frame...)
		}
		_, _ = c.Discard(total)
	}
	if len(out) > 0 {
		if _, err := c.Write(out); err != nil {
			return gnet.Close
		}
	}
	if cap(out) > gnetBatchCap {
		out = nil
	}
	st.out = out[:0]
	return action
}

// gnetLogger passes gnet's warnings and errors on and drops its debug and
// info lines, so that the peer's own line is the one that says "listening".
type gnetLogger struct{ l *log.Logger }

func (gnetLogger) Debugf(string, ...any)               {}
func (gnetLogger) Infof(string, ...any)                {}
func (g gnetLogger) Warnf(format string, args ...any)  { g.l.Printf("gnet warn: "+format, args...) }
func (g gnetLogger) Errorf(format string, args ...any) { g.l.Printf("gnet error: "+format, args...) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.l.Fatalf("gnet fatal: "+format, args...) }

func serveGnet(ctx context.Context, cfg config) error {
	logger := gnetLogger{log.New(os.Stderr, "", log.LstdFlags)}
	logging.SetDefaultLoggerAndFlusher(logger, func() error { return nil })
	s := &gnetServer{
		maxMessage: cfg.maxMessage,
		ready:      cfg.ready,
		addr:       cfg.addr,
		booted:     make(chan struct{}),
	}
	proto := "tcp://" + cfg.addr
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(s, proto,
			gnet.WithReuseAddr(true),
			gnet.WithMulticore(false),
			gnet.WithNumEventLoop(cfg.loops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(logger),
		)
	}()
	select {
	case err := <-errc:
		if err == nil {
			err = fmt.Errorf("gnet stopped before it booted")
		}
		return err
	case <-s.booted:
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.eng.Stop(sctx); err != nil {
		return fmt.Errorf("stopping gnet: %w", err)
	}
	return <-errc
}
